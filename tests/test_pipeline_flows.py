"""The wired pipeline on Prefect + Dask: the demo end to end (L0 → L1 → L2 → L3 plus real L2
files), idempotent reruns, a changed calibrator catalogue, a corrupt raw file, and an archive of
raw nights reprocessed after one raw file changed. Slow: run with ``-m slow`` (`.ci/run` does).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits

from oiflow.flows import runtime

runtime.configure()

from oiflow.catalog import COMPLETED, Catalog  # noqa: E402
from oiflow.config import load_config  # noqa: E402
from oiflow.provenance import sha256_file  # noqa: E402

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "demo.yaml"
NIGHT = REPO / "data-samples" / "night-sim"


def _tree_state(root: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, sha256_file(p)) for p in sorted(root.rglob("*"))
            if p.is_file()}


def _run(flow_obj, config, **params):
    from oiflow.flows.runners import profile_of, task_runner
    from oiflow.flows.summary import RunSummary

    state = flow_obj.with_options(task_runner=task_runner(profile_of(config.cluster)))(
        config=config, return_state=True, **params)
    return state, RunSummary.from_state_data(state.result(raise_on_failure=False))


def _demo_config(root: Path, **overrides):
    return load_config(DEMO, {"output": {"root": str(root)}, "cluster": {"n_workers": 2}, **overrides})


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_demo_end_to_end_idempotent_and_a_new_calibrator_catalogue(prefect_api, tmp_path, monkeypatch):
    from oiflow.flows.pipeline import l0_to_l3

    monkeypatch.chdir(REPO)  # the demo's paths are relative to the repository
    root = tmp_path / "products"
    state, summary = _run(l0_to_l3, _demo_config(root))
    assert state.is_completed(), state.message
    assert summary.failures == [] and summary.skipped == []
    stages = [p.split()[0] for p in summary.processed]
    assert {s: stages.count(s) for s in set(stages)} == {"reduce": 11, "calibrate": 1, "ingest": 3, "fit": 4,
                                                         "image": 2}

    # the product tree of ARCHITECTURE.md and one catalogue row per granule
    with Catalog.for_root(root) as cat:
        rows = cat.products()
        runs = cat.runs()
    levels = {lv: sorted(Path(r["access_url"]).relative_to(root.resolve()).as_posix() for r in rows
                         if r["calib_level"] == lv) for lv in (1, 2, 3)}
    assert len(levels[1]) == 11 and all(p.startswith("2023-03-15/L1/SIMABCD_OBS0") for p in levels[1])
    assert levels[2] == ["2007-05-10/L2/contest-2008-binary.oifits", "2013-07-14/L2/AXCir.oifits",
                         "2016-05-23/L2/alfCenA_20160523_1.fits",
                         "2023-03-15/L2/SCI_BINARY_2023-03-15.fits", "2023-03-15/L2/SCI_DISK_2023-03-15.fits"]
    assert levels[3] == ["L3/AX_CIR/2013-07-14/companion.json", "L3/AX_CIR/2013-07-14/companion_maps.fits",
                         "L3/AX_CIR/2013-07-14/fit_binary.json", "L3/Alpha_Cen_A/2016-05-23/fit_ud.json",
                         "L3/Gam_Vic/2007-05-10/image.fits", "L3/SCI_BINARY/2023-03-15/fit_binary.json",
                         "L3/SCI_BINARY/2023-03-15/image.fits", "L3/SCI_DISK/2023-03-15/fit_ud.json"]
    assert (root / "2023-03-15" / "L2" / "tf_SIMABCD_H-6CH.png").is_file()
    assert (root / "L3" / "SCI_BINARY" / "2023-03-15" / "image.png").is_file()
    assert len(summary.products) == len(rows) == 24
    l3 = {Path(r["access_url"]).name + "@" + r["target_name"]: r for r in rows if r["calib_level"] == 3}
    assert l3["image.fits@SCI_BINARY"]["dataproduct_type"] == "image"
    assert l3["fit_ud.json@SCI_DISK"]["dataproduct_type"] == "fit"
    assert l3["fit_ud.json@SCI_DISK"]["nb_vis2"] == 18 and l3["fit_ud.json@SCI_DISK"]["night"] == "2023-03-15"
    assert all(r.status == COMPLETED for r in runs) and len(runs) == 21

    # the science: the simulated truth recovered (demo night: truth.json), the real data as published
    disk = _json(root / "L3/SCI_DISK/2023-03-15/fit_ud.json")["parameters"]["star.diameter"]
    assert abs(disk["value"] - 2.0) < 3 * disk["error"] + 0.01
    binary = _json(root / "L3/SCI_BINARY/2023-03-15/fit_binary.json")["derived"]
    assert binary["separation_mas"] == pytest.approx(4.5, abs=0.02)
    assert binary["position_angle_deg"] == pytest.approx(60.0, abs=0.5)
    assert binary["flux_ratio"] == pytest.approx(0.3, abs=0.01)
    alf = _json(root / "L3/Alpha_Cen_A/2016-05-23/fit_ud.json")
    # PMOIRED on this file: 8.258 ± 0.015 mas, chi2_red 1.04 (tests/test_fit_real.py fits the other α Cen A file)
    assert alf["parameters"]["star.diameter"]["value"] == pytest.approx(8.258, abs=0.015)
    assert alf["verdict"]["status"] == "ok"
    comp = _json(root / "L3/AX_CIR/2013-07-14/companion.json")
    assert comp["best"]["x_mas"] == pytest.approx(6.233, abs=0.1) and comp["best"]["y_mas"] == pytest.approx(-28.51, abs=0.1)
    assert comp["nsigma"] > 8  # CANDID: (6.233, -28.511) mas at 8σ
    # the image of the simulated binary: the companion East-North of the primary at the true offset
    img = fits.getdata(root / "L3/SCI_BINARY/2023-03-15/image.fits").astype(float)
    hdr = fits.getheader(root / "L3/SCI_BINARY/2023-03-15/image.fits")
    n, pix = img.shape[0], abs(hdr["CDELT1"]) * 3.6e6  # degrees → mas
    iy, ix = np.indices(img.shape)
    x_east, y_north = -(ix - n // 2) * pix, (iy - n // 2) * pix
    primary = np.unravel_index(np.argmax(img), img.shape)
    far = np.hypot(x_east - x_east[primary], y_north - y_north[primary]) > 2.0
    k = np.unravel_index(np.argmax(np.where(far, img, -np.inf)), img.shape)
    dx, dy = x_east[k] - x_east[primary], y_north[k] - y_north[primary]
    assert math.hypot(dx - 3.897, dy - 2.25) < 0.6, (dx, dy)  # truth: 4.5 mas at PA 60°
    near = np.hypot(x_east - x_east[k], y_north - y_north[k]) < 1.0
    near_primary = np.hypot(x_east - x_east[primary], y_north - y_north[primary]) < 1.0
    assert img[near].sum() / img[near_primary].sum() == pytest.approx(0.3, abs=0.1)

    # artifacts in the Prefect API: summary, products table, quicklooks as data: URIs
    from prefect import get_client

    with get_client(sync_client=True) as client:
        arts = {a.key: a for a in client.read_artifacts() if a.key}
    assert {"oiflow-l0-to-l3-summary", "oiflow-l0-to-l3-products", "calibrate-2023-03-15-tf-simabcd-h-6ch",
            "image-sci-binary-2023-03-15-image", "fit-sci-disk-2023-03-15-fit-ud-v2"} <= set(arts)
    assert arts["calibrate-2023-03-15-tf-simabcd-h-6ch"].data.startswith("data:image/png;base64,")

    # the same run again: no work, no writes
    before = _tree_state(root)
    state, summary = _run(l0_to_l3, _demo_config(root))
    assert state.is_completed() and summary.processed == [] and len(summary.skipped) == 21
    assert _tree_state(root) == before and len(summary.products) == 24

    # a new calibrator catalogue: the night's L2 and the L3 made from it are redone, not its L1
    # nor the L3 of the real files
    diameters = tmp_path / "calibrators.csv"
    diameters.write_text((REPO / "data-samples/calibrators.csv").read_text().replace("0.5500", "0.5600"))
    state, summary = _run(l0_to_l3, _demo_config(root, calibrate={"diameters": str(diameters)}))
    assert state.is_completed(), state.message
    assert sorted(summary.processed) == ["calibrate 2023-03-15", "fit SCI_BINARY/2023-03-15", "fit SCI_DISK/2023-03-15",
                                         "image SCI_BINARY/2023-03-15"]
    after = _tree_state(root)
    changed = sorted(k for k in after if after[k] != before.get(k))
    assert not any("/L1/" in k for k in changed) and not any(k.startswith(("L3/AX_CIR", "L3/Alpha", "L3/Gam")) for k in changed)
    assert "2023-03-15/L2/SCI_DISK_2023-03-15.fits" in changed and "L3/SCI_DISK/2023-03-15/fit_ud.json" in changed
    with Catalog.for_root(root) as cat:
        assert len(cat.products()) == 24  # replaced, not duplicated


def _write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_corrupt_raw_file_fails_its_observation_and_the_command_exits_non_zero(tmp_path):
    night = tmp_path / "night"
    shutil.copytree(NIGHT, night)
    bad = night / "SIMABCD_OBS006_SCI_DISK.fits"
    bad.write_bytes(bad.read_bytes()[:14400])  # frames cut off
    root = tmp_path / "products"
    cfg = _write_config(tmp_path / "run.yaml", {
        "input": {"night": str(night)}, "output": {"root": str(root)},
        "calibrate": {"diameters": str(REPO / "data-samples/calibrators.csv")},
        "fit": {"targets": {"SCI_DISK": {"model": str(REPO / "configs/models/ud.yaml"), "observables": ["v2"]}}},
        "cluster": {"n_workers": 2}})
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PYTHONPATH=str(REPO), PREFECT_HOME=str(tmp_path / "home"))
    out = subprocess.run([sys.executable, "-m", "oiflow.cli", "run", str(cfg)], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert "partially failed: 1 item(s)" in out.stdout
    failed = [line for line in out.stderr.splitlines() if "SIMABCD_OBS006_SCI_DISK" in line]
    assert failed and "ReductionError" in failed[0] and "SIMABCD_OBS006_SCI_DISK.fits" in failed[0]
    # the rest of the night went through: 10 L1, both L2 (the disk from its 2 good observations), the fit
    assert len(list((root / "2023-03-15" / "L1").glob("*.fits"))) == 10
    with Catalog.for_root(root) as cat:
        disk = cat.products(target="SCI_DISK", level=2)
        fit = cat.products(target="SCI_DISK", level=3)
    assert len(disk) == 1 and disk[0]["nb_vis2"] == 12
    assert len(fit) == 1 and Path(fit[0]["access_url"]).name == "fit_ud.json"


def _small_night(path: Path, date: str, seed: int) -> Path:
    from night_factory import small_raw_night

    return small_raw_night(path, date, seed)


def test_archive_of_raw_nights_reprocesses_only_what_a_changed_raw_file_touches(prefect_api, tmp_path):
    from oiflow.flows.reprocess import reprocess_archive

    archive = tmp_path / "archive"
    _small_night(archive / "n1", "2023-03-15", 1)
    n2 = _small_night(archive / "n2", "2023-03-16", 2)
    root = tmp_path / "products"
    config = load_config(None, {
        "output": {"root": str(root)}, "calibrate": {"diameters": str(REPO / "data-samples/calibrators.csv")},
        "fit": {"targets": {"SCI_DISK": {"model": str(REPO / "configs/models/ud.yaml"), "observables": ["v2"]}}},
        "cluster": {"n_workers": 2}})
    state, summary = _run(reprocess_archive, config, root=archive)
    assert state.is_completed(), state.message
    assert len(summary.processed) == 2 * (5 + 1 + 1)  # per night: 5 observations, its calibration, the disk fit
    for night in ("2023-03-15", "2023-03-16"):
        fit = _json(root / "L3" / "SCI_DISK" / night / "fit_ud.json")["parameters"]["star.diameter"]
        assert abs(fit["value"] - 2.0) < 4 * fit["error"] + 0.02

    before = _tree_state(root)
    state, summary = _run(reprocess_archive, config, root=archive)
    assert state.is_completed() and summary.processed == [] and len(summary.skipped) == 14
    assert _tree_state(root) == before

    raw = next(n2.glob("*OBS002_SCI_DISK.fits"))  # a raw file changes (here: a header card)
    with fits.open(raw, mode="update") as hdul:
        hdul[0].header["OBSERVER"] = "reprocessing test"
    state, summary = _run(reprocess_archive, config, root=archive)
    assert state.is_completed(), state.message
    assert sorted(summary.processed) == ["calibrate 2023-03-16", "fit SCI_DISK/2023-03-16",
                                         f"reduce 2023-03-16/{raw.stem}"]
    after = _tree_state(root)
    assert sorted(k for k in after if after[k] != before.get(k)) == [
        f"2023-03-16/L1/{raw.stem}.fits", "2023-03-16/L2/SCI_DISK_2023-03-16.fits",
        "2023-03-16/L2/tf_SIMABCD_H-4CH.png", "L3/SCI_DISK/2023-03-16/fit_ud.json",
        "L3/SCI_DISK/2023-03-16/fit_ud_v2.png", "catalog.sqlite"]
