"""The stages as verbs on a :class:`Chain`, and the :class:`Products` they pass along; the order
of the stages of each flow is written with them in :mod:`oiflow.flows.recipes`.

A stage method takes the :class:`Products` of the stage before it (the product paths that
stage will deliver), plans its own units as soon as those have settled, adds them to the
:class:`~oiflow.flows.units.Scheduler` and returns the :class:`Products` its units will deliver. So a
recipe reads top to bottom (``chain.calibrate(chain.reduce(night))``) while the stages overlap at
run time: a night is calibrated as soon as its own observations are reduced, while another
night is still being reduced; the L3 stages of a set of L2 products start when every part of
it has settled (:func:`all_of`).

Planning a stage may fail (a configured file missing, a model that cannot be read): that
stage's planning is then a failure of the run (listed in the summary) and its Products settle
empty; the other nights go on.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterable

from oiflow.archive import remembered_units
from oiflow.catalog import Catalog, granules_of
from oiflow.config import RunConfig
from oiflow.errors import OiflowError
from oiflow.ingest import file_units, night_units
from oiflow.oifits import read_oifits
from oiflow.work.calibrate import calibrate_unit
from oiflow.work.fit import fit_unit
from oiflow.work.image import image_unit
from oiflow.work.l3 import match_target, start_order, subset_name
from oiflow.work.reduce import reduce_code_version, reduce_units

from oiflow.flows.units import Scheduler

ALL_STAGES = ("reduce", "calibrate", "fit", "image")


class Products:
    """The product paths that a stage's units will deliver, named ``label`` (for messages).

    It settles when the units planned for it (:meth:`expect`) have all settled (failed units
    deliver nothing; units up to date deliver the products of their last run); callbacks given
    to :meth:`then` run once, with the paths, when it has settled."""

    def __init__(self, label: str):
        self.label = label
        self.paths: list[str] = []
        self._pending: int | None = None  # None: its units are not planned yet
        self._callbacks: list[Callable[[list[str]], None]] = []

    @property
    def settled(self) -> bool:
        return self._pending == 0

    def expect(self, n_units: int) -> None:
        """Its units are planned: ``n_units`` of them (0: it settles now, empty)."""
        self._pending = n_units
        if n_units == 0:
            self._settle()

    def deliver(self, paths: Iterable[str]) -> None:
        """One of its units has settled with ``paths``."""
        self.paths += list(paths)
        self._pending -= 1
        if self._pending == 0:
            self._settle()

    def then(self, callback: Callable[[list[str]], None]) -> None:
        """Call ``callback(paths)`` once this has settled (now, if it has)."""
        if self.settled:
            callback(self.paths)
        else:
            self._callbacks.append(callback)

    def _settle(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self.paths)


def all_of(parts: list[Products], label: str = "all inputs") -> Products:
    """The union of ``parts``, settled when every part has."""
    union = Products(label)
    union.expect(len(parts))
    for part in parts:
        part.then(union.deliver)
    return union


class Chain:
    """The stages of one run on ``scheduler`` (products under ``config.output.root``).

    ``stages``: the stages the flow runs (the single-stage flows run one); a stage not among
    them plans no unit and its Products settle empty. The L3 stages run only for the targets
    configured in ``fit.targets`` / ``image.targets``."""

    def __init__(self, scheduler: Scheduler, config: RunConfig, catalog: Catalog,
                 stages: tuple[str, ...] = ALL_STAGES):
        self.sched, self.config, self.catalog, self.stages = scheduler, config, catalog, stages
        self.root = config.output.root
        self.matched: set[tuple[str, str]] = set()
        self.l2_targets: set[str] = set()

    # -- running planned units -----------------------------------------------------------------
    def _run(self, units, into: Products) -> Products:
        """Add ``units`` to the scheduler; ``into`` receives what each delivers."""
        into.expect(len(units))
        for u in units:
            self.sched.add(u, then=lambda s, into=into: into.deliver(s.products))
        return into

    def _after(self, inputs: Products, stage: str, plan: Callable[[list[str]], list]) -> Products:
        """The Products of ``stage``, whose units ``plan(paths)`` makes once ``inputs`` settle.
        A planning error (OiflowError) is a failure of the run; the Products settle empty."""
        out = Products(f"{stage} of {inputs.label}")

        def start(paths: list[str]) -> None:
            units = []
            if stage in self.stages:
                try:
                    units = plan(paths)
                except OiflowError as exc:
                    self.sched.fail("plan", f"{stage} {inputs.label}", f"{type(exc).__name__}: {exc}")
            self._run(units, out)

        inputs.then(start)
        return out

    # -- the stages ----------------------------------------------------------------------------
    def reduce(self, night_dir: str | Path) -> Products:
        """L0 → L1: the reduce units of a raw night directory (one per observation with the
        native backend). They are remembered in the catalogue while the night's files are
        unchanged (a rescan reads none)."""
        cfg = self.config.reduce
        depends_on = [cfg.model_dump(mode="json"), [str(Path(d).resolve()) for d in cfg.calib_dirs],
                      reduce_code_version(), str(Path(self.root).resolve())]
        units = remembered_units(self.catalog, "reduce", night_dir, depends_on,
                                 lambda: reduce_units(night_dir, self.root, cfg, self.catalog))
        return self._run(units, Products(f"L1 of {Path(night_dir).name}"))

    def ingest_night(self, night_dir: str | Path, level: int) -> Products:
        """L1 or L2 OIFITS of a night directory entering the product tree."""
        units = night_units([night_dir], self.root, level, self.catalog)
        return self._run(units, Products(f"L{level} of {Path(night_dir).name}"))

    def ingest_files(self, files, level: int) -> Products:
        """L1 or L2 OIFITS files entering the product tree (one unit per night of the data)."""
        units = file_units(files, self.root, level, self.catalog)
        return self._run(units, Products(f"ingested L{level}"))

    def calibrate(self, l1: Products) -> Products:
        """L1 → L2: one calibrate unit per night of the product tree (``<root>/<night>/L1/…``)."""
        def plan(paths: list[str]) -> list:
            by_night: dict[str, list[str]] = defaultdict(list)
            for p in paths:
                by_night[Path(p).parent.parent.name].append(p)
            return [calibrate_unit(night, files, self.root, self.config.calibrate, self.catalog)
                    for night, files in sorted(by_night.items())]

        return self._after(l1, "calibrate", plan)

    def fit_and_image(self, l2: Products) -> None:
        """L2 → L3: once ``l2`` has settled, a fit unit and an image unit per configured target
        found in it (``fit.targets``, ``image.targets``; those of the flow's stages), over all
        of its nights (``L3/<target>/<night>`` or ``<first>_to_<last>``)."""
        l2.then(self._l3)

    # -- L3 planning ---------------------------------------------------------------------------
    def _l2_granules(self, paths: list[str]) -> list[dict]:
        """Granules of L2 files: from the catalogue, or read from files outside it."""
        rows = self.catalog.products(paths=paths)
        known = {r["access_url"] for r in rows}
        for p in paths:
            if p not in known:
                for g in granules_of(read_oifits(p, warn=False), 2):
                    rows.append({**g, "access_url": p})
        return rows

    def _l3(self, l2_paths: list[str]) -> None:
        jobs = [("fit", self.config.fit.targets, fit_unit), ("image", self.config.image.targets, image_unit)]
        jobs = [j for j in jobs if j[0] in self.stages and j[1]]
        if not jobs or not l2_paths:
            return
        by_target: dict[str, dict] = defaultdict(lambda: {"files": set(), "nights": set(), "points": 0})
        for row in self._l2_granules(sorted(set(l2_paths))):
            t = by_target[row["target_name"]]
            t["files"].add(row["access_url"])
            t["nights"].add(row["night"])
            t["points"] += sum(row.get(f"nb_{k}_points") or 0 for k in ("vis", "vis2", "t3"))
        self.l2_targets |= set(by_target)
        planned = []  # (start order, plan order, unit)
        for stage, targets, make in jobs:
            for name, spec in targets.items():
                target = match_target(name, by_target)
                if target is None:
                    continue
                self.matched.add((stage, name))
                t = by_target[target]
                try:
                    unit = make(target, subset_name(t["nights"]), sorted(t["files"]), self.root, spec, self.catalog)
                except OiflowError as exc:
                    self.sched.fail("plan", f"{stage} {target}", f"{type(exc).__name__}: {exc}")
                    continue
                planned.append((start_order(stage, spec, t["points"]), len(planned), unit))
        for *_, unit in sorted(planned, key=lambda p: p[:2]):  # longest first (Dask starts them in this order)
            self.sched.add(unit)

    def report_unmatched(self) -> None:
        """After the run: configured targets that no L2 product of the run holds are failures."""
        found = ", ".join(sorted(self.l2_targets)) or "none"
        for stage, targets in (("fit", self.config.fit.targets), ("image", self.config.image.targets)):
            if stage not in self.stages:
                continue
            for name in targets:
                if (stage, name) not in self.matched:
                    self.sched.fail(stage, name, f"no L2 data for target {name!r} in this run (targets found: {found})")
