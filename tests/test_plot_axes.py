"""The image quicklook's residuals figure follows the plot rules of oiflow.plot_axes: a V² axis
over decades is logarithmic with several labelled ticks (it had one: "10⁰"), closure phases
near ±180° are drawn beside their data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import j1

from oiflow.image import plots


def _payload(f_max=30e6):
    f = np.linspace(4e6, f_max, 300)
    x = np.pi * (20.0 * 4.8481368e-9) * f  # a 20 mas disk
    v2 = (2 * j1(x) / x) ** 2
    rng = np.random.default_rng(0)
    err = 0.02 * v2 + 1e-4
    t3_model = np.where(np.arange(60) % 2, np.pi, 0.0)  # 0 or +180°
    t3_data = np.angle(np.exp(1j * (t3_model + rng.normal(0, np.deg2rad(2), 60))))  # ±180° both sides
    return {"image": np.ones((8, 8)), "truth": None, "pixel_size": 1e-9, "title": "t", "beam": None,
            "observables": [
                {"kind": "vis2", "chi2": 1.0, "total": f.size, "frequency": f, "data": v2 + rng.normal(0, err),
                 "error": err, "model": v2},
                {"kind": "t3phi", "chi2": 1.0, "total": 60, "frequency": np.linspace(1e7, 3e7, 60), "data": t3_data,
                 "error": np.full(60, np.deg2rad(2)), "model": t3_model}]}


def _drawn(payload, monkeypatch, tmp_path):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path, dpi: (figures.append(fig), fig.savefig(path, dpi=dpi)))
    plots.plot_residuals(payload, tmp_path / "x.residuals.png")
    (fig,) = figures
    fig.canvas.draw()
    return payload, fig


@pytest.fixture
def drawn(monkeypatch, tmp_path):
    return _drawn(_payload(), monkeypatch, tmp_path)


def test_the_v2_axis_has_labelled_ticks_over_its_decades(drawn):
    _, fig = drawn
    ax = fig.axes[0]  # V² data/model (its residuals axes follow)
    assert ax.get_yscale() == "log"
    lo, hi = ax.get_ylim()
    labelled = [t.label1.get_text() for t in ax.yaxis.get_major_ticks() if lo <= t.get_loc() <= hi and t.label1.get_text()]
    assert len(labelled) >= 4 and all(float(s) > 0 for s in labelled), labelled


def test_closure_phase_models_are_drawn_beside_their_data(drawn):
    payload, fig = drawn
    ax = fig.axes[2]  # closure-phase data/model
    model = next(ln for ln in ax.get_lines() if ln.get_label() == "model")
    data_deg = np.degrees(payload["observables"][1]["data"])
    drawn_deg = np.asarray(model.get_ydata(), float)
    assert np.all(np.abs(drawn_deg - data_deg) < 10)  # within 5σ of its data, on its side of ±180°
    assert (data_deg < -170).sum() >= 3 and np.all(drawn_deg[data_deg < -170] < -170)


def test_log_ticks_are_the_round_values_inside_the_range():
    from oiflow.plot_axes import log_ticks

    assert log_ticks(0.003, 0.6, (1.0, 2.0, 5.0)) == pytest.approx([0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5])
    assert log_ticks(2e-6, 1.3, (1.0,)) == pytest.approx([1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0])


@pytest.mark.parametrize("f_max, mantissas", [(11e6, {"1", "2", "5"}), (30e6, {"1"})])
def test_the_residuals_figure_keeps_its_labels_with_few_ticks(monkeypatch, tmp_path, f_max, mantissas):
    """What the figure shows (titles with χ²_red, axis labels, legends, the labelled ticks of the
    log V² axis: 1, 2, 5 × 10ⁿ within 3 decades, 10ⁿ beyond, closure phases every 90°) with few
    tick objects: every tick made is inside its axis and labelled where its axis is, no minor
    ticks (each tick is a millisecond of drawing)."""
    from oiflow.plot_axes import DENSE_DECADES, log_ticks

    _, fig = _drawn(_payload(f_max), monkeypatch, tmp_path)
    v2, v2r, t3, t3r = fig.axes
    assert [t.get_text() for t in fig.texts] == ["V²: χ²_red = 1.00", "closure phase: χ²_red = 1.00"]
    assert v2.get_ylabel().startswith("V² (log)") and t3.get_ylabel() == "closure phase (deg)"
    assert [a.get_xlabel() for a in (v2r, t3r)] == ["spatial frequency (Mλ)"] * 2
    assert [a.get_ylabel() for a in (v2r, t3r)] == ["residual / σ"] * 2
    for ax in (v2, t3):
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["data", "model"]
    lo, hi = v2.get_ylim()
    assert (math.log10(hi / lo) <= DENSE_DECADES) == (len(mantissas) == 3)
    labels = [t.label1.get_text() for t in v2.yaxis.get_major_ticks()]
    subs = tuple(float(m) for m in sorted(mantissas))
    assert [float(s) for s in labels] == pytest.approx(log_ticks(lo, hi, subs)) and len(labels) >= 4, labels
    assert {s.lstrip("0.")[0] for s in labels} == mantissas
    assert [float(t.label1.get_text().replace("−", "-")) for t in t3.yaxis.get_major_ticks()] == [-180, -90, 0, 90, 180]
    for ax in fig.axes:
        for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            locs = [t.get_loc() for t in axis.get_major_ticks()]
            assert 3 <= len(locs) <= 7 and all(min(lo, hi) <= x <= max(lo, hi) for x in locs), (ax, locs, lo, hi)
            assert axis.get_minorticklocs().size == 0
            if ax in (v2r, t3r) or axis is ax.yaxis:  # the upper panels' x labels are the lower ones'
                assert all(t.label1.get_text() and t.label1.get_fontsize() == 7 for t in axis.get_major_ticks())
