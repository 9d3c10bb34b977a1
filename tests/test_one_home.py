"""One home per concept: exactly one place computes the night, the longitude of an array,
sanitises a name for the file system and reads YAML. A second copy anywhere in oiflow/,
flows/ or tasks/ fails here (add it to the owner instead, or to an allow-list with its reason)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for d in ("oiflow", "flows", "tasks") for p in (REPO / d).rglob("*.py"))


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def _functions(path: Path):
    """(name, is_property) of every function defined in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            is_property = any(isinstance(d, ast.Name) and d.id == "property" for d in node.decorator_list)
            yield node.name, is_property


def _defined(pattern: str) -> dict[str, list[str]]:
    rx = re.compile(pattern)
    out: dict[str, list[str]] = {}
    for path in SOURCES:
        names = [n for n, is_property in _functions(path) if rx.search(n) and not is_property]
        if names:
            out[_rel(path)] = sorted(names)
    return out


def _files_containing(*needles: str) -> set[str]:
    return {_rel(p) for p in SOURCES if any(n in p.read_text() for n in needles)}


def test_the_night_is_computed_in_oiflow_site_only():
    assert _defined(r"night_(of|label)|nights_of|mjd_to_night") == {"oiflow/site.py": ["night_of", "nights_of"]}
    # the noon shift of the night rule (MJD − 0.5 + longitude/360) appears nowhere else
    assert _files_containing("/ 360.0 - 0.5", "/ 360 - 0.5", "mjd - 0.5", "hours=longitude") == {"oiflow/site.py"}


def test_the_longitude_of_an_array_is_computed_in_oiflow_site_only():
    assert set(_defined(r"longitude|geocentric_position|header_position")) == {"oiflow/site.py"}
    assert _files_containing("from_geocentric", "atan2(y, x)", "arctan2(y, x)") == {"oiflow/site.py"}
    # who mentions the keywords of an array's or an observatory's position, and why
    allowed = {
        "oiflow/site.py": "reads them: the one rule",
        "oiflow/oifits/schema.py": "defines the OI_ARRAY keywords",
        "oiflow/oifits/build.py": "writes ARRAYX/Y/Z",
        "oiflow/oifits/validate.py": "checks conformance (|XYZ| on the Earth), computes no longitude",
        "oiflow/calibrate/night.py": "copies the OI_ARRAY header of L1 files into the L2 file",
        "oiflow/simulate/raw_layout.py": "defines the simulator's raw keywords",
        "oiflow/simulate/amber_raw.py": "writes raw AMBER headers and their OI_ARRAY",
        "oiflow/simulate/raw_writer.py": "writes the simulator's raw headers",
        "oiflow/reduce/l1.py": "names the keywords in its error for a header without them",
    }
    assert _files_containing("ARRAYX", "GEOLON", "GEOLAT", "OBSGEO") == set(allowed)


def test_names_are_sanitised_in_oiflow_product_tree_only():
    assert _defined(r"safe_name|saniti[sz]e|slugify") == {"oiflow/product_tree.py": ["safe_name"]}
    # a negated character class of name characters is a sanitiser's pattern
    allowed = {
        "oiflow/product_tree.py": "the sanitiser",
        "oiflow/site.py": "splits an array name into words to match a known site; names no file",
        "tasks/artifacts.py": "Prefect artifact keys: Prefect's own syntax (lowercase letters, digits, dashes)",
    }
    found = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    re.match(r"\[\^[\w.+\\-]*(a-z|A-Z)", node.value):
                found.add(_rel(path))
    assert found == set(allowed)


def test_yaml_is_read_by_the_config_loader_only():
    readers = _files_containing("yaml.safe_load", "yaml.load", "yaml.full_load", "yaml.unsafe_load", "YAML(")
    assert readers == {"oiflow/config.py"}
    assert _defined(r"^(load|read)_yaml") == {"oiflow/config.py": ["load_yaml"]}
