"""Planning a night: classify the raw files of a directory into calibration sets (per setup)
and observations.

    plan = plan_night("data-samples/night-sim")
    plan.observations[0].obs_id, plan.calibrations["H-6CH"].missing()

A setup is the instrument's spectral mode (``ESO INS MODE``): the calibration files (DARK, one
FLAT per beam, one P2VM scan per baseline) of that mode serve all its observations. When a
mode has several candidates, the one nearest in time to the observation is used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ReductionError
from ..observables import baselines
from ..product_tree import safe_name
from ..site import night_of
from .raw_reader import RawInfo, read_raw_header

log = logging.getLogger(__name__)

N_TEL = 4


@dataclass
class Observation:
    obs_id: str
    path: Path
    target: str
    category: str  # SCI | CAL ('' if the header does not say)
    setup: str
    mjd: float
    info: RawInfo


@dataclass
class CalibrationSet:
    """The calibration exposures available for one setup."""

    setup: str
    darks: list[RawInfo] = field(default_factory=list)
    flats: dict[int, list[RawInfo]] = field(default_factory=dict)  # beam (0-based) → files
    p2vm: dict[tuple[int, int], list[RawInfo]] = field(default_factory=dict)  # (i, j) 0-based → files

    def missing(self) -> list[str]:
        """Human-readable names of the calibration exposures that are absent."""
        out = []
        if not self.darks:
            out.append("DARK")
        for beam in range(N_TEL):
            if not self.flats.get(beam):
                out.append(f"FLAT for beam {beam + 1}")
        for i, j in baselines(N_TEL):
            if not self.p2vm.get((i, j)):
                out.append(f"P2VM scan for baseline {i + 1}-{j + 1}")
        return out

    def select(self, mjd: float) -> dict:
        """The files nearest in time to ``mjd``: {'dark': info, 'flats': {beam: info}, 'p2vm': {(i,j): info}}."""
        missing = self.missing()
        if missing:
            raise ReductionError(f"setup {self.setup}: missing calibration files: {', '.join(missing)}")
        near = lambda lst: min(lst, key=lambda r: abs(r.mjd - mjd))  # noqa: E731
        return {
            "dark": near(self.darks),
            "flats": {b: near(v) for b, v in sorted(self.flats.items())},
            "p2vm": {p: near(v) for p, v in sorted(self.p2vm.items())},
        }

    def files(self) -> list[Path]:
        sel = []
        for lst in [self.darks, *self.flats.values(), *self.p2vm.values()]:
            sel.extend(r.path for r in lst)
        return sorted(sel)


@dataclass
class NightPlan:
    raw_dir: Path
    night: str
    calibrations: dict[str, CalibrationSet]
    observations: list[Observation]
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)
    ignored: list[tuple[str, str]] = field(default_factory=list)

    def observation(self, obs_id: str) -> Observation:
        for o in self.observations:
            if o.obs_id == obs_id:
                return o
        raise ReductionError(f"no observation {obs_id!r} in {self.raw_dir} "
                             f"(known: {', '.join(o.obs_id for o in self.observations) or 'none'})")

    def calibration_for(self, obs: Observation) -> CalibrationSet:
        cal = self.calibrations.get(obs.setup)
        if cal is None:
            cal = CalibrationSet(obs.setup)
        missing = cal.missing()
        if missing:
            raise ReductionError(f"setup {obs.setup}: missing calibration files in {self.raw_dir}: "
                                 f"{', '.join(missing)}")
        return cal

    def summary(self) -> dict:
        return {
            "night": self.night,
            "setups": {s: {"files": len(c.files()), "missing": c.missing()} for s, c in self.calibrations.items()},
            "observations": [{"obs_id": o.obs_id, "target": o.target, "category": o.category, "setup": o.setup,
                              "mjd": o.mjd} for o in self.observations],
            "unreadable": self.unreadable,
        }


def plan_night(raw_dir: str | Path, files=None) -> NightPlan:
    """Classify every ``*.fits`` / ``*.fits.gz`` file of ``raw_dir`` by its header.

    ``files``: only these files (paths) instead of the whole directory — e.g. one observation
    and its calibration files, for a task that reduces that observation alone.
    Files whose header cannot be read are listed in ``plan.unreadable`` (they fail alone).
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise ReductionError(f"raw directory not found: {raw_dir}")
    if files is not None:
        paths = sorted(Path(f) for f in files)
    else:
        paths = sorted(p for p in raw_dir.iterdir() if p.is_file() and (p.name.endswith(".fits") or p.name.endswith(".fits.gz")))
    cals: dict[str, CalibrationSet] = {}
    obs: list[Observation] = []
    unreadable: list[tuple[str, str]] = []
    ignored: list[tuple[str, str]] = []
    for p in paths:
        try:
            info = read_raw_header(p)
        except ReductionError as exc:
            unreadable.append((p.name, str(exc)))
            log.warning("%s", exc)
            continue
        cal = cals.setdefault(info.mode, CalibrationSet(info.mode))
        if info.dpr_type == "DARK":
            cal.darks.append(info)
        elif info.dpr_type == "FLAT":
            if len(info.beams) != 1:
                ignored.append((p.name, f"FLAT with {len(info.beams)} open beams (expected 1)"))
                continue
            cal.flats.setdefault(info.beams[0], []).append(info)
        elif info.dpr_type == "P2VM":
            if len(info.beams) != 2:
                ignored.append((p.name, f"P2VM with {len(info.beams)} open beams (expected 2)"))
                continue
            cal.p2vm.setdefault(tuple(sorted(info.beams)), []).append(info)
        else:
            name = p.name[: -len(".fits.gz")] if p.name.endswith(".fits.gz") else p.stem
            obs.append(Observation(safe_name(name), p, info.target, info.category, info.mode, info.mjd, info))
    obs.sort(key=lambda o: o.mjd)
    if obs:
        night = night_of(obs[0].mjd, obs[0].info.longitude)
    elif cals:
        first = min((r for c in cals.values() for r in c.darks), key=lambda r: r.mjd, default=None)
        night = night_of(first.mjd, first.longitude) if first else "unknown"
    else:
        night = "unknown"
    return NightPlan(raw_dir, night, cals, obs, unreadable, ignored)
