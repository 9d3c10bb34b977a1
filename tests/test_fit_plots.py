"""Fit plots explain themselves: the target and the fitted values (errors, units, χ²_red, the
verdict) in the title; closure phases near ±180° drawn on the data's branch; a V² axis that
spans decades is logarithmic with several labelled ticks (oiflow.plot_axes)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fit_cases import arcturus_like
from oiflow.fit import fit_files
from oiflow.fit.headline import fit_headline, value_error
from oiflow.fit.products import fit_figures, write_fit_products
from oiflow.plot_axes import on_data_branch, wrap_angle


@pytest.fixture(scope="module")
def arcturus_fit():
    """The 20.33 mas disk resolved past its first null (V² from ~0.9 down to < 0.02, closure
    phases 0 and 180°), fitted from 20 mas."""
    return fit_files(arcturus_like(seed=0), {"name": "ud", "star": {"type": "ud", "diameter": 20.0}},
                     observables=("v2", "t3phi"))


def test_wrap_angle_keeps_the_half_open_interval():
    assert wrap_angle(np.array([180.0, -180.0, 181.0, -181.0, 540.0]), 360).tolist() == [180.0, 180.0, -179.0, 179.0,
                                                                                          180.0]
    # a model at +179° beside data at −179°: drawn at −181°, 2° from its data
    assert on_data_branch(np.deg2rad([179.0]), np.deg2rad([-179.0]))[0] == pytest.approx(np.deg2rad(-181.0))


def test_value_error_rounds_the_value_to_the_error():
    assert value_error(8.25815, 0.0150, "mas") == "8.258 ± 0.015 mas"
    assert value_error(167.6758, 0.1212, "deg") == "167.68 ± 0.12°"
    assert value_error(0.0087328, 0.000398) == "0.0087 ± 0.0004"
    assert value_error(2.0, math.inf, "mas") == "2 ± ∞ mas"


def test_the_title_names_the_target_the_values_and_the_verdict(arcturus_fit):
    res = arcturus_fit
    assert res.verdict.status == "ok"
    d, e = res.values["star.diameter"], res.errors["star.diameter"]
    assert abs(d - 20.33) < 5 * e
    figures = dict(fit_figures(res))
    assert sorted(figures) == ["t3phi", "v2"]
    title = figures["v2"].axes[0].get_title()
    lines = title.split("\n")
    assert lines[0] == "alf_Boo — model ud: V²"
    assert lines[1] == "star.diameter = " + value_error(d, e, "mas")
    assert lines[-1] == f"χ²_red = {res.chi2_red:.3g} (all data), verdict ok"
    assert fit_headline(res) == f"UD {value_error(d, e, 'mas')}"
    assert figures["t3phi"].axes[0].get_title().startswith("alf_Boo — model ud: closure phase\n")


def test_closure_phases_near_180_are_drawn_beside_their_data(arcturus_fit):
    res = arcturus_fit
    fig = dict(fit_figures(res))["t3phi"]
    ax = fig.axes[0]
    model_line = next(ln for ln in ax.get_lines() if str(ln.get_label()).startswith("model"))
    drawn = np.asarray(model_line.get_ydata(), float)
    block = res.evaluator.data.block("t3phi")
    data = np.degrees(block.value)
    raw = np.degrees(np.asarray(res.evaluator.observables(res.values)[res.observables.index("t3phi")], float))
    # every model point within 180° of its data point, and equal to the model modulo 360°
    assert np.all(np.abs(drawn - data) <= 180.0 + 1e-9)
    assert np.allclose(np.mod(drawn - raw + 180.0, 360.0), 180.0, atol=1e-6)
    # the data straddle ±180°: points on both sides, each with its model on its own side
    high, low = data > 150, data < -150
    assert high.sum() >= 5 and low.sum() >= 5
    assert np.all(drawn[high] > 150) and np.all(drawn[low] < -150)
    # without the rule, the model at ±180° would sit on the other side for some of them
    assert np.sum(np.abs(raw - data) > 180.0) >= 1


def test_a_v2_axis_over_decades_is_logarithmic_with_labelled_ticks(arcturus_fit):
    fig = dict(fit_figures(arcturus_fit))["v2"]
    ax = fig.axes[0]
    fig.canvas.draw()
    assert ax.get_yscale() == "log"
    lo, hi = ax.get_ylim()
    assert hi / lo > 10
    labelled = [(t.get_loc(), t.label1.get_text()) for t in ax.yaxis.get_major_ticks()
                if lo <= t.get_loc() <= hi and t.label1.get_text()]
    assert len(labelled) >= 3, labelled
    for loc, text in labelled:  # plain numbers, e.g. "0.02"
        assert float(text) == pytest.approx(loc)
    assert ax.get_ylabel().startswith("V² (log")


def test_a_v2_axis_within_a_decade_stays_linear(tmp_path, shared_data):
    res = fit_files(shared_data / "oifits/real/pionier/alfCenA_20160523_1.fits",
                    {"name": "ud", "star": {"type": "ud", "diameter": 8.0}}, observables=("v2",))
    ax = dict(fit_figures(res))["v2"].axes[0]
    assert ax.get_yscale() == "linear" and ax.get_ylabel() == "V²"
    assert ax.get_title().startswith("Alpha_Cen_A — model ud: V²\nstar.diameter = 8.2")
    paths = write_fit_products(res, tmp_path)
    assert sorted(p.name for p in paths) == ["fit_ud.json", "fit_ud_v2.png"]
