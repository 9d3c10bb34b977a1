"""Stage work units and the tasks' bare functions, without a Prefect server: the reduce,
calibrate, fit and image units of the demo data, their products, catalogue records and keys."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from astropy.io import fits

from oiflow.catalog import Catalog, l3_granule
from oiflow.config import CalibrateConfig, FitTarget, ImageTarget, ReduceConfig
from oiflow.errors import DataError
from oiflow.work.calibrate import calibrate_unit
from oiflow.work.fit import fit_unit
from oiflow.work.image import image_unit
from oiflow.work.l3 import match_target, subset_name
from oiflow.work.reduce import reduce_units, run_reduce_unit

REPO = Path(__file__).resolve().parents[1]
NIGHT = REPO / "data-samples" / "night-sim"
DIAMETERS = REPO / "data-samples" / "calibrators.csv"
SAMPLES = REPO / "data-samples" / "oifits"
ALFCEN = SAMPLES / "alfCenA_PIONI.2016-05-31T00_55_19.fits"


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    """The demo night reduced through its units: (root, units, results)."""
    root = tmp_path_factory.mktemp("products")
    with Catalog.for_root(root) as cat:
        units = reduce_units(NIGHT, root, ReduceConfig(), cat)
    results = [run_reduce_unit(u) for u in units]
    return root, units, results


def test_reduce_units_one_per_observation_with_its_calibrations(reduced):
    root, units, results = reduced
    assert len(units) == 11 and all(u.stage == "reduce" for u in units)
    u = units[1]
    assert u.unit == "2023-03-15/SIMABCD_OBS002_SCI_DISK"
    names = [i.name for i in u.inputs]
    assert names[0] == "SIMABCD_OBS002_SCI_DISK.fits" and len(names) == 12  # + DARK, 4 FLAT, 6 P2VM
    assert sum("P2VM" in n for n in names) == 6 and sum("FLAT" in n for n in names) == 4
    assert u.settings["backend"] == "native" and u.settings["runner"] == "local"
    assert len(u.cache_key) == 64 and len({x.cache_key for x in units}) == 11
    assert all(r.ok for r in results)
    (rec,) = results[1].products
    assert Path(rec.path) == (root / "2023-03-15" / "L1" / "SIMABCD_OBS002_SCI_DISK.fits").resolve()
    (g,) = rec.granules
    assert (g["target_name"], g["calib_level"], g["night"], g["nb_vis2"], g["nb_t3"], g["nb_channels"]) == \
        ("SCI_DISK", 1, "2023-03-15", 6, 4, 6)
    assert rec.inputs[0]["name"] == "SIMABCD_OBS002_SCI_DISK.fits"
    assert fits.getheader(rec.path)["CALIB_LV"] == 1


def test_reduce_task_bare_function_reduces_the_unit(reduced, tmp_path):
    from oiflow.tasks.reduce import reduce

    _, units, results = reduced
    unit = units[0]
    res = reduce.fn(unit)  # safe to rerun: the same product again
    assert res.ok and [p.path for p in res.products] == [p.path for p in results[0].products]


@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_corrupt_raw_files_fail_only_their_observation(tmp_path):
    night = tmp_path / "night"
    shutil.copytree(NIGHT, night)
    data = night / "SIMABCD_OBS006_SCI_DISK.fits"
    data.write_bytes(data.read_bytes()[:14400])  # header readable, frames cut
    (night / "SIMABCD_OBS012_JUNK.fits").write_bytes(b"not a FITS file at all" * 10)  # header unreadable
    with Catalog.for_root(tmp_path / "p") as cat:
        units = reduce_units(night, tmp_path / "p", ReduceConfig(), cat)
    by_name = {u.unit.split("/")[1]: u for u in units}
    assert len(units) == 12 and "SIMABCD_OBS012_JUNK" in by_name
    bad = run_reduce_unit(by_name["SIMABCD_OBS006_SCI_DISK"])
    assert bad.products == [] and "ReductionError" in bad.failures[0]["error"]
    assert "SIMABCD_OBS006_SCI_DISK.fits" in bad.failures[0]["error"]
    junk = run_reduce_unit(by_name["SIMABCD_OBS012_JUNK"])
    assert junk.products == [] and "SIMABCD_OBS012_JUNK.fits" in junk.failures[0]["error"]
    good = run_reduce_unit(by_name["SIMABCD_OBS002_SCI_DISK"])
    assert good.ok and len(good.products) == 1


def test_other_backends_or_runners_reduce_the_night_in_one_unit(tmp_path, monkeypatch):
    """native + an image: the backend's per-night path (here a local subprocess), chosen per
    instrument by oiflow.reduce.backends.select."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    config = ReduceConfig(instruments={"SIMABCD": {"backend": "native", "runner": "local", "image": "oiflow-worker"}})
    with Catalog.for_root(tmp_path) as cat:
        (unit,) = reduce_units(NIGHT, tmp_path, config, cat)
    assert unit.unit == "2023-03-15/simabcd" and unit.params["mode"] == "night" and len(unit.inputs) == 22
    assert unit.settings["config"]["image"] == "oiflow-worker" and unit.settings["config"]["instruments"] == {}
    res = run_reduce_unit(unit)
    assert res.ok, res.failures
    assert len(res.products) == 11 and {p.granules[0]["calib_level"] for p in res.products} == {1}


def test_calibrate_unit_and_task_and_what_its_key_depends_on(reduced, tmp_path):
    from oiflow.tasks.calibrate import calibrate

    root, _, results = reduced
    l1 = [p.path for r in results for p in r.products]
    config = CalibrateConfig(diameters=DIAMETERS)
    with Catalog.for_root(root) as cat:
        unit = calibrate_unit("2023-03-15", l1, root, config, cat)
        moved = tmp_path / "elsewhere" / "calibrators.csv"
        moved.parent.mkdir()
        shutil.copyfile(DIAMETERS, moved)
        same = calibrate_unit("2023-03-15", l1, root, CalibrateConfig(diameters=moved), cat)
        changed = tmp_path / "calibrators.csv"
        changed.write_text(DIAMETERS.read_text().replace("0.5500", "0.6000"))
        other = calibrate_unit("2023-03-15", l1, root, CalibrateConfig(diameters=changed), cat)
    assert same.cache_key == unit.cache_key  # the catalogue moved, same content
    assert other.cache_key != unit.cache_key and other.settings_hash == unit.settings_hash  # content changed
    assert [i.name for i in unit.inputs][-1] == "calibrators.csv" and len(unit.inputs) == 12
    res = calibrate.fn(unit)
    assert res.ok, res.failures
    names = sorted(Path(p.path).name for p in res.products)
    assert names == ["SCI_BINARY_2023-03-15.fits", "SCI_DISK_2023-03-15.fits"]
    assert [Path(p).name for p in res.plots] == ["tf_SIMABCD_H-6CH.png"]
    disk = next(p for p in res.products if "DISK" in p.path)
    (g,) = disk.granules
    assert g["calib_level"] == 2 and g["nb_vis2"] == 18 and g["nb_t3"] == 12 and disk.stage == "calibrate"
    assert Path(disk.path).parent == (root / "2023-03-15" / "L2").resolve()


def test_fit_unit_and_task_on_real_data(tmp_path):
    from oiflow.tasks.fit import fit

    spec = FitTarget(model={"name": "ud", "star": {"type": "ud", "diameter": 8.0}})
    with Catalog.for_root(tmp_path) as cat:
        unit = fit_unit("Alpha_Cen_A", "2016-05-30", [ALFCEN], tmp_path, spec, cat)
    assert unit.unit == "Alpha_Cen_A/2016-05-30" and unit.settings["model"]["star"]["type"] == "ud"
    res = fit.fn(unit)
    assert res.ok, res.failures
    (rec,) = res.products
    assert Path(rec.path) == (tmp_path / "L3" / "Alpha_Cen_A" / "2016-05-30" / "fit_ud.json").resolve()
    doc = json.loads(Path(rec.path).read_text())
    assert doc["parameters"]["star.diameter"]["value"] == pytest.approx(8.2797, abs=0.01)  # PMOIRED: 8.2797
    (g,) = rec.granules
    assert (g["calib_level"], g["dataproduct_type"], g["target_name"], g["night"], g["nb_vis2"], g["nb_t3"]) == \
        (3, "fit", "Alpha_Cen_A", "2016-05-30", 6, 4)
    assert rec.access_format == "application/json" and rec.obs_id == "Alpha_Cen_A/2016-05-30"
    assert sorted(Path(p).name for p in res.plots) == ["fit_ud_t3phi.png", "fit_ud_v2.png"]


def test_fit_model_file_content_is_part_of_the_key(tmp_path):
    model = tmp_path / "m.yaml"
    model.write_text("star: {type: ud, diameter: 8.0}\n")
    with Catalog.for_root(tmp_path) as cat:
        a = fit_unit("Alpha_Cen_A", "x", [ALFCEN], tmp_path, FitTarget(model=model), cat)
        model.write_text("star: {type: ud, diameter: 7.0}\n")
        b = fit_unit("Alpha_Cen_A", "x", [ALFCEN], tmp_path, FitTarget(model=model), cat)
    assert a.settings_hash != b.settings_hash


def test_image_unit_and_task(tmp_path):
    from oiflow.tasks.image import image

    src = SAMPLES / "contest-2008-binary.oifits"
    spec = ImageTarget(npix=32, pixel_size_mas=0.5, maxiter=30, mu=1000.0)
    with Catalog.for_root(tmp_path) as cat:
        unit = image_unit("Gam_Vic", "2007-05-10", [src], tmp_path, spec, cat)
    assert unit.settings == {"npix": 32, "pixel_size_mas": 0.5, "maxiter": 30, "mu": 1000.0, "target": "Gam_Vic"}
    res = image.fn(unit)
    assert res.ok, res.failures
    (rec,) = res.products
    out = tmp_path / "L3" / "Gam_Vic" / "2007-05-10"
    assert Path(rec.path) == (out / "image.fits").resolve()
    assert fits.getheader(rec.path)["CALIB_LV"] == 3 and fits.getdata(rec.path).shape == (32, 32)
    (g,) = rec.granules
    assert (g["calib_level"], g["dataproduct_type"], g["nb_channels"], g["nb_vis2"]) == (3, "image", 1, 75)
    assert sorted(Path(p).name for p in res.plots) == ["image.png", "image.residuals.png"]
    # the image's verdict travels into the catalogue record (30 iterations do not converge)
    outp = fits.getheader(rec.path, "IMAGE-OI OUTPUT PARAM")
    assert rec.verdict["status"] == outp["VERDICT"] == "maxiter" and outp["CONVERGE"] is False
    assert rec.verdict["figures"]["maxiter"] == 30
    with Catalog.for_root(tmp_path) as cat:  # the catalogue (hence the run summary) lists it as not ok
        cat.register([rec])
        (row,) = cat.products(verdict="not-ok")
    assert row["verdict"] == "maxiter" and "stopped at MAXITER = 30" in "; ".join(row["verdict_detail"]["reasons"])


def test_target_matching_and_subsets():
    assert match_target("AX Cir", ["AX_CIR", "HD_1"]) == "AX_CIR"
    assert match_target("ax-cir", ["AX_CIR"]) == "AX_CIR"
    assert match_target("HD_2", ["HD_1"]) is None
    assert match_target("A B", ["A_B", "AB"]) is None  # ambiguous
    assert subset_name(["2023-03-15"]) == "2023-03-15"
    assert subset_name(["2023-03-16", "2023-03-14", "2023-03-15"]) == "2023-03-14_to_2023-03-16"
    assert subset_name([""]) == "all"


def test_l3_granule_spans_the_inputs_of_its_target():
    a = {"target_name": "T", "night": "2023-01-01", "t_min": 1.0, "t_max": 2.0, "em_min": 1.5e-6, "em_max": 1.8e-6,
         "nb_vis": 0, "nb_vis2": 6, "nb_t3": 4, "nb_channels": 6, "instrument_mode": "P_H", "instrument_name": "P",
         "s_ra": 10.0, "s_dec": -5.0}
    b = {**a, "night": "2023-01-02", "t_min": 3.0, "t_max": 4.0, "em_min": 2.0e-6, "em_max": 2.4e-6,
         "nb_channels": 8, "instrument_mode": "G_K", "instrument_name": "G"}
    other = {**a, "target_name": "U", "nb_vis2": 100}
    g = l3_granule([a, b, other], "T", dataproduct_type="fit", obs_id="T/x")
    assert (g["t_min"], g["t_max"], g["em_min"], g["em_max"]) == (1.0, 4.0, 1.5e-6, 2.4e-6)
    assert (g["nb_vis2"], g["nb_t3"], g["nb_channels"], g["night"]) == (12, 8, 8, "")
    assert g["instrument_mode"] == "G_K+P_H" and g["calib_level"] == 3 and g["obs_id"] == "T/x"
    assert l3_granule([a], "T", dataproduct_type="image", obs_id="T/y", nb_channels=1)["night"] == "2023-01-01"
    with pytest.raises(DataError, match="no input granule"):
        l3_granule([other], "T", dataproduct_type="fit", obs_id="T/x")
