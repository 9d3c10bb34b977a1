"""Shared test fixtures.

``shared_data`` is the reference data kept in the repository (``tests/data``: the OIFITS corpus
with its MANIFEST, the imaging examples; see tests/data/README.md), or ``$OIFLOW_SHARED_DATA``
(a copy with the same layout). A clone tests itself: the data missing is a failure, not a skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path | None:
    env = os.environ.get("OIFLOW_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO / "tests" / "data")
    for c in candidates:
        if (c / "oifits").is_dir():
            return c
    return None


SHARED_DATA = _shared_data_dir()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if SHARED_DATA is None:
        pytest.fail("the test data are missing: tests/data/oifits (see tests/data/README.md)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory):
    """One temporary Prefect server (own PREFECT_HOME) for the in-process flow tests of a module."""
    from oiflow.flows import runtime

    runtime.configure()
    from prefect.settings import PREFECT_HOME, temporary_settings

    home = tmp_path_factory.mktemp("prefect-home")
    old = os.environ.get("PREFECT_HOME")
    os.environ["PREFECT_HOME"] = str(home)
    with temporary_settings(updates={PREFECT_HOME: str(home)}):
        with runtime.prefect_api() as url:
            yield url
    if old is None:
        os.environ.pop("PREFECT_HOME", None)
    else:
        os.environ["PREFECT_HOME"] = old


# -- skips: only for absent hardware or services ------------------------------------------------
#: what a skip may be for (matched in its reason); anything else — above all missing data — is a
#: defect of the suite and fails the run (OIFLOW_STRICT_SKIPS=0 lets it pass, e.g. while writing a test)
ALLOWED_SKIP = ("gpu", "cupy", "cuda", "container", "podman", "docker", "postgresql", "chromium", "scheduler",
                "slurm", "oar", "root", "ymira", "mira", "apptainer", "esorex")
_disallowed_skips: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not any(word in reason.lower() for word in ALLOWED_SKIP):
            _disallowed_skips.append(f"{report.nodeid}: {reason}")


def _strict_skips() -> bool:
    return bool(_disallowed_skips) and os.environ.get("OIFLOW_STRICT_SKIPS", "1") != "0"


def pytest_sessionfinish(session, exitstatus):
    if _strict_skips():
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if _strict_skips():
        terminalreporter.section("skips not allowed (tests/conftest.py ALLOWED_SKIP)", red=True)
        for line in _disallowed_skips:
            terminalreporter.line(line)
