"""A user's mistakes give one line and exit code 2, before any work, on every subcommand.

Every subcommand of the app (walked from its click command tree: a new one fails
``test_every_command_has_a_row`` until it gets a row in :data:`TABLE`) is run on each mistake
that applies to it: a missing path, a directory where a file is expected, a file where a
directory is expected, an existing output file without ``--force``, an output in an immutable
directory (``chattr +i``: the tests run as root, for whom permission bits prove nothing) and a
malformed configuration (bad YAML, an unknown key, a value of the wrong type). Each must print
exactly one line on stderr naming the path and the problem, no traceback, exit 2, and take less
than the time any real work would (3 s; the command is called in-process). Where a mistake
cannot apply, the row says why.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from oiflow.cli import main
from test_cli_convention import IDS

REPO = Path(__file__).resolve().parents[1]
KINDS = ("missing", "dir-for-file", "file-for-dir", "existing-output", "unwritable-output", "bad-yaml",
         "unknown-key", "wrong-type")
#: what the one line must say, per kind
SAYS = {"missing": "no such", "dir-for-file": "is a directory", "file-for-dir": "is a file",
        "existing-output": "exists (add --force to replace it)", "unwritable-output": "cannot write in",
        "bad-yaml": "line 2, column", "unknown-key": "unknown", "wrong-type": ""}
MODEL = "{star: {type: ud, diameter: 1}}"
RAW = REPO / "data-samples/night-sim"  # a night of raw files (only read)


@dataclass
class World:
    """The paths the mistakes are made with."""

    f: Path  # a good OIFITS file
    d: Path  # an existing directory
    txt: Path  # an existing (text) file
    missing: Path
    existing: Path  # an existing output file
    locked: Path  # an immutable directory
    tmp: Path
    night: Path  # a good night configuration

    def out(self, name: str = "out") -> Path:
        return self.tmp / name

    def config(self, schema: str, kind: str) -> Path:
        """A configuration file of ``schema`` holding the mistake ``kind``."""
        good = {"run": f"input: {{files: [{self.f}], files_level: 2}}\n", "image": "npix: 32\n", "model": "",
                "deployments": "deployments:\n  - name: x\n    flow: reprocess_archive\n",
                "night": self.night.read_text()}[schema]
        if kind == "good":
            text = good
        elif kind == "bad-yaml":
            text = "a: {b: c\n"
        elif kind == "wrong-type" and schema == "night":  # every key is set: one value made wrong
            text = good.replace("seed: 20230315", "seed: lots")
        else:
            text = good + {
                "unknown-key": {"run": "outptu: {root: p}\n", "image": "npixx: 64\n",
                                "model": "star: {type: ud, diamter: 1}\n", "deployments": "    crn: '0 9 * * *'\n",
                                "night": "seeed: 3\n"},
                "wrong-type": {"run": "cluster: {n_workers: many}\n", "image": "maxiter: lots\n",
                               "model": "star: {type: ud, diameter: big}\n", "deployments": "    cron: [5]\n"},
            }[kind][schema]
        path = self.tmp / f"{schema}-{kind}.yaml"
        path.write_text(text)
        return path


@pytest.fixture
def world(tmp_path, shared_data):
    locked = tmp_path / "locked"
    locked.mkdir()
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile.txt").write_text("not a directory\n")
    (tmp_path / "exists.fits").write_text("an earlier product\n")
    night = tmp_path / "night.yaml"
    night.write_text((REPO / "configs/night-demo.yaml").read_text())
    subprocess.run(["chattr", "+i", str(locked)], check=True)
    try:
        yield World(shared_data / "oifits/real/pionier/AXCir.oifits", tmp_path / "adir", tmp_path / "afile.txt",
                    tmp_path / "missing.fits", tmp_path / "exists.fits", locked, tmp_path, night)
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)


def configs(schema: str, build):
    """The three malformed-configuration cases of a command whose file follows ``schema``."""
    return {k: (lambda w, k=k: build(w, w.config(schema, k))) for k in ("bad-yaml", "unknown-key", "wrong-type")}


def na(reason: str) -> dict:
    return {k: reason for k in KINDS}


NO_CONFIG = {"bad-yaml": "no configuration file", "unknown-key": "no configuration file",
             "wrong-type": "no configuration file"}
DIR_OUT = "its output is a directory: files of the same names in it are replaced (its --help says so)"

#: command → mistake → the arguments that make it (a function of the World), or why it cannot apply
TABLE = {
    "oiflow validate": {"missing": lambda w: [w.missing], "dir-for-file": lambda w: [w.d],
                        "file-for-dir": "no directory argument",
                        "existing-output": lambda w: [w.f, "--json-out", w.existing],
                        "unwritable-output": lambda w: [w.f, "--json-out", w.locked / "v.json"], **NO_CONFIG},
    "oiflow inspect": {"missing": lambda w: [w.missing], "dir-for-file": lambda w: [w.d],
                       "file-for-dir": "no directory argument",
                       "existing-output": lambda w: [w.f, "--json-out", w.existing],
                       "unwritable-output": lambda w: [w.f, "--json-out", w.locked / "i.json"], **NO_CONFIG},
    "oiflow plot": {"missing": lambda w: [w.missing, "-o", w.out()], "dir-for-file": lambda w: [w.d, "-o", w.out()],
                    "file-for-dir": lambda w: [w.f, "-o", w.txt], "existing-output": DIR_OUT,
                    "unwritable-output": lambda w: [w.f, "-o", w.locked / "plots"], **NO_CONFIG},
    "oiflow merge": {"missing": lambda w: [w.f, w.missing, "-o", w.out("m.fits")],
                     "dir-for-file": lambda w: [w.f, w.d, "-o", w.out("m.fits")],
                     "file-for-dir": "no directory argument",
                     "existing-output": lambda w: [w.f, w.f, "-o", w.existing],
                     "unwritable-output": lambda w: [w.f, w.f, "-o", w.locked / "m.fits"], **NO_CONFIG},
    "oiflow select": {"missing": lambda w: [w.missing, "-o", w.out("s.fits")],
                      "dir-for-file": lambda w: [w.f, "-o", w.d],
                      "file-for-dir": "no directory argument",
                      "existing-output": lambda w: [w.f, "-o", w.existing],
                      "unwritable-output": lambda w: [w.f, "-o", w.locked / "s.fits"], **NO_CONFIG},
    "oiflow quicklook": {"missing": lambda w: [w.missing, "-o", w.out()],
                         "dir-for-file": "takes files and directories", "file-for-dir": lambda w: [w.f, "-o", w.txt],
                         "existing-output": DIR_OUT, "unwritable-output": lambda w: [w.f, "-o", w.locked / "q"],
                         **NO_CONFIG},
    "oiflow fit": {"missing": lambda w: [w.missing, "-m", MODEL], "dir-for-file": lambda w: [w.d, "-m", MODEL],
                   "file-for-dir": lambda w: [w.f, "-m", MODEL, "-o", w.txt],
                   "existing-output": lambda w: [w.f, "-m", MODEL, "--json-out", w.existing],
                   "unwritable-output": lambda w: [w.f, "-m", MODEL, "--json-out", w.locked / "fit.json"],
                   **configs("model", lambda w, c: [w.f, "-m", c])},
    "oiflow companion": {"missing": lambda w: [w.missing], "dir-for-file": lambda w: [w.d],
                         "file-for-dir": lambda w: [w.f, "-o", w.txt],
                         "existing-output": lambda w: [w.f, "--json-out", w.existing],
                         "unwritable-output": lambda w: [w.f, "-o", w.locked / "cs"], **NO_CONFIG},
    "oiflow image": {"missing": lambda w: [w.missing, "-o", w.out("i.fits")],
                     "dir-for-file": lambda w: [w.f, "-o", w.d],
                     "file-for-dir": "no directory argument",
                     "existing-output": lambda w: [w.f, "-o", w.existing],
                     "unwritable-output": lambda w: [w.f, "-o", w.locked / "i.fits"],
                     **configs("image", lambda w, c: [w.f, "-o", w.out("i.fits"), "--config", c])},
    "oiflow reduce": {"missing": lambda w: [w.missing, "-o", w.out()],
                      "dir-for-file": lambda w: [RAW, "-o", w.out(), "--config", w.d],
                      "file-for-dir": lambda w: [w.txt, "-o", w.out()], "existing-output": DIR_OUT,
                      "unwritable-output": lambda w: [RAW, "-o", w.locked / "L1"],
                      **configs("run", lambda w, c: [RAW, "-o", w.out(), "--config", c])},
    "oiflow calibrate": {"missing": lambda w: [w.missing, "-o", w.out()],
                         "dir-for-file": lambda w: [w.f, "-o", w.out(), "--diameters", w.d],
                         "file-for-dir": lambda w: [w.f, "-o", w.txt], "existing-output": DIR_OUT,
                         "unwritable-output": lambda w: [w.f, "-o", w.locked / "L2"],
                         **configs("run", lambda w, c: [w.f, "-o", w.out(), "--config", c])},
    "oiflow simulate night": {"missing": lambda w: [w.missing, "-o", w.out()],
                              "dir-for-file": lambda w: [w.d, "-o", w.out()],
                              "file-for-dir": lambda w: [w.night, "-o", w.txt],
                              "existing-output": lambda w: [w.night, "-o", w.out(), "--catalogue", w.existing],
                              "unwritable-output": lambda w: [w.night, "-o", w.locked / "night"],
                              **configs("night", lambda w, c: [c, "-o", w.out()])},
    "oiflow products": {"missing": lambda w: ["--root", w.missing],
                        "dir-for-file": "--root is a directory (the catalogue is found in it)",
                        "file-for-dir": lambda w: ["--root", w.txt],
                        "existing-output": lambda w: ["--root", w.d, "--json-out", w.existing],
                        "unwritable-output": lambda w: ["--root", w.d, "--json-out", w.locked / "p.json"],
                        **NO_CONFIG},
    "oiflow run": {"missing": lambda w: [w.missing], "dir-for-file": lambda w: [w.d],
                   "file-for-dir": lambda w: [w.config("run", "good"), "-o", w.txt], "existing-output": DIR_OUT,
                   "unwritable-output": lambda w: [w.config("run", "good"), "-o", w.locked / "products"],
                   **configs("run", lambda w, c: [c])},
    "oiflow reprocess": {"missing": lambda w: [w.missing], "dir-for-file": lambda w: [w.d, "--config", w.d],
                         "file-for-dir": lambda w: [w.txt], "existing-output": DIR_OUT,
                         "unwritable-output": lambda w: [w.d, "-o", w.locked / "products"],
                         **configs("run", lambda w, c: [w.d, "--config", c])},
    "oiflow serve": {"missing": lambda w: [w.missing, "--check"], "dir-for-file": lambda w: [w.d, "--check"],
                     "file-for-dir": "no directory argument", "existing-output": "no output",
                     "unwritable-output": "no output",
                     **configs("deployments", lambda w, c: [c, "--check"])},
    "oiflow deploy": {"missing": lambda w: [w.missing, "--work-pool", "p"],
                      "dir-for-file": lambda w: [w.d, "--work-pool", "p"],
                      "file-for-dir": "no directory argument", "existing-output": "no output",
                      "unwritable-output": "no output",
                      **configs("deployments", lambda w, c: [c, "--work-pool", "p"])},
    "oiflow submit": na("takes a deployment name, no path"),
    "oiflow server start": na("takes no path"),
}

CASES = [(cmd, kind) for cmd in TABLE for kind in KINDS if callable(TABLE[cmd][kind])]


def test_every_command_has_a_row():
    assert set(TABLE) == set(IDS)
    for cmd, row in TABLE.items():
        assert set(row) == set(KINDS), cmd
    assert len(CASES) >= 90


def _named(w: World, kind: str, args: list) -> Path:
    """The path the line must name."""
    if kind in ("bad-yaml", "unknown-key", "wrong-type"):
        return next(a for a in args if str(a).endswith(f"-{kind}.yaml"))
    return {"missing": w.missing, "dir-for-file": w.d, "file-for-dir": w.txt, "existing-output": w.existing,
            "unwritable-output": w.locked}[kind]


@pytest.mark.parametrize("cmd, kind", CASES, ids=[f"{c[7:]}:{k}" for c, k in CASES])
def test_a_mistake_is_one_line_and_exit_2_before_any_work(world, capsys, cmd, kind):
    args = [*cmd.split()[1:], *(str(a) for a in TABLE[cmd][kind](world))]
    before = world.existing.read_text()
    prefect_before = "prefect" in sys.modules
    t0 = time.perf_counter()
    rc = main(args)
    elapsed = time.perf_counter() - t0
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert "Traceback" not in err + out
    assert rc == 2, (args, err)
    assert len(lines) == 1, lines
    assert str(_named(world, kind, args)) in lines[0] and SAYS[kind] in lines[0], lines[0]
    if kind == "unknown-key":
        assert "did you mean" in lines[0], lines[0]
    if kind == "wrong-type":
        assert any(key in lines[0] for key in ("n_workers", "maxiter", "diameter", "cron", "seed")), lines[0]
    assert elapsed < 3.0, f"{elapsed:.1f} s: the mistake was found after some work"
    assert prefect_before or "prefect" not in sys.modules  # found before Prefect is imported
    assert world.existing.read_text() == before  # nothing overwritten
    assert not any(world.locked.iterdir())


def test_debug_shows_the_traceback(world, capsys):
    assert main(["--debug", "plot", str(world.missing), "-o", str(world.out())]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.strip().splitlines()[-1].endswith(
        f"{world.missing}: no such file")


def _program(args, cwd) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "oiflow.cli", *map(str, args)], capture_output=True, text=True,
                       timeout=120, cwd=cwd)
    return p.returncode, p.stderr, time.perf_counter() - t0


def test_an_unwritable_product_root_is_refused_before_prefect_starts(world):
    """The issue: a 25-line traceback after 15 s of Prefect start-up; now one line, start-up included."""
    code, err, wall = _program(["run", str(REPO / "configs/demo.yaml"), "--out", world.locked / "products"], REPO)
    assert code == 2 and err.strip() == (f"error: --out {world.locked / 'products'}: cannot write in {world.locked} "
                                         "(read-only, immutable or permission denied)")
    assert wall < 3.0, wall


def test_image_into_an_existing_directory_is_refused_before_reconstructing(world):
    """The issue: `oiflow image f --out <existing dir>` failed only after reconstructing."""
    code, err, wall = _program(["image", world.f, "--out", world.d], world.tmp)
    assert code == 2 and err.strip() == f"error: --out {world.d}: is a directory, a file is expected"
    assert wall < 3.0, wall


def test_an_input_is_never_an_output(world, tmp_path):
    src = tmp_path / "in.fits"
    src.write_bytes(world.f.read_bytes())
    code, err, _ = _program(["select", src, "-o", src, "--force"], tmp_path)
    assert code == 2 and "is also an input (inputs are never modified)" in err
    assert src.read_bytes() == world.f.read_bytes()


def test_force_replaces_an_existing_output(world, tmp_path, capsys):
    out = tmp_path / "sub.fits"
    out.write_text("old")
    assert main(["select", str(world.f), "-o", str(out), "--force"]) == 0
    assert out.read_bytes()[:6] == b"SIMPLE"
