"""Shared test fixtures.

``shared_data`` is the read-only reference data beside the checkout (``../shared/data``), or
``$OIFLOW_SHARED_DATA``. CI has it; tests that need it are skipped only when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path | None:
    env = os.environ.get("OIFLOW_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates += [REPO.parent / "shared" / "data", REPO / "shared" / "data"]
    for c in candidates:
        if (c / "oifits").is_dir():
            return c
    return None


SHARED_DATA = _shared_data_dir()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if SHARED_DATA is None:
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory):
    """One temporary Prefect server (own PREFECT_HOME) for the in-process flow tests of a module."""
    from flows import runtime

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
