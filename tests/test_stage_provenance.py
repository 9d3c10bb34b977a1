"""Every product records the status of every stage that made it (oiflow.provenance.StageRecord):
a small raw night through the work units, without Prefect — reduce, calibrate, then the fit
and the image of its science target — and each product's stages read back from the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oiflow.catalog import Catalog
from oiflow.config import CalibrateConfig, FitTarget, ImageTarget, ReduceConfig
from oiflow.provenance import EXTERNAL, UNKNOWN, Provenance, stage_history, stages_summary
from oiflow.work.calibrate import calibrate_unit, run_calibrate_unit
from oiflow.work.fit import fit_unit, run_fit_unit
from oiflow.work.image import image_unit, run_image_unit
from oiflow.work.reduce import reduce_units, run_reduce_unit

from night_factory import small_raw_night

REPO = Path(__file__).resolve().parents[1]
DIAMETERS = REPO / "data-samples" / "calibrators.csv"
NIGHT = "2023-03-15"


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """(L1 paths, L2 path, fit UnitResult, image UnitResult) of a 5-observation night."""
    tmp = tmp_path_factory.mktemp("stages")
    raw = small_raw_night(tmp / "raw", NIGHT, 7)
    root = tmp / "products"
    with Catalog.for_root(root) as cat:
        reduced = [run_reduce_unit(u) for u in reduce_units(raw, root, ReduceConfig(), cat)]
        assert all(r.ok for r in reduced)
        l1 = [p.path for r in reduced for p in r.products]
        calibrated = run_calibrate_unit(calibrate_unit(NIGHT, l1, root, CalibrateConfig(diameters=DIAMETERS), cat))
        assert calibrated.ok
        (l2,) = [p.path for p in calibrated.products]
        fit = run_fit_unit(fit_unit("SCI_DISK", NIGHT, [l2], root, FitTarget(
            model={"name": "ud", "star": {"type": "ud", "diameter": 1.5}}, observables=["v2"]), cat))
        image = run_image_unit(image_unit("SCI_DISK", NIGHT, [l2], root, ImageTarget(
            npix=32, pixel_size_mas=0.25, maxiter=60, mu=1000.0), cat))
    assert fit.ok and image.ok, (fit.failures, image.failures)
    return l1, l2, fit, image


def _stages(prov) -> list[tuple[str, str]]:
    return [(r.stage, r.status) for r in prov.stages]


def test_l1_records_its_reduction(chain):
    from astropy.io import fits

    l1 = chain[0]
    assert len(l1) == 5
    prov = Provenance.from_header(fits.getheader(l1[0]))
    assert _stages(prov) == [("reduce", "ok")] and prov.stages[0].detail == "native"
    assert prov.stages[0].products == []  # the product itself
    assert fits.getheader(l1[0])["HIERARCH OIFLOW STAGES"] == "reduce ok"


def test_l2_records_the_reduction_of_every_l1_and_its_calibration(chain):
    from astropy.io import fits

    l1, l2 = chain[0], chain[1]
    header = fits.getheader(l2)
    prov = Provenance.from_header(header)
    assert prov.stage == "calibrate" and prov.settings["diameters"] == str(DIAMETERS)  # its own settings, not L1's
    assert _stages(prov) == [("reduce", "ok"), ("calibrate", "ok")]
    reduce, calibrate = prov.stages
    assert sorted(reduce.products) == sorted(Path(p).name for p in l1)  # 2 SCI_DISK + 3 calibrator observations
    assert calibrate.detail.startswith("2 calibrators") and calibrate.products == []
    assert header["HIERARCH OIFLOW STAGES"] == "reduce ok, calibrate ok"


def test_fit_json_lists_reduce_calibrate_and_its_own_verdict(chain):
    l2, fit = chain[1], chain[2]
    (record,) = [p for p in fit.products if p.path.endswith(".json")]
    doc = json.loads(Path(record.path).read_text())
    stages = doc["provenance"]["stages"]
    assert [(s["stage"], s["status"]) for s in stages] == [("reduce", "ok"), ("calibrate", "ok"),
                                                           ("fit", doc["verdict"]["status"])]
    assert stages[1]["products"] == [Path(l2).name] and stages[1]["detail"].startswith("2 calibrators")
    assert len(stages[0]["products"]) == 5
    assert stages[2]["detail"].startswith("model ud, chi2_red ") and stages[2]["products"] == []


def test_image_fits_lists_reduce_calibrate_and_its_own_verdict(chain):
    from astropy.io import fits

    l2, image = chain[1], chain[3]
    (record,) = [p for p in image.products if p.path.endswith(".fits")]
    header = fits.getheader(record.path)
    prov = Provenance.from_header(header)
    status = record.verdict["status"]
    assert _stages(prov) == [("reduce", "ok"), ("calibrate", "ok"), ("image", status)]
    assert prov.stages[1].products == [Path(l2).name]
    assert header["HIERARCH OIFLOW STAGES"] == f"reduce ok, calibrate ok, image {status}"


def test_an_input_oiflow_did_not_make_is_listed_as_external(shared_data):
    src = shared_data / "oifits" / "real" / "pionier" / "AXCir.oifits"
    stages = stage_history([src], "fit", "poor-fit", "model binary")
    assert [(r.stage, r.status, r.products) for r in stages] == [(EXTERNAL, UNKNOWN, ["AXCir.oifits"]),
                                                                 ("fit", "poor-fit", [])]
    assert stages_summary(stages) == "external unknown, fit poor-fit"
    with pytest.raises(ValueError, match="unknown verdict status"):
        stage_history([], "fit", "fine")
