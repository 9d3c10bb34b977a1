"""One night, one longitude (oiflow.site): the simulator, the reducer's product tree, the
catalogue, ``oiflow inspect`` and the calibrator agree on CHARA, VLTI and simulated data."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time

from night_factory import demo_dict
from oiflow.calibrate.night import load_l1
from oiflow.catalog import Catalog, granules_of
from oiflow.config import ReduceConfig
from oiflow.errors import ConfigError
from oiflow.ingest import ingest_file
from oiflow.oifits import read_oifits
from oiflow.oifits.build import array_table, new_oifits, target_table, vis2_table, wavelength_table
from oiflow.oifits.summary import summarize
from oiflow.oifits.write import write_oifits
from oiflow.reduce import plan_night, reduce_observation
from oiflow.simulate.night import NightConfig, simulate_night
from oiflow.site import (
    SITES,
    array_longitude,
    geocentric_longitude,
    get_site,
    header_longitude,
    header_position,
    known_site,
    night_of,
    nights_of,
)
from oiflow.work.reduce import reduce_units

CHARA_LON, VLTI_LON = -118.0570313111, -70.40498688


def _mjd(iso: str) -> float:
    return float(Time(iso, scale="utc").mjd)


# -- the rules -----------------------------------------------------------------------------------


def test_night_is_the_local_date_at_the_start_of_the_night():
    # Paranal (−70.4°): 01:00 UT and 23:30 UT the evening before are one night; local noon ends it
    assert night_of(_mjd("2023-03-16T01:00"), VLTI_LON) == "2023-03-15"
    assert night_of(_mjd("2023-03-15T23:30"), VLTI_LON) == "2023-03-15"
    assert night_of(_mjd("2016-05-31T15:00"), VLTI_LON) == "2016-05-30"  # 10:18 local mean time
    assert night_of(_mjd("2016-05-31T17:30"), VLTI_LON) == "2016-05-31"  # 12:48: the next night
    # Mt Wilson (−118.06°): 12:30 UT is 04:38 local, still the night that began the day before
    assert night_of(_mjd("2022-02-27T12:30"), CHARA_LON) == "2022-02-26"
    assert night_of(_mjd("2022-02-27T20:00"), CHARA_LON) == "2022-02-27"  # 12:08 local: the next night
    # unknown longitude: the day changes at noon UTC
    assert night_of(_mjd("2016-05-30T11:45"), None) == "2016-05-29"
    assert night_of(_mjd("2016-05-30T12:15"), None) == "2016-05-30"
    # many at once; non-finite times have no night
    assert list(nights_of([_mjd("2023-03-16T01:00"), np.nan, 1e12], VLTI_LON)) == ["2023-03-15", "", ""]


def test_longitude_from_itrf_coordinates():
    # the sites' own ITRF positions give back their geodetic longitudes
    for site in SITES.values():
        assert geocentric_longitude(*site.geocentric_position()) == pytest.approx(site.longitude_deg, abs=1e-9)
    # ESO's ARRAYX/Y/Z in many VLTI products lie 28 km above Paranal: still the VLTI's longitude
    assert geocentric_longitude(1951952.0, -5483173.0, -2668147.0) == pytest.approx(-70.4048, abs=1e-4)
    # COAST (Cambridge), an array oiflow has no table entry for
    assert geocentric_longitude(3920635.0, 2889.0, 5013987.0) == pytest.approx(0.04222, abs=1e-5)
    # not a position on the Earth: zeros, placeholders, non-finite, missing
    for xyz in [(0.0, 0.0, 0.0), (100.0, 200.0, 300.0), (1e7, 0.0, 0.0), (np.nan, 1.0, 1.0), (None, None, None)]:
        assert geocentric_longitude(*xyz) is None


def test_array_longitude_falls_back_to_the_named_site():
    zeros = (0.0, 0.0, 0.0)
    assert array_longitude("CHARA_2004Jan", (100.0, 200.0, 300.0)) == CHARA_LON
    assert array_longitude(["", "VLTI"], zeros) == VLTI_LON  # the data table's ARRNAME
    assert array_longitude([None, None, "ESO-VLTI-A1234"], zeros) == VLTI_LON  # TELESCOP
    assert array_longitude("NPOI", zeros) == pytest.approx(-111.535)
    assert array_longitude("IOTA_2002Dec17", zeros) == pytest.approx(-110.8775)
    assert array_longitude("MYSTERY", zeros) is None
    # GRAVITY products of 2016 carry ARRAYX and ARRAYY swapped (+160.4°): the named site wins
    assert array_longitude("VLTI", (-5483173.0, 1951952.0, -2668147.0)) == VLTI_LON
    # coordinates that agree with the name, or an unknown name, keep the coordinates
    assert array_longitude("VLTI", (1951952.0, -5483173.0, -2668147.0)) == pytest.approx(-70.4048, abs=1e-4)
    assert array_longitude("COAST", (3920635.0, 2889.0, 5013987.0)) == pytest.approx(0.04222, abs=1e-5)
    assert known_site("VLTI_1") is SITES["VLTI"] and known_site("CHARAX") is None and known_site(None) is None


def test_raw_header_position():
    h = fits.Header({"HIERARCH ESO ISS GEOLAT": -24.6, "HIERARCH ESO ISS GEOLON": -70.4,
                     "HIERARCH ESO ISS GEOELEV": 2635.0})
    assert header_position(h) == (-24.6, -70.4, 2635.0) and header_longitude(h) == -70.4
    assert header_position(fits.Header({"OBSGEO-B": 34.2, "OBSGEO-L": -118.06})) == (34.2, -118.06, 0.0)
    chara = get_site("CHARA")
    assert header_position(fits.Header({"TELESCOP": "CHARA"})) == (chara.latitude_deg, chara.longitude_deg,
                                                                   chara.height_m)
    assert header_position(fits.Header({"HIERARCH ESO ISS GEOLON": "n/a", "TELESCOP": "HOME"})) is None


# -- four views of one night -------------------------------------------------------------------


def _chara_like(path: Path, iso: str, array_xyz) -> Path:
    """A MIRC-like OIFITS of one CHARA observation at ``iso`` (UTC)."""
    chara = get_site("CHARA")
    stations = ["S1", "E1", "W1"]
    array = array_table("CHARA", stations, chara.geocentric_offsets(stations), diameter=1.0, array_xyz=array_xyz)
    wave = wavelength_table("MIRC_H", np.array([1.6e-6, 1.7e-6]), np.array([5e-8, 5e-8]))
    mjd = _mjd(iso)
    v2 = vis2_table("MIRC_H", "CHARA", target_id=1, mjd=[mjd] * 3, u=[100.0, -50.0, 30.0], v=[20.0, 80.0, -60.0],
                    sta_index=[(1, 2), (2, 3), (1, 3)], vis2=np.full((3, 2), 0.5), vis2err=0.02)
    oi = new_oifits(target_table(["HD 12345 (A)"], ra_deg=[224.0], dec_deg=[30.0], category=["SCI"]), [array],
                    [wave], [v2], primary={"TELESCOP": "CHARA", "INSTRUME": "MIRC"})
    write_oifits(oi, path)
    return path


def _oifits_views(path: Path, root: Path, *, calibrate: bool = True) -> dict[str, set[str]]:
    oi = read_oifits(path, warn=False)
    views = {
        "catalogue": {g["night"] for g in granules_of(oi, 2)},
        "inspect": set(summarize(oi)["nights"]),
        "product tree": {Path(ingest_file(path, root, level=2).path).parent.parent.name},
    }
    if calibrate:  # an L1 file of one target and one setup, as the calibrator reads it
        views["calibrate"] = {load_l1(path, set()).night}
    return views


@pytest.mark.parametrize("array_xyz", ["mt-wilson", (0.0, 0.0, 0.0)], ids=["ARRAYXYZ", "no-ARRAYXYZ"])
def test_chara_at_1230_ut_is_the_night_before(tmp_path, array_xyz):
    xyz = get_site("CHARA").geocentric_position() if array_xyz == "mt-wilson" else array_xyz
    path = _chara_like(tmp_path / "chara.fits", "2022-02-27T12:30:00", xyz)
    views = _oifits_views(path, tmp_path / "products")
    assert views == {k: {"2022-02-26"} for k in views}, views


def test_real_chara_and_vlti_files(shared_data, tmp_path):
    real, sim = shared_data / "oifits" / "real", shared_data / "oifits" / "sim"
    cases = {
        # MIRC (CHARA, ARRAYX/Y/Z = 0), 05:00–07:24 UT: the night of 10 May 2007 at Mt Wilson
        sim / "contest-2008-binary.oifits": ("2007-05-10", True),
        # PIONIER (ARRAYX/Y/Z = 0), 23:21 UT on 14 July 2013 to 01:31 UT the next day: one night
        real / "pionier" / "AXCir.oifits": ("2013-07-14", False),
        # GRAVITY with ARRAYX and ARRAYY swapped, 03:12 UT on 23 June 2016: the night of the 22nd
        real / "gravity" / "GRAVI.2016-06-23_singlesciviscalibrated.fits": ("2016-06-22", False),
        # MATISSE with ESO's ARRAYX/Y/Z 28 km above Paranal
        real / "matisse" / "94Aqr_2018-07-17_Part1.fits": ("2018-07-16", False),
    }
    for path, (night, one_setup) in cases.items():
        views = _oifits_views(path, tmp_path / path.stem, calibrate=one_setup)
        assert views == {k: {night} for k in views}, (path.name, views)


def _simulated_views(tmp_path: Path, cfg: NightConfig) -> tuple[str, dict[str, set[str]]]:
    raw, products = tmp_path / "raw", tmp_path / "products"
    truth = simulate_night(cfg, raw)
    with Catalog.for_root(products) as cat:
        units = reduce_units(raw, products, ReduceConfig(), cat)
    plan = plan_night(raw)
    l1 = reduce_observation(plan, plan.observations[0].obs_id, tmp_path / "L1")
    oi = read_oifits(l1, warn=False)
    return truth["night"], {
        "simulator": {truth["night"]},
        "product tree": {Path(u.out_dir).parent.name for u in units},
        "L1 header": {fits.getheader(l1)["HIERARCH OIFLOW NIGHT"]},
        "catalogue": {g["night"] for g in granules_of(oi, 1)},
        "inspect": set(summarize(oi)["nights"]),
        "calibrate": {load_l1(l1, set()).night},
    }


def _night_config(**changes) -> NightConfig:
    d = copy.deepcopy(demo_dict())
    d["instrument"].update(n_frames=12, n_channels=3, mode="H-3CH", n_calib_frames=16)
    d["sequence"]["order"] = ["HD_CAL_A", "SCI_DISK", "HD_CAL_B"]
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(d.get(key), dict):
            d[key].update(value)
        else:
            d[key] = value
    return NightConfig.validate_dict(d)


def test_simulated_vlti_night(tmp_path):
    night, views = _simulated_views(tmp_path, _night_config())  # 00:30 UT the day after 2023-03-15
    assert night == "2023-03-15"
    assert views == {k: {night} for k in views}, views


def test_simulated_chara_night_at_1230_ut(tmp_path):
    targets = {"HD_CAL_A": {"ra_deg": 220.0, "dec_deg": 32.0, "category": "CAL", "flux": 1.2,
                            "model": {"type": "uniform_disk", "diameter_mas": 0.55}, "diameter_error_mas": 0.04},
               "SCI_DISK": {"ra_deg": 224.0, "dec_deg": 30.0, "category": "SCI",
                            "model": {"type": "uniform_disk", "diameter_mas": 2.0}},
               "HD_CAL_B": {"ra_deg": 228.0, "dec_deg": 28.0, "category": "CAL",
                            "model": {"type": "uniform_disk", "diameter_mas": 0.75}, "diameter_error_mas": 0.05}}
    cfg = _night_config(night="2022-02-26", facility="CHARA", array=["S1", "S2", "E1", "W1"], targets=targets,
                        sequence={"start_ut_h": 36.5})  # 12:30 UT on 27 February: 04:38 at Mt Wilson
    night, views = _simulated_views(tmp_path, cfg)
    assert night == "2022-02-26"
    assert views == {k: {night} for k in views}, views


def test_the_simulator_refuses_a_sequence_outside_its_night():
    with pytest.raises(ConfigError, match=r"fall in night 2022-02-26 at CHARA .* not in night 2022-02-27 alone"):
        _night_config(night="2022-02-27", facility="CHARA", array=["S1", "S2", "E1", "W1"],
                      sequence={"start_ut_h": 12.5})
    # 16:30 to 17:06 UT at Paranal: 11:48 to 12:24 local, across the end of the night
    with pytest.raises(ConfigError, match="span the nights 2023-03-15 and 2023-03-16 at VLTI"):
        _night_config(sequence={"start_ut_h": 40.5})


def test_a_raw_file_without_a_position_is_named(tmp_path):
    from oiflow.errors import ReductionError
    from oiflow.reduce.l1 import site_from_raw
    from oiflow.reduce.raw_reader import read_raw_header

    raw = tmp_path / "raw"
    simulate_night(_night_config(), raw)
    path = sorted(raw.glob("*OBS001*.fits"))[0]
    with fits.open(path, mode="update") as hdul:
        h = hdul[0].header
        for key in ("HIERARCH ESO ISS GEOLAT", "HIERARCH ESO ISS GEOLON", "HIERARCH ESO ISS ARRAY"):
            del h[key]
        h["TELESCOP"] = "SIMULATED"
    with pytest.raises(ReductionError, match=f"{path.name}: no observatory position"):
        site_from_raw(read_raw_header(path))
