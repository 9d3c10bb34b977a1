"""Benchmarks live in ``bench_*.py`` files (marker ``benchmark``); collect them here.

Run: ``PYTHONPATH=$PWD python -m pytest -m benchmark tests/benchmarks -s``
"""

import pytest


def pytest_collect_file(parent, file_path):
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_")
            and not parent.session.isinitpath(file_path)):  # a file named on the command line is collected anyway
        return pytest.Module.from_parent(parent, path=file_path)
