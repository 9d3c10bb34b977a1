"""The image quicklook's residuals figure follows the plot rules of oiflow.plot_axes: a V² axis
over decades is logarithmic with several labelled ticks (it had one: "10⁰"), closure phases
near ±180° are drawn beside their data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import j1

from oiflow.image import plots


def _payload():
    f = np.linspace(4e6, 30e6, 300)
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


@pytest.fixture
def drawn(monkeypatch, tmp_path):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path, dpi: (figures.append(fig), fig.savefig(path, dpi=dpi)))
    payload = _payload()
    plots.plot_residuals(payload, tmp_path / "x.residuals.png")
    (fig,) = figures
    fig.canvas.draw()
    return payload, fig


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
