"""Start-up of ``oiflow image``: what is imported before the first iteration.

The time itself is measured by the panel benchmark (tests/benchmarks/bench_image.py, beside
same-run floors); here the imports that made it slow are kept out: astropy.units (built by
astropy.utils.data for two annotations, see oiflow/oifits/astropy_fits.py), astropy.time,
astropy.table, fitsio (the writers), matplotlib (the quicklook child imports it), scipy, rich,
numpy.ma (``np.median`` imports it: oiflow.image.data._median).
"""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "tests/data/imaging/contests_oifitsjl/contest-2008-binary.oifits"
HEAVY = ("astropy.units", "astropy.time", "astropy.table", "fitsio", "matplotlib", "scipy", "rich", "numpy.ma")
#: a test of a module name against HEAVY (the packages and their submodules), for the child's code
IS_HEAVY = f"(m in {HEAVY!r} or m.startswith({tuple(h + '.' for h in HEAVY)!r}))"


def _run(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode in (0, 1), out.stdout + out.stderr
    return out.stdout.strip().splitlines()


def test_reading_an_oifits_file_imports_no_units_and_units_work_afterwards():
    lines = _run(
        "import sys\nfrom oiflow.oifits import read_oifits\n"
        f"oi = read_oifits({str(SRC)!r})\n"
        f"print(sorted(m for m in sys.modules if {IS_HEAVY}))\n"
        "print(len(oi.vis2), sum(t.nrows for t in oi.vis2) > 0)\n"
        "import astropy.units as u, astropy.utils.data as d, astropy\n"
        "print((3 * u.m).to(u.cm), astropy.units is u, isinstance(u.Quantity(1.0, u.s), u.Quantity))\n"
        "print(type(d.get_free_space_in_dir('.', unit=u.byte)).__name__)\n"
        "from astropy.time import Time\nprint(Time(60000.0, format='mjd').isot)")
    assert lines[0] == "[]"
    assert lines[1].endswith("True")
    assert lines[2] == "300.0 cm True True"
    assert lines[3] == "Quantity"  # astropy.utils.data computes with the real units
    assert lines[4] == "2023-02-25T00:00:00.000"


def test_astropy_utils_data_uses_the_placeholder_names_in_annotations_only():
    """The premise of oiflow.oifits.astropy_fits, checked on the installed astropy: every use of
    the names it imports from astropy.units is inside an annotation (a newer astropy that uses
    them at run time fails here, not in a user's run)."""
    import importlib.util

    from oiflow.oifits.astropy_fits import _ANNOTATION_NAMES

    tree = ast.parse(Path(importlib.util.find_spec("astropy.utils.data").origin).read_text())
    in_annotations = set()
    for node in ast.walk(tree):
        annotations = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            annotations += [a.annotation for a in args.posonlyargs + args.args + args.kwonlyargs if a.annotation]
            annotations += [a.annotation for a in (args.vararg, args.kwarg) if a is not None and a.annotation]
            annotations += [node.returns] if node.returns else []
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        for ann in annotations:
            in_annotations |= {id(n) for n in ast.walk(ann) if isinstance(n, ast.Name)}
    uses = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in _ANNOTATION_NAMES]
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "astropy.units"
                for a in n.names]
    assert set(imported) <= set(_ANNOTATION_NAMES), imported
    assert all(id(n) in in_annotations for n in uses), [(n.id, n.lineno) for n in uses if id(n) not in in_annotations]


def test_a_placeholder_kept_elsewhere_falls_back_to_the_normal_import():
    """When another module would keep the placeholder, astropy is imported again without it."""
    lines = _run(
        "import sys, oiflow.oifits.astropy_fits as af\n"
        "for m in [m for m in sys.modules if m == 'astropy' or m.startswith('astropy.')]: del sys.modules[m]\n"
        "af._HOLDER = 'nothing'\n"  # no module may keep it: the attempt is not safe
        "fits = af.import_fits()\nimport astropy.utils.data as d, astropy.units as u\n"
        "print(d.Quantity is u.Quantity, fits.__name__)")
    assert lines[-1] == "True astropy.io.fits"


def test_with_other_threads_astropy_is_imported_as_usual():
    """Another thread could import astropy.units while the placeholder stands: no placeholder then."""
    lines = _run(
        "import sys, threading\nstop = threading.Event()\nthreading.Thread(target=stop.wait).start()\n"
        "from oiflow.oifits.astropy_fits import fits\nimport astropy.utils.data as d\n"
        "print('astropy.units' in sys.modules, type(d).__name__, d.Quantity.__module__)\nstop.set()")
    assert lines[-1] == "True module astropy.units.quantity"


def test_nothing_heavy_is_imported_before_the_first_iteration(tmp_path):
    code = ("import sys\nimport oiflow.cli.image_cmds as ic\nfirst = ic._first_iteration\n"
            "def probe(drawer):\n    cb = first(drawer)\n    seen = []\n"
            "    def wrapped(info):\n"
            "        if not seen:\n            seen.append(1)\n"
            f"            print('AT-FIRST', sorted(m for m in sys.modules if {IS_HEAVY}), flush=True)\n"
            "        cb(info)\n    return wrapped\n"
            "ic._first_iteration = probe\nfrom oiflow.cli import main\n"
            f"rc = main(['image', {str(SRC)!r}, '--out', {str(tmp_path / 'x.fits')!r}, '--npix', '32', '--pixel-size', "
            "'0.6', '--mu', '1e4', '--maxiter', '5'])\n"
            "print('rc', rc, sorted(m for m in sys.modules if m.startswith('astropy.table')))")
    lines = _run(code)
    at_first = [line for line in lines if line.startswith("AT-FIRST")]
    assert at_first == ["AT-FIRST []"], lines
    # verdict maxiter after 5 iterations; the product and its quicklooks are written, the product
    # without astropy.table (oiflow.image.imageoi._param_table; this OIFITS1 file has no DATE-OBS:
    # the writer derives it with astropy.time, which imports astropy.units)
    assert lines[-1] == "rc 1 []"
    assert (tmp_path / "x.fits").is_file() and (tmp_path / "x.png").is_file() and (tmp_path / "x.residuals.png").is_file()


def test_the_median_of_the_imaging_data_is_numpys():
    import numpy as np

    from oiflow.image.data import _median

    rng = np.random.default_rng(1)
    for n in [*range(1, 40), 101, 1000, 1001]:
        for _ in range(20):
            a = rng.standard_normal(n) * rng.uniform(0.1, 1e3)
            assert _median(a) == float(np.median(a))
    assert np.isnan(_median(np.array([1.0, np.nan, 2.0]))) and np.isnan(_median(np.array([])))
