"""Model descriptions: parsing, defaults, ties, and clear errors."""

import pytest

from oiflow.errors import ConfigError
from oiflow.fit.model import parse_model


def test_dict_and_yaml_descriptions_agree_and_primary_flux_is_one(tmp_path):
    spec = {"star": {"type": "ud", "diameter": 1.0}, "comp": {"type": "point", "x": 5, "y": 2, "flux": 0.1}}
    yaml_text = "star: {type: ud, diameter: 1.0}\ncomp: {type: point, x: 5, y: 2, flux: 0.1}\n"
    path = tmp_path / "binary.yaml"
    path.write_text(yaml_text)
    for m in (parse_model(spec), parse_model(yaml_text), parse_model(str(path))):
        assert [p.name for p in m.free] == ["star.diameter", "comp.flux", "comp.x", "comp.y"]
        vals = m.values()
        assert vals["star.flux"] == 1.0 and not m.parameters["star.flux"].free
        assert vals["star.x"] == 0.0 and not m.parameters["star.x"].free
    assert parse_model(str(path)).name == "binary"
    assert parse_model(spec).name == "ud_point"


def test_fixed_bounded_and_tied_parameters():
    m = parse_model({
        "name": "disk+star",
        "star": {"type": "ud", "diameter": {"value": 0.5, "fixed": True}},
        "disk": {"type": "ring", "diameter": {"value": 3.0, "min": 1.0, "max": 10.0},
                 "width": "=0.25 * disk.diameter", "flux": 0.5, "axis_ratio": 0.7, "pa": 20},
        "halo": {"type": "gaussian", "fwhm": {"expr": "disk.diameter + 2*disk.width"}, "flux": {"fixed": 0.1}},
    })
    assert m.name == "disk+star"
    p = m.parameters
    assert not p["star.diameter"].free and p["star.diameter"].value == 0.5
    assert (p["disk.diameter"].lower, p["disk.diameter"].upper) == (1.0, 10.0)
    assert p["disk.width"].tied and p["halo.fwhm"].tied
    assert not p["halo.flux"].free and p["halo.flux"].value == 0.1
    free = [q.name for q in m.free]
    assert sorted(free) == ["disk.axis_ratio", "disk.diameter", "disk.flux", "disk.pa"]
    start = {"disk.diameter": 4.0, "disk.flux": 0.5, "disk.axis_ratio": 0.7, "disk.pa": 20.0}
    vals = m.values([start[n] for n in free])
    assert vals["disk.width"] == pytest.approx(1.0)
    assert vals["halo.fwhm"] == pytest.approx(6.0)
    # round trip
    again = parse_model(m.to_spec())
    assert again.values([start[q.name] for q in again.free]) == vals


@pytest.mark.parametrize("spec,match", [
    ({"a": {"type": "blob", "size": 1}}, "unknown type"),
    ({"a": {"type": "ud"}}, "'diameter' is required"),
    ({"a": {"type": "ud", "diameter": 1}, "b": {"type": "point", "x": 1}}, "'flux' is required"),
    ({"a": {"type": "ud", "diameter": 1, "radius": 2}}, "a.radius: unknown parameter of a ud component"),
    ({"a": {"type": "ud", "diamter": 1}}, r"a.diamter: unknown parameter of a ud component \(did you mean .diameter.\?\)"),
    ({"a": {"type": "ud", "diameter": 1}, "options": {"serch": False}},
     r"options.serch: unknown option \(did you mean .search.\?\)"),
    ({"a": {"type": "ud", "diameter": "=b.diameter"}, "b": {"type": "ud", "diameter": "=a.diameter", "flux": 1}},
     "cycle|no free"),
    ({"a": {"type": "ud", "diameter": "=nope.x * 2"}, "b": {"type": "point", "flux": 0.1, "x": 1}}, "unknown parameter"),
    ({"a": {"type": "ud", "diameter": "=__import__('os')"}}, "unsupported|unknown"),
    ({"a": {"type": "ud", "diameter": {"value": 5, "min": 6}}}, "outside"),
    ({"a": {"type": "ld", "law": "cubic", "diameter": 1}}, "power or quadratic"),
    ({}, "no components"),
])
def test_bad_descriptions_raise_config_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        parse_model(spec)


def test_missing_model_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        parse_model(str(tmp_path / "nope.yaml"))
