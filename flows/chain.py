"""The order of the stages, as plain Python: each stage's units are added to a
:class:`~oiflow.flows.units.Scheduler` when the units they depend on have settled.

::

    raw night (L0) ─ reduce (per observation) ─┐
    L1 files/nights ─ ingest ──────────────────┴─ calibrate (per night) ─┐
    L2 files/nights ─ ingest ────────────────────────────────────────────┴─ fit, image (per target)

An :class:`L2Group` collects the L2 products that are fitted and imaged together: all the
inputs of an ``l0_to_l3`` run (a target's L3 product then combines its nights:
``L3/<target>/<first>_to_<last>``), or one night of an archive (``L3/<target>/<night>``). Its
fits and images start once every source that can add L2 products to it has settled, so one
night can be calibrated while another is still being reduced.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Callable

from oiflow.archive import remembered_units
from oiflow.catalog import Catalog, granules_of
from oiflow.config import RunConfig
from oiflow.errors import OiflowError
from oiflow.ingest import file_units, night_units
from oiflow.oifits import read_oifits
from oiflow.work.calibrate import calibrate_unit
from oiflow.work.fit import fit_unit
from oiflow.work.image import image_unit
from oiflow.work.l3 import match_target, subset_name
from oiflow.work.reduce import reduce_code_version, reduce_units

from oiflow.flows.units import Scheduler, Settled


class L2Group:
    """L2 products fitted and imaged together; see the module docstring."""

    def __init__(self, start: Callable[[list[str]], None]):
        self._start = start
        self.pending = 0
        self.paths: list[str] = []
        self.closed = self.started = False

    def expect(self) -> None:
        self.pending += 1

    def deliver(self, paths) -> None:
        self.paths += list(paths)
        self.pending -= 1
        self._maybe_start()

    def close(self) -> None:
        self.closed = True
        self._maybe_start()

    def _maybe_start(self) -> None:
        if self.closed and self.pending == 0 and not self.started:
            self.started = True
            self._start(sorted(set(self.paths)))


class Chain:
    """Builds the stage graph of one run on ``scheduler`` (products under ``config.output.root``).

    ``stages``: the stages to run (the single-stage flows run one); the L3 stages run only
    for the targets configured in ``fit.targets`` / ``image.targets``.
    """

    def __init__(self, scheduler: Scheduler, config: RunConfig, catalog: Catalog,
                 stages: tuple[str, ...] = ("reduce", "calibrate", "fit", "image")):
        self.sched, self.config, self.catalog, self.stages = scheduler, config, catalog, stages
        self.root = config.output.root
        self.matched: set[tuple[str, str]] = set()
        self.l2_targets: set[str] = set()

    def group(self) -> L2Group:
        return L2Group(self.l3)

    def _guard(self, what: str, fn, *args) -> None:
        """Run a planning step; an OiflowError fails ``what`` only (listed in the summary)."""
        try:
            fn(*args)
        except OiflowError as exc:
            self.sched.fail("plan", what, f"{type(exc).__name__}: {exc}")

    # -- L0 → L1 ------------------------------------------------------------------------
    def raw_night(self, night_dir: str | Path, group: L2Group | None) -> None:
        """Reduce a raw night; then calibrate it (when asked) into ``group``. The night's reduce
        units are remembered in the catalogue while its files are unchanged (a rescan reads none)."""
        cfg = self.config.reduce
        depends_on = [cfg.model_dump(mode="json"), [str(Path(d).resolve()) for d in cfg.calib_dirs],
                      reduce_code_version(), str(Path(self.root).resolve())]
        units = remembered_units(self.catalog, "reduce", night_dir, depends_on,
                                 lambda: reduce_units(night_dir, self.root, cfg, self.catalog))
        waiting = {u.unit for u in units}
        l1: list[str] = []
        if group is not None:
            group.expect()

        def reduced(s: Settled) -> None:
            l1.extend(s.products)
            waiting.discard(s.unit.unit)
            if not waiting and group is not None:
                self._guard(f"calibrate {Path(night_dir).name}", self.calibrate, l1, group)
                group.deliver([])

        for u in units:
            self.sched.add(u, then=reduced)

    # -- L1/L2 OIFITS entering the tree ----------------------------------------------------
    def ingest(self, units, level: int, group: L2Group | None) -> None:
        """Ingest L1 or L2 OIFITS; L1 then goes to calibrate, L2 to ``group``."""
        if not units:
            return
        waiting = {u.unit for u in units}
        got: list[str] = []
        if group is not None:
            group.expect()

        def ingested(s: Settled) -> None:
            got.extend(s.products)
            waiting.discard(s.unit.unit)
            if waiting or group is None:
                return
            if level == 1:
                self._guard("calibrate ingested L1", self.calibrate, got, group)
                group.deliver([])
            else:
                group.deliver(got)

        for u in units:
            self.sched.add(u, then=ingested)

    def ingest_nights(self, nights, level: int, group: L2Group | None) -> None:
        self.ingest(night_units(nights, self.root, level, self.catalog), level, group)

    def ingest_files(self, files, level: int, group: L2Group | None) -> None:
        self.ingest(file_units(files, self.root, level, self.catalog), level, group)

    # -- L1 → L2 ---------------------------------------------------------------------------
    def calibrate(self, l1_paths, group: L2Group | None) -> None:
        """One calibrate unit per night of the product tree (``<root>/<night>/L1/…``)."""
        if "calibrate" not in self.stages:
            return
        by_night: dict[str, list[str]] = defaultdict(list)
        for p in l1_paths:
            by_night[Path(p).parent.parent.name].append(p)
        for night, files in sorted(by_night.items()):
            unit = calibrate_unit(night, files, self.root, self.config.calibrate, self.catalog)
            if group is not None:
                group.expect()
            self.sched.add(unit, then=(lambda s: group.deliver(s.products)) if group else None)

    # -- L2 → L3 ---------------------------------------------------------------------------
    def _l2_granules(self, paths: list[str]) -> list[dict]:
        """Granules of L2 files: from the catalogue, or read from files outside it."""
        rows = self.catalog.products(paths=paths)
        known = {r["access_url"] for r in rows}
        for p in paths:
            if p not in known:
                for g in granules_of(read_oifits(p, warn=False), 2):
                    rows.append({**g, "access_url": p})
        return rows

    def l3(self, l2_paths: list[str]) -> None:
        """Fit and image units for the configured targets found in ``l2_paths``."""
        jobs = [("fit", self.config.fit.targets, fit_unit), ("image", self.config.image.targets, image_unit)]
        jobs = [j for j in jobs if j[0] in self.stages and j[1]]
        if not jobs or not l2_paths:
            return
        by_target: dict[str, dict[str, set]] = defaultdict(lambda: {"files": set(), "nights": set()})
        for row in self._l2_granules(l2_paths):
            by_target[row["target_name"]]["files"].add(row["access_url"])
            by_target[row["target_name"]]["nights"].add(row["night"])
        self.l2_targets |= set(by_target)
        for stage, targets, make in jobs:
            for name, spec in targets.items():
                target = match_target(name, by_target)
                if target is None:
                    continue
                self.matched.add((stage, name))
                t = by_target[target]
                self._guard(f"{stage} {target}", lambda: self.sched.add(
                    make(target, subset_name(t["nights"]), sorted(t["files"]), self.root, spec, self.catalog)))

    def report_unmatched(self) -> None:
        """After the run: configured targets that no L2 product of the run holds are failures."""
        found = ", ".join(sorted(self.l2_targets)) or "none"
        for stage, targets in (("fit", self.config.fit.targets), ("image", self.config.image.targets)):
            if stage not in self.stages:
                continue
            for name in targets:
                if (stage, name) not in self.matched:
                    self.sched.fail(stage, name, f"no L2 data for target {name!r} in this run (targets found: {found})")
