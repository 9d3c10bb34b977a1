"""Small simulated nights for the reduction and calibration tests (built from the demo config)."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from oiflow.simulate.night import NightConfig

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "night-demo.yaml"


def demo_dict() -> dict:
    return yaml.safe_load(DEMO.read_text())


def night_config(*, seed=1, n_obs=None, n_channels=None, n_frames=None, order=None, targets=None, mode=None,
                 slot_min=None, n_calib_frames=None, **conditions) -> NightConfig:
    """The demo night with some knobs changed; ``order`` defaults to the CAL–SCI–CAL pattern
    repeated to ``n_obs`` observations."""
    d = copy.deepcopy(demo_dict())
    d["seed"] = seed
    if targets is not None:
        d["targets"] = targets
    if order is None and n_obs is not None:
        base = d["sequence"]["order"][:4]
        order = [base[k % len(base)] for k in range(n_obs)]
    if order is not None:
        d["sequence"]["order"] = order
    ins = d["instrument"]
    if n_channels is not None:
        ins["n_channels"] = n_channels
        ins["mode"] = f"H-{n_channels}CH"
    if n_frames is not None:
        ins["n_frames"] = n_frames
    if n_calib_frames is not None:
        ins["n_calib_frames"] = n_calib_frames
    if mode is not None:
        ins["mode"] = mode
    if slot_min is not None:
        d["sequence"]["slot_min"] = slot_min
    d["conditions"].update(conditions)
    return NightConfig.validate_dict(d)


# --- nights simulated and reduced once per test session -------------------------------------
import atexit  # noqa: E402
import functools  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

_ROOT = Path(tempfile.mkdtemp(prefix="oiflow-nights-"))
atexit.register(shutil.rmtree, _ROOT, True)


@functools.lru_cache(maxsize=None)
def reduced_night(name: str):
    """(raw_dir, l1_dir, truth, ReduceResult) of a named test night, made once per session.

    * ``pulls``: 20 observations (CAL_A, SCI_DISK, CAL_B, SCI_BINARY …) × 30 frames × 16 channels,
      100-frame calibrations: enough points for pull statistics over a night;
    * ``point``: a point-source science target between the two calibrators (5 obs, 4 channels);
    * ``other_setup``: another spectral mode whose calibrators are in no catalogue.
    """
    from oiflow.config import ReduceConfig
    from oiflow.reduce import reduce_night
    from oiflow.simulate.night import simulate_night

    if name == "pulls":
        cfg = night_config(seed=3, n_obs=20, n_channels=16, n_frames=30, slot_min=8, n_calib_frames=100)
    elif name == "point":
        d = demo_dict()
        t = d["targets"]
        t["SCI_POINT"] = {"ra_deg": 125.0, "dec_deg": -36.0, "category": "SCI", "flux": 1.0, "model": {"type": "point"}}
        cfg = night_config(seed=4, targets=t, order=["HD_CAL_A", "SCI_POINT", "HD_CAL_B", "SCI_POINT", "HD_CAL_A"],
                           n_channels=4, n_frames=30)
    elif name == "other_setup":
        t = {"CAL_X": {"ra_deg": 119.0, "dec_deg": -33.0, "category": "CAL", "model": {"type": "uniform_disk",
                                                                                        "diameter_mas": 0.5}},
             "SCI_Y": {"ra_deg": 124.5, "dec_deg": -37.0, "category": "SCI", "model": {"type": "point"}}}
        cfg = night_config(seed=5, targets=t, order=["CAL_X", "SCI_Y", "CAL_X"], n_channels=3, n_frames=20, mode="H-3CH")
    else:
        raise KeyError(name)
    raw = _ROOT / name / "raw"
    l1 = _ROOT / name / "L1"
    truth = simulate_night(cfg, raw)
    result = reduce_night(raw, l1, ReduceConfig())
    return raw, l1, truth, result, cfg


def small_raw_night(path: Path, date: str, seed: int) -> Path:
    """A small raw night (4 channels, 20 frames; CAL, SCI_DISK, CAL, SCI_DISK, CAL) written to
    ``path``, without its truth file (an archive as a telescope would hold it): 5 observations,
    one calibration, one uniform-disk fit of SCI_DISK (2.0 mas) per night."""
    from oiflow.simulate.night import simulate_night

    d = demo_dict()
    d["night"], d["seed"] = date, seed
    d["instrument"].update(n_channels=4, mode="H-4CH", n_frames=20)
    d["sequence"]["order"] = ["HD_CAL_A", "SCI_DISK", "HD_CAL_B", "SCI_DISK", "HD_CAL_A"]
    simulate_night(NightConfig.validate_dict(d), path)
    (path / "truth.json").unlink()
    return path
