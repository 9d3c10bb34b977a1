"""JSDC lookup (astroquery VizieR, optional) with its local cache, offline with a recorded answer."""

import sys
import types
from pathlib import Path

import pytest
from astropy.table import Table

from oiflow.calibrate.diameters import DiameterSource
from oiflow.calibrate.jsdc import CATALOG, JSDCLookup
from oiflow.errors import CalibrationError

ANSWER = Path(__file__).parent / "data" / "jsdc_II_346_answer.ecsv"


@pytest.fixture()
def fake_vizier(monkeypatch):
    """A stand-in for astroquery.vizier that answers with the recorded table and counts calls."""
    calls = []

    class Vizier:
        def __init__(self, columns=None, catalog=None, row_limit=None):
            self.catalog = catalog
            self.columns = columns

        def query_region(self, coord, radius):
            calls.append((self.catalog, float(coord.ra.deg), float(coord.dec.deg), float(radius.to("arcsec").value)))
            return [Table.read(ANSWER, format="ascii.ecsv")]

    pkg = types.ModuleType("astroquery")
    mod = types.ModuleType("astroquery.vizier")
    mod.Vizier = Vizier
    pkg.vizier = mod
    monkeypatch.setitem(sys.modules, "astroquery", pkg)
    monkeypatch.setitem(sys.modules, "astroquery.vizier", mod)
    return calls


def test_lookup_uses_vizier_once_then_the_cache(fake_vizier, tmp_path):
    cache = tmp_path / "jsdc.json"
    d = JSDCLookup(cache).lookup("HD_CAL_B", 131.0, -42.0, "H")
    assert (d.diameter_mas, d.band) == (0.750, "H")
    assert d.error_mas == pytest.approx(0.052 * 0.750 / 0.771)
    assert d.source == "JSDC HD_CAL_B"
    assert fake_vizier == [(CATALOG, 131.0, -42.0, 5.0)]
    assert cache.is_file()
    # a new lookup object (another run) answers from the cache without querying
    again = JSDCLookup(cache, query=lambda *a: pytest.fail("queried despite the cache"))
    assert again.lookup("HD_CAL_B", 131.0, -42.0, "K").diameter_mas == 0.754
    assert len(fake_vizier) == 1


def test_nearest_entry_and_negative_answers_are_cached(fake_vizier, tmp_path):
    cache = tmp_path / "jsdc.json"
    look = JSDCLookup(cache)
    # at the neighbour's position (6.3″ from HD_CAL_B): the nearest entry is kept
    d = look.lookup("X", 131.0 + 7.5 / 3600, -42.0 - 3.0 / 3600, "H")
    assert d.diameter_mas == 1.180
    empty = JSDCLookup(tmp_path / "other.json", query=lambda *a: None)
    assert empty.lookup("NOBODY", 10.0, 10.0, "H") is None
    assert JSDCLookup(tmp_path / "other.json", offline=True).fetch(10.0, 10.0) is None


def test_offline_without_cache_and_missing_astroquery(monkeypatch, tmp_path):
    assert JSDCLookup(tmp_path / "c.json", offline=True).lookup("HD_CAL_B", 131.0, -42.0, "H") is None
    monkeypatch.setitem(sys.modules, "astroquery.vizier", None)  # import fails
    with pytest.raises(CalibrationError, match="astroquery"):
        JSDCLookup(tmp_path / "c.json").lookup("HD_CAL_B", 131.0, -42.0, "H")


def test_diameter_source_falls_back_to_jsdc(fake_vizier, tmp_path):
    src = DiameterSource(None, {}, JSDCLookup(tmp_path / "jsdc.json"))
    assert src.lookup("HD_CAL_B", 131.0, -42.0, "H").source.startswith("JSDC")
