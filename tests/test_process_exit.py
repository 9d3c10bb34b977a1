"""A process's end without Python's garbage-collector passes (oiflow.process_exit): the command
line and every warm Dask worker leave that way; cyclic garbage is still finalized, the atexit
handlers still run, the exit code is kept."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data-samples" / "oifits" / "AXCir.oifits"


def _python(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)


def test_cyclic_garbage_is_finalized_and_the_rest_frozen_at_exit(tmp_path):
    """An object in a reference cycle (only the collector frees it) is still finalized at exit
    (its ``__del__`` writes a file); objects alive at exit are frozen; an atexit handler
    registered later still runs, before the freeze."""
    out = _python(f"""
        import atexit, gc, sys
        atexit.register(lambda: print("frozen", gc.get_freeze_count(), file=sys.stderr))
        from oiflow.process_exit import freeze_at_exit
        freeze_at_exit()
        freeze_at_exit()  # once per process
        atexit.register(lambda: print("later handler ran", file=sys.stderr))
        gc.disable()  # only the exit's collection can free the cycle
        class Holder:
            def __del__(self):
                with open({str(tmp_path / 'finalized.txt')!r}, "w") as f:
                    f.write("finalized")
        h = Holder()
        h.me = h
        del h
        """, tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "finalized.txt").read_text() == "finalized"
    frozen = [ln for ln in out.stderr.splitlines() if ln.startswith("frozen")]
    assert len(frozen) == 1 and int(frozen[0].split()[1]) > 1000, out.stderr
    assert "later handler ran" in out.stderr
    assert out.stderr.index("later handler ran") < out.stderr.index("frozen")


def test_the_command_line_leaves_with_the_collector_frozen_and_its_exit_code(tmp_path):
    """`oiflow` as the program: its output and exit code are those of the command (0 for a valid
    file, 2 for a missing one), and it left without the collector's teardown passes."""
    for target, code in ((SAMPLE, 0), (tmp_path / "missing.fits", 2)):
        out = _python(f"""
            import atexit, gc, sys
            atexit.register(lambda: print("frozen", gc.get_freeze_count(), file=sys.stderr))
            sys.argv = ["oiflow", "validate", {str(target)!r}]
            from oiflow.cli import main
            sys.exit(main())
            """, tmp_path)
        assert out.returncode == code, out.stdout + out.stderr
        frozen = [ln for ln in out.stderr.splitlines() if ln.startswith("frozen")]
        assert len(frozen) == 1 and int(frozen[0].split()[1]) > 1000, out.stderr
        assert ("missing.fits" in out.stderr) == (code == 2)
        if code == 0:
            assert out.stdout.strip()


def test_called_in_process_the_command_line_freezes_nothing():
    """main(argv) from Python (tests, a user's script) returns and leaves the collector alone."""
    import gc

    from oiflow.cli import main

    before = gc.get_freeze_count()
    assert main(["validate", str(SAMPLE)]) == 0
    assert gc.get_freeze_count() == before


def test_a_warm_dask_worker_leaves_with_the_collector_frozen(tmp_path):
    """Every worker of an oiflow cluster registers the freeze at its exit when it warms up."""
    from distributed import Client

    from oiflow.cluster import load_profile
    from oiflow.flows.runners import start_cluster

    def registered() -> bool:
        from oiflow import process_exit

        return process_exit._registered[0]

    cluster = start_cluster(load_profile("local", {"n_workers": 1}), {})
    try:
        with Client(cluster) as client:
            assert list(client.run(registered).values()) == [True]
    finally:
        cluster.close()
