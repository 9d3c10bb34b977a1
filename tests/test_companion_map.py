"""The companion search's χ² map has no unexplained blank cell: every node without a value is
drawn in a stated colour (not searched, fit left the annulus, fit failed) and the legend says
which and how many (oiflow.fit.products.node_status / companion_figure)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from matplotlib.colors import to_rgba

from oiflow.fit import companion_search, load_data
from oiflow.fit.analytic import binary
from oiflow.fit.products import NODE_COLOURS, companion_figure, node_status
from oiflow.oifits import read_oifits
from oiflow.simulate.synthetic import from_template
from oiflow.units import MAS


def _result(solutions, chi2r, xs=(-4.0, -2.0, 0.0, 2.0, 4.0), rmin=1.5, rmax=4.2):
    """A hand-made search result on a 5 × 5 grid (step 2 mas): the nodes between rmin and rmax
    in row order, their end points and χ²_r."""
    xs = np.asarray(xs)
    X, Y = np.meshgrid(xs, xs)
    inside = (np.hypot(X, Y) >= rmin) & (np.hypot(X, Y) <= rmax)
    n = int(inside.sum())
    sol = np.zeros((n, 4))
    sol[:, 0], sol[:, 1] = X[inside], Y[inside]
    for k, (x, y) in solutions.items():
        sol[k, :2] = x, y
    c = np.ones(n)
    for k, v in chi2r.items():
        c[k] = v
    chi2_map = np.full(X.shape, np.nan)
    end = np.hypot(sol[:, 0], sol[:, 1])
    chi2_map[inside] = np.where((end >= rmin) & (end <= rmax) & np.isfinite(c), c, np.nan)
    return SimpleNamespace(x_axis=xs, y_axis=xs, rmin_mas=rmin, rmax_mas=rmax, solutions=sol, solution_chi2r=c,
                           chi2_map=chi2_map, nsigma_map=chi2_map.copy(), chi2r_single=1.2, nsigma=5.0,
                           best={"x_mas": 2.0, "y_mas": 2.0, "flux_ratio": 0.1}), inside


def test_each_blank_node_has_a_reason():
    res, inside = _result({0: (9.0, 0.0), 3: (0.2, 0.1)}, {5: np.nan})
    status = node_status(res)
    ys, xs = np.nonzero(inside)
    assert status["outside"].tolist() == (~inside).tolist()
    assert sorted(zip(*np.nonzero(status["left"]))) == sorted([(ys[0], xs[0]), (ys[3], xs[3])])  # beyond rmax, within rmin
    assert list(zip(*np.nonzero(status["failed"]))) == [(ys[5], xs[5])]
    blank = np.isnan(res.chi2_map)
    assert (blank == (status["outside"] | status["left"] | status["failed"])).all()


def test_the_figure_colours_and_names_them():
    res, inside = _result({0: (9.0, 0.0), 3: (0.2, 0.1)}, {5: np.nan})
    fig = companion_figure(res)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    n = int(inside.sum())
    assert legend == [f"fit left 1.5–4.2 mas (2 of {n} nodes)", f"fit failed: χ² not finite (1 of {n} nodes)",
                      "not searched (r < 1.5 or > 4.2 mas)"]
    status = node_status(res)
    for ax in fig.axes[:2]:  # the two maps (their colour bars come after)
        overlay = ax.get_images()[1]  # the status layer drawn over the map
        rgba = overlay.to_rgba(overlay.get_array())
        for name, colour in NODE_COLOURS.items():
            cells = rgba[status[name]]
            assert cells.size and np.allclose(cells, to_rgba(colour)), name
        assert overlay.get_array().mask[~(status["outside"] | status["left"] | status["failed"])].all()


def test_a_real_search_leaves_no_blank_cell_unexplained(shared_data):
    """AX Cir's coverage with a 2 % companion at (−8, 11) mas: the map's blank cells are exactly
    the nodes outside the annulus, those whose fit left it and those that failed."""
    tpl = read_oifits(shared_data / "oifits" / "real" / "pionier" / "AXCir.oifits", warn=False)
    oi = from_template(tpl, lambda u, v, w: binary(u, v, 0.02, -8 * MAS, 11 * MAS, 0.9 * MAS), seed=7)
    res = companion_search(load_data([oi], ["v2", "t3phi"]), 3.0, 20.0, 3.0, detection_limit=False, smearing=True)
    status = node_status(res)
    blank = np.isnan(res.chi2_map)
    assert (blank == (status["outside"] | status["left"] | status["failed"])).all()
    assert not (status["left"] & status["failed"]).any()
    assert status["outside"].any() and (~blank).sum() > 50
    legend = [t.get_text() for t in companion_figure(res).legends[0].get_texts()]
    assert legend[-1] == "not searched (r < 3 or > 20 mas)"
    if status["left"].any():
        assert legend[0].startswith(f"fit left 3–20 mas ({int(status['left'].sum())} of ")
