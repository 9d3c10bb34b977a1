"""Speed of the fitter and the companion search, each against a baseline measured in the same
process (and PMOIRED's own fits when it is installed — optional, not a dependency).

    PYTHONPATH=$PWD python -m pytest -m benchmark tests/benchmarks/bench_fit.py -s

Reference anchors from the issue (this 2-core machine, loaded): PMOIRED UD fit 0.05 s; CANDID
companion search on AX Cir 38.8 s (PMOIRED gridFit 574 s); CANDID detection-limit map 119 s.
Goals: UD fit ≤ 0.05 s, binary fit ≤ 0.5 s, companion search ≤ 2 s, detection map ≤ 10 s.
The baselines are straightforward loops (one scipy fit per grid node; per position a bisection
on the flux ratio with a scipy UD refit) timed on a random subset of nodes and scaled to the grid.
The fits are timed as they run by default (start values searched, minimum certified, smearing
decided) and, in the same run, as before the search ("trusted start": ``search=False``, smearing
off): the cost of the search and the checks.
"""

from __future__ import annotations

import contextlib
import io
import math
import time

import numpy as np
import pytest
from scipy.optimize import brentq, least_squares

from oiflow.fit import companion_search, fit_model, load_data
from oiflow.fit.evaluate import ModelEvaluator
from oiflow.fit.model import parse_model

pytestmark = pytest.mark.benchmark

PIONIER = ("oifits", "real", "pionier")


def best_of(fn, repeat=5):
    times = []
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def pmoired_fit(path, params, dnf=()):
    """Time PMOIRED's doFit (best of 3) when pmoired is installed; None otherwise."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import pmoired
    except Exception:  # noqa: BLE001 - optional reference
        return None
    with contextlib.redirect_stdout(io.StringIO()):
        oi = pmoired.OI(str(path))
        oi.setupFit({"obs": ["V2", "T3PHI"]})
        t, _ = best_of(lambda: oi.doFit(dict(params), doNotFit=list(dnf)), 3)
    return t


def report(name, ours, baseline, goal, extra=""):
    print(f"\n[bench] {name}: oiflow {ours:.3f} s | baseline {baseline:.3f} s | ratio ×{baseline / ours:.1f} "
          f"| goal ≤ {goal} s {'MET' if ours <= goal else 'NOT MET'} {extra}")


def test_bench_ud_fit(shared_data):
    f = shared_data.joinpath(*PIONIER, "alfCenA_PIONI.2016-05-31T00_55_19.fits")
    data = load_data([f], ["v2", "t3phi"])
    t_ours, res = best_of(lambda: fit_model({"star": {"type": "ud", "diameter": 8.0}}, data))
    t_trusted, _ = best_of(lambda: fit_model({"star": {"type": "ud", "diameter": 8.0}}, data, search=False,
                                             smearing=False))

    # baseline: scipy least_squares on a hand-written UD V² + closure-phase residual
    from scipy.special import j1

    v2b, cpb = data.block("v2"), data.block("t3phi")
    rho = np.hypot(data.freq_u, data.freq_v)

    def resid(p):
        x = np.pi * p[0] * 4.84813681109536e-9 * rho
        v = 2 * j1(x) / x
        r1 = (v2b.value - v[v2b.freq[:, 0]] ** 2) / v2b.error
        b = v[cpb.freq[:, 0]] * v[cpb.freq[:, 1]] * v[cpb.freq[:, 2]]
        r2 = np.angle(np.exp(1j * (cpb.value - np.angle(b)))) / cpb.error
        return np.concatenate([r1, r2])

    t_base, sol = best_of(lambda: least_squares(resid, [8.0]))
    assert sol.x[0] == pytest.approx(res.values["star.diameter"], abs=1e-4)
    t_pm = pmoired_fit(f, {"ud": 8.0})
    report("UD fit (alpha Cen A, 59 points; searched, certified)", t_ours, t_base, 0.05,
           f"| trusted start (search off, checks on) {t_trusted:.3f} s"
           + ("" if t_pm is None else f" | PMOIRED same run {t_pm:.3f} s"))


def test_bench_binary_fit(shared_data):
    f = shared_data.joinpath(*PIONIER, "AXCir.oifits")
    data = load_data([f], ["v2", "t3phi"])
    spec = {"star": {"type": "ud", "diameter": 0.8}, "c": {"type": "point", "flux": 0.01, "x": 6.2, "y": -28.5}}
    t_ours, res = best_of(lambda: fit_model(spec, data), 3)
    spec_s = {**spec, "options": {"bandwidth_smearing": True, "search": False}}
    t_smear, _ = best_of(lambda: fit_model(spec_s, data), 3)
    t_trusted, trusted = best_of(lambda: fit_model(spec, data, search=False, smearing=False), 3)
    # baseline: the same residuals, scipy least_squares on a per-point loop-free model without the
    # deduplicated frequency table (the evaluator on V² and the three triangle baselines separately)
    ev = ModelEvaluator(parse_model(spec), data)
    m = parse_model(spec)
    t_base, sol = best_of(lambda: least_squares(lambda p: ev.residuals(m.values(p)), [p.value for p in m.free]), 3)
    assert sol.x[2] == pytest.approx(trusted.values["c.x"], abs=1e-3)  # the same model: no smearing
    assert res.values["c.x"] == pytest.approx(6.233, abs=res.errors["c.x"]) and res.verdict.ok
    t_pm = pmoired_fit(f, {"*,ud": 0.8, "*,f": 1, "c,f": 0.01, "c,x": 6.2, "c,y": -28.5, "c,ud": 0.0},
                       dnf=("*,f", "c,ud"))
    report("binary fit (AX Cir, 1500 points; searched, certified, smearing auto → on)", t_ours, t_base, 0.5,
           f"| trusted start, no smearing {t_trusted:.3f} s | trusted start, smearing {t_smear:.3f} s"
           + ("" if t_pm is None else f" | PMOIRED same run {t_pm:.3f} s"))


def _baseline_node_fit(data, x, y, d0):
    spec = {"star": {"type": "ud", "diameter": d0}, "c": {"type": "point", "flux": 0.02, "x": x, "y": y},
            "options": {"bandwidth_smearing": True}}
    m = parse_model(spec)
    ev = ModelEvaluator(m, data)
    sol = least_squares(lambda p: ev.residuals(m.values(p)), [p.value for p in m.free],
                        bounds=([0, 0, -np.inf, -np.inf], [np.inf, np.inf, np.inf, np.inf]))
    return sol.x, float(sol.fun @ sol.fun)


def test_bench_companion_search(shared_data):
    f = shared_data.joinpath(*PIONIER, "AXCir.oifits")
    data = load_data([f], ["v2", "t3phi"])
    companion_search(data, 2.0, 35.0, 3.78, detection_limit=False)  # warm-up (imports, caches)
    # best of 3: the machine is shared, the minimum is the least disturbed run
    t_ours, res = best_of(lambda: companion_search(data, 2.0, 35.0, 3.78, detection_limit=False), 3)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(res.nodes), size=24, replace=False)
    t = time.perf_counter()
    base = [_baseline_node_fit(data, *res.nodes[i], res.diameter_single_mas) for i in pick]
    t_base = (time.perf_counter() - t) / len(pick) * len(res.nodes)
    # same detection: the best node fit of the baseline subset can only be worse or equal
    best_base = min(c for _, c in base) / data.n_data
    assert best_base >= res.chi2r_binary - 1e-6
    assert abs(res.best["x_mas"] - 6.233) < res.best["x_mas_error"]
    assert abs(res.best["y_mas"] + 28.511) < res.best["y_mas_error"]
    report(f"companion search (AX Cir, {len(res.nodes)} nodes, 2–35 mas, step 3.78, smearing; best of 3)", t_ours,
           t_base, 2.0,
           f"| {res.nsigma:.1f}σ at ({res.best['x_mas']:.3f}, {res.best['y_mas']:.3f}) | baseline scaled from "
           f"{len(pick)} nodes | CANDID 38.8 s, PMOIRED gridFit 574 s (issue)")
    assert t_base / t_ours > 5


def test_bench_detection_limit(shared_data):
    f = shared_data.joinpath(*PIONIER, "AXCir.oifits")
    data = load_data([f], ["v2", "t3phi"])
    from oiflow.fit.companion import BinaryContext, detection_limit_map

    ctx = BinaryContext.from_data(data, True)
    comp = (6.23, -28.52, 0.0087, 0.825)
    detection_limit_map(data, ctx, 2.0, 6.0, 2.0, companion=comp)  # warm-up
    # CANDID demo: step 1.5 mas; best of 3 (shared machine)
    t_ours, det = best_of(lambda: detection_limit_map(data, ctx, 2.0, 35.0, 1.5, companion=comp), 3)
    n_pos = int(np.isfinite(det["flux_ratio"]).sum())

    # baseline: per position, bisection on f; at each f inject the companion into the (cleaned)
    # data, refit the UD diameter with scipy, compare with the binary χ² (CANDID's algorithm)
    from oiflow.fit.companion import _Device, _data_models, _kinds, ratio_at_nsigma
    from oiflow.backend import get_xp

    xp = get_xp("numpy")
    dev = _Device(ctx, xp)
    val, err, is_phase = _kinds(ctx)
    wrap = lambda a: np.where(is_phase, (a + np.pi) % (2 * np.pi) - np.pi, a)  # noqa: E731
    base = wrap(val - wrap(_data_models(np.array([comp]), dev)[0] - _data_models(np.array([[0, 0, 0, comp[3]]]), dev)[0]))
    d0 = det["diameter_mas"]
    r3 = ratio_at_nsigma(3.0, data.n_data - 1)

    def limit_at(x, y):
        def excess(logf):
            f3 = math.exp(logf)
            inj = wrap(base + _data_models(np.array([[x, y, f3, d0]]), dev)[0] - _data_models(np.array([[0, 0, 0, d0]]), dev)[0])
            ud = least_squares(lambda p: wrap(inj - _data_models(np.array([[0, 0, 0, abs(p[0])]]), dev)[0]) / err, [d0])
            chi2_bin = float(np.sum((wrap(inj - _data_models(np.array([[x, y, f3, d0]]), dev)[0]) / err) ** 2))
            return float(ud.fun @ ud.fun) / chi2_bin - r3
        return math.exp(brentq(excess, math.log(1e-5), 0.0, xtol=1e-3))

    xs, ys = det["x_axis"], det["y_axis"]
    finite = np.argwhere(np.isfinite(det["flux_ratio"]))
    pick = finite[np.random.default_rng(1).choice(len(finite), size=8, replace=False)]
    t = time.perf_counter()
    vals = [limit_at(xs[ix], ys[iy]) for iy, ix in pick]
    t_base = (time.perf_counter() - t) / len(pick) * n_pos
    ours = np.array([det["flux_ratio"][iy, ix] for iy, ix in pick])
    np.testing.assert_allclose(ours, vals, rtol=0.05)  # the linearised refit agrees with the full one
    report(f"detection-limit map (AX Cir, {n_pos} positions, step 1.5 mas; best of 3)", t_ours, t_base, 10.0,
           f"| baseline scaled from {len(pick)} positions | CANDID 119 s (issue)")
    assert t_base / t_ours > 5
