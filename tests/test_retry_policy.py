"""One retry policy (oiflow.tasks.policy.RETRY) for a unit run either way (``cluster.unit_runs``): a
transient failure is retried after the policy's delay, a data error is not retried.

The fast tests check the policy object and what it gives Prefect; the slow ones run units
through the real :class:`oiflow.flows.units.Scheduler` on a Dask cluster, as Prefect task runs and as
plain Dask tasks, with a Prefect server (``-m slow``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from oiflow.flows import runtime

runtime.configure()

from prefect import flow, task  # noqa: E402
from prefect.states import Completed, Failed  # noqa: E402

from oiflow.archive import UnitResult, WorkUnit  # noqa: E402
from oiflow.errors import DataError, EngineError  # noqa: E402
from oiflow.tasks import policy  # noqa: E402
from oiflow.tasks.policy import RETRY, RetryPolicy, is_transient, task_options  # noqa: E402


def test_only_transient_errors_are_retried():
    assert is_transient(OSError("NFS stale handle")) and is_transient(TimeoutError())
    assert is_transient(ConnectionResetError())
    for exc in (DataError("bad"), EngineError("crash", returncode=1), FileNotFoundError("x"), PermissionError(),
                ValueError("bug")):
        assert not is_transient(exc)


def test_the_policy_applied_without_prefect(monkeypatch):
    """``unit_runs: dask``: RetryPolicy.call retries transient failures after the policy's delays."""
    slept: list[float] = []
    monkeypatch.setattr(policy.time, "sleep", slept.append)
    calls: list[str] = []

    def flaky(unit, errors):
        calls.append(unit)
        if len(calls) <= errors:
            raise OSError("NFS stale handle")
        return f"done {unit}"

    assert RETRY.call(flaky, "u1", errors=2) == "done u1" and len(calls) == 3
    assert slept == [2.0, 10.0]
    calls.clear()
    with pytest.raises(OSError, match="stale"):  # retries exhausted
        RETRY.call(flaky, "u2", errors=5)
    assert len(calls) == RETRY.retries + 1
    calls.clear()

    def bad(unit):
        calls.append(unit)
        raise DataError("truncated file")

    with pytest.raises(DataError):
        RETRY.call(bad, "u3")
    assert calls == ["u3"]  # bad data is not retried
    assert RetryPolicy(retries=3, delays_s=(1.0,)).delay(2) == 1.0  # the last delay repeats


def test_prefect_tasks_get_the_same_policy():
    """``unit_runs: prefect``: the stage tasks carry the policy's retries, delays and condition."""
    opts = task_options("probe")
    assert opts["retries"] == RETRY.retries == 2
    assert opts["retry_delay_seconds"] == [RETRY.delay(0), RETRY.delay(1)] == [2.0, 10.0]
    assert opts["retry_condition_fn"] == RETRY.retry_condition
    t = task(**opts)(_probe)
    assert (t.retries, t.retry_delay_seconds, t.retry_condition_fn) == (2, [2.0, 10.0], RETRY.retry_condition)
    assert RETRY.retry_condition(t, None, Failed(data=OSError("stale handle")))
    assert not RETRY.retry_condition(t, None, Failed(data=DataError("truncated file")))
    assert not RETRY.retry_condition(t, None, Completed(data=1))


# -- both unit modes on a Dask cluster, through the Scheduler --------------------------------------


def _probe(unit: WorkUnit) -> UnitResult:
    """A stage function: records each attempt (time) in its unit's directory; the unit named
    "flaky" fails once with a transient error, the one named "bad" always with a data error."""
    log = Path(unit.out_dir) / "attempts"
    with log.open("a") as f:
        f.write(f"{time.time()}\n")
    attempts = len(log.read_text().split())
    if unit.unit == "bad":
        raise DataError("truncated file")
    if unit.unit == "flaky" and attempts == 1:
        raise OSError("stale NFS file handle")
    return UnitResult("probe", unit.unit)


PROBE = task(**task_options("probe"))(_probe)


@flow(name="retry-policy-probe", validate_parameters=False)
def _probe_flow(units: list, root: str, unit_runs: str):
    from oiflow.catalog import Catalog
    from oiflow.config import RunConfig

    from oiflow.flows.summary import RunSummary
    from oiflow.flows.units import Scheduler, unit_runs_client

    config = RunConfig.model_validate({"cluster": {"unit_runs": unit_runs}})
    summary = RunSummary(flow="retry-policy-probe", root=root)
    with Catalog.for_root(root) as catalog:
        client = unit_runs_client(config, default="prefect")
        assert (client is not None) == (unit_runs == "dask")
        sched = Scheduler(catalog, summary, dask_client=client)
        for u in units:
            sched.add(u, PROBE)
        return sched.run()


@pytest.mark.slow
@pytest.mark.parametrize("unit_runs", ["prefect", "dask"])
def test_retries_in_both_unit_modes(prefect_api, tmp_path, unit_runs):
    from oiflow.flows.runners import task_runner
    from oiflow.cluster import load_profile

    units = []
    for name in ("flaky", "bad", "fine"):
        (tmp_path / name).mkdir()
        units.append(WorkUnit("probe", name, (), {"mode": unit_runs}, "test", str(tmp_path / name)))
    runner = task_runner(load_profile("local", {"n_workers": 1}))
    summary = _probe_flow.with_options(task_runner=runner)(units, str(tmp_path / "products"), unit_runs)

    attempts = {u.unit: [float(t) for t in (tmp_path / u.unit / "attempts").read_text().split()] for u in units}
    assert {k: len(v) for k, v in attempts.items()} == {"flaky": 2, "bad": 1, "fine": 1}
    assert attempts["flaky"][1] - attempts["flaky"][0] >= RETRY.delay(0) - 0.05  # the policy's delay
    assert sorted(summary.processed) == ["probe bad", "probe fine", "probe flaky"]
    assert [(f["unit"], f["error"]) for f in summary.failures] == [("probe bad", "DataError: truncated file")]
