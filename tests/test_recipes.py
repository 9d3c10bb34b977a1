"""The recipes of the flows (flows/recipes.py) on the stages of flows/chain.py, without Prefect,
a catalogue or data: a scheduler that records the units added and settles them on demand shows
the order of the stages and their overlap across nights (a night is calibrated while another is
still being reduced; the L3 of a run waits for every night)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from oiflow.config import RunConfig
from oiflow.errors import ConfigError

import oiflow.flows.chain as chain_module
from oiflow.flows.chain import Chain, Products, all_of
from oiflow.flows.plans import archive_build, pipeline_build
from oiflow.flows.units import FAILED_UNIT, PROCESSED, Settled


@dataclass(frozen=True)
class Unit:
    stage: str
    unit: str


class RecordingScheduler:
    """Records ``add`` and ``fail``; :meth:`settle` ends a unit as the real scheduler would."""

    def __init__(self):
        self.added: list[tuple[Unit, object]] = []
        self.failures: list[tuple[str, str, str]] = []

    def add(self, unit, then=None):
        self.added.append((unit, then))

    def fail(self, stage, item, error):
        self.failures.append((stage, item, error))

    def units(self, stage: str) -> list[str]:
        return [u.unit for u, _ in self.added if u.stage == stage]

    def settle(self, name: str, products=(), failed: bool = False):
        unit, then = next((u, t) for u, t in self.added if u.unit == name)
        if then is not None:
            then(Settled(unit, FAILED_UNIT if failed else PROCESSED, list(products)))


@pytest.fixture
def stages(monkeypatch):
    """Unit planners replaced: two observations per raw night, one calibrate unit per night, one
    fit unit per target; L2 granules from the paths (``/p/<night>/L2/<target>.fits``)."""
    monkeypatch.setattr(chain_module, "remembered_units",
                        lambda catalog, stage, night, depends_on, plan: [Unit("reduce", f"{Path(night).name}/obs{k}")
                                                                        for k in (1, 2)])
    monkeypatch.setattr(chain_module, "calibrate_unit",
                        lambda night, files, root, cfg, cat: Unit("calibrate", f"{night}:{len(files)} L1"))
    monkeypatch.setattr(chain_module, "fit_unit",
                        lambda target, subset, files, root, spec, cat: Unit("fit", f"{target}/{subset}:{len(files)} L2"))
    monkeypatch.setattr(Chain, "_l2_granules", lambda self, paths: [
        {"target_name": Path(p).stem, "access_url": p, "night": Path(p).parent.parent.name} for p in paths])
    sched = RecordingScheduler()
    config = RunConfig.model_validate({"input": {"nights": ["/raw/n1", "/raw/n2"]},
                                       "fit": {"targets": {"T": {"model": {"star": {"type": "ud", "diameter": 1}}}}}})
    return sched, config


def l1(night, k):
    return f"/p/{night}/L1/obs{k}.fits"


def test_l0_to_l3_calibrates_a_night_while_another_is_reduced_and_fits_after_both(stages):
    sched, config = stages
    c = Chain(sched, config, catalog=None)
    pipeline_build(config)(c)
    assert sched.units("reduce") == ["n1/obs1", "n1/obs2", "n2/obs1", "n2/obs2"] and not sched.units("calibrate")
    sched.settle("n1/obs1", [l1("n1", 1)])
    assert not sched.units("calibrate")  # n1's other observation is still being reduced
    sched.settle("n1/obs2", [l1("n1", 2)])
    assert sched.units("calibrate") == ["n1:2 L1"]  # n2 is still being reduced
    sched.settle("n1:2 L1", ["/p/n1/L2/T.fits"])
    assert not sched.units("fit")  # the run's L3 waits for n2
    sched.settle("n2/obs1", [l1("n2", 1)])
    sched.settle("n2/obs2", failed=True)  # a failed observation: the night is calibrated without it
    assert sched.units("calibrate") == ["n1:2 L1", "n2:1 L1"]
    sched.settle("n2:1 L1", ["/p/n2/L2/T.fits"])
    assert sched.units("fit") == ["T/n1_to_n2:2 L2"] and sched.failures == []


def test_reprocess_archive_fits_each_night_on_its_own(stages, tmp_path):
    sched, config = stages
    for n in ("n1", "n2"):
        (tmp_path / n).mkdir()
        (tmp_path / n / "raw.fits").write_bytes(b"")  # a night directory holds input files
    nights, build = archive_build(tmp_path, config)
    assert [d.name for d in nights] == ["n1", "n2"]
    build(Chain(sched, config, catalog=None))
    for n in ("n1", "n2"):
        sched.settle(f"{n}/obs1", [l1(n, 1)])
        sched.settle(f"{n}/obs2", [l1(n, 2)])
        sched.settle(f"{n}:2 L1", [f"/p/{n}/L2/T.fits"])
    assert sched.units("fit") == ["T/n1:1 L2", "T/n2:1 L2"]


def test_a_stage_that_cannot_be_planned_fails_alone_and_the_rest_goes_on(stages, monkeypatch):
    sched, config = stages

    def refuse(night, files, root, cfg, cat):
        if night == "n1":
            raise ConfigError("calibrate.diameters: file not found: cal.csv")
        return Unit("calibrate", f"{night}:{len(files)} L1")

    monkeypatch.setattr(chain_module, "calibrate_unit", refuse)
    pipeline_build(config)(Chain(sched, config, catalog=None))
    for n in ("n1", "n2"):
        sched.settle(f"{n}/obs1", [l1(n, 1)])
        sched.settle(f"{n}/obs2", [l1(n, 2)])
    assert sched.failures == [("plan", "calibrate L1 of n1", "ConfigError: calibrate.diameters: file not found: cal.csv")]
    sched.settle("n2:2 L1", ["/p/n2/L2/T.fits"])
    assert sched.units("fit") == ["T/n2:1 L2"]


def test_stages_outside_the_flow_plan_nothing(stages):
    sched, config = stages
    pipeline_build(config)(Chain(sched, config, catalog=None, stages=("reduce",)))
    for n in ("n1", "n2"):
        sched.settle(f"{n}/obs1", [l1(n, 1)])
        sched.settle(f"{n}/obs2", [l1(n, 2)])
    assert sched.units("calibrate") == [] and sched.units("fit") == []


def test_all_of_settles_when_every_part_has():
    a, b = Products("a"), Products("b")
    union = all_of([a, b])
    seen = []
    union.then(seen.append)
    a.expect(1)
    b.expect(0)  # nothing to wait for
    assert seen == []
    a.deliver(["x"])
    assert seen == [["x"]]
    empty = all_of([])
    empty.then(seen.append)
    assert seen == [["x"], []]


def test_l3_units_start_longest_first(stages, monkeypatch):
    """The L3 units of a run are added companion searches first, then images (points × pixels),
    then model fits (by data points): on two workers the demo's companion search no longer
    started last, after the others (its fit and image stage went from ~6 to ~4 s)."""
    from oiflow.work.l3 import start_order

    sched, _ = stages
    monkeypatch.setattr(chain_module, "image_unit",
                        lambda target, subset, files, root, spec, cat: Unit("image", f"{target}/{subset}"))
    points = {"A": 100, "B": 5000, "C": 800, "D": 300}
    monkeypatch.setattr(Chain, "_l2_granules", lambda self, paths: [
        {"target_name": Path(p).stem, "access_url": p, "night": "n1", "nb_vis2_points": points[Path(p).stem],
         "nb_t3_points": None} for p in paths])
    ud = {"model": {"star": {"type": "ud", "diameter": 1}}}
    config = RunConfig.model_validate({"input": {"nights": ["/raw/n1"]}, "fit": {"targets": {
        "A": ud, "B": ud, "C": {**ud, "companion_search": True}, "D": {**ud, "companion_search": True}}},
        "image": {"targets": {"A": {"npix": 128}, "B": {"npix": 32}}}})
    c = Chain(sched, config, catalog=None)
    l2 = Products("L2")
    c.fit_and_image(l2)
    l2.expect(1)
    l2.deliver([f"/p/n1/L2/{t}.fits" for t in "ABCD"])
    order = [f"{u.stage} {u.unit}" for u, _ in sched.added]
    # searches by points (C 800, D 300); images by points x pixels (B 5000 x 32² before A 100 x 128²);
    # model fits by points (B, A)
    assert order == ["fit C/n1:1 L2", "fit D/n1:1 L2", "image B/n1", "image A/n1", "fit B/n1:1 L2", "fit A/n1:1 L2"]
    assert start_order("fit", config.fit.targets["C"], 10) < start_order("image", config.image.targets["A"], 10**6)
