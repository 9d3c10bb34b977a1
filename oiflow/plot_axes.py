"""Rules the plots of data against a model share (fit plots, image quicklooks).

* **Phases** (closure and differential phases) are drawn on the data's branch: the model at
  ``data + wrap(model − data)``, the difference wrapped into (−180°, 180°] — a model at +179°
  beside data at −179° is drawn at −181°, next to its data, not across the plot.
* **V²** is drawn on a logarithmic axis when its positive values span more than
  :data:`LOG_SPAN` (a resolved star's lobes), else on a linear one; the log axis is labelled at
  1, 2 and 5 × 10ⁿ up to :data:`DENSE_DECADES` decades, at 10ⁿ beyond (at least three
  labelled ticks either way), with plain numbers ("0.02", not "2×10⁻²"), and no unlabelled
  minor ticks (:func:`log_ticks`: only the ticks inside the axis are made — matplotlib builds
  an object per tick, most of a small figure's drawing time). Points ≤ 0 cannot be drawn on
  it: the axis label says how many.
* **Ticks**: few, and only inside the axis (:func:`few_ticks`): matplotlib makes an object per
  tick (about a millisecond each, labelled or not, seen or not), and its default locator puts
  7–11 on a 3-inch axis plus one beyond each end.
"""

from __future__ import annotations

import functools
import math

import numpy as np

#: ratio of the largest to the smallest positive V² beyond which the V² axis is logarithmic
LOG_SPAN = 10.0
#: up to this many decades the log V² axis is labelled at 1, 2, 5 × 10ⁿ; beyond, at 10ⁿ only
DENSE_DECADES = 3.0


def wrap_angle(a, period: float = 2 * math.pi):
    """``a`` wrapped into (−period/2, period/2]."""
    half = period / 2
    return half - np.mod(half - np.asarray(a, dtype=float), period)


def on_data_branch(model, data, period: float = 2 * math.pi):
    """The model phases drawn next to their data: ``data + wrap(model − data)`` (same unit as
    ``period``: 2π for radians, 360 for degrees)."""
    data = np.asarray(data, dtype=float)
    return data + wrap_angle(np.asarray(model, dtype=float) - data, period)


def few_ticks(axis, nbins: int, steps=(1, 2, 2.5, 5, 10)) -> None:
    """Tick ``axis`` (a matplotlib Axis) at round values, ``step × 10ⁿ`` apart (``step`` in
    ``steps``), at most ``nbins`` intervals across the view, none outside it."""
    axis.set_major_locator(_in_view_locator()(nbins=nbins, steps=list(steps)))


@functools.cache
def _in_view_locator():
    """matplotlib's MaxNLocator without the ticks it adds beyond the view (they are made, and
    cost, though never drawn). A class made on first use: matplotlib is imported only to draw."""
    from matplotlib.ticker import MaxNLocator

    class InViewLocator(MaxNLocator):
        def tick_values(self, vmin, vmax):
            locs = np.asarray(super().tick_values(vmin, vmax))
            lo, hi = min(vmin, vmax), max(vmin, vmax)
            tol = 1e-9 * (hi - lo)
            return locs[(locs >= lo - tol) & (locs <= hi + tol)]

    return InViewLocator


def log_ticks(lo: float, hi: float, subs: tuple[float, ...]) -> list[float]:
    """The values ``m × 10ⁿ`` (``m`` in ``subs``) within [``lo``, ``hi``] (``lo`` > 0), ascending."""
    n0, n1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    ticks = (m * 10.0**n for n in range(n0, n1 + 1) for m in subs)
    return [t for t in ticks if lo <= t <= hi]


def v2_axis(ax, values, top=None, label: str = "V²") -> bool:
    """Set ``ax``'s y axis for the V² ``values`` (module rule): logarithmic with ticks at
    1, 2, 5 × 10ⁿ (10ⁿ beyond :data:`DENSE_DECADES`) when the positive values span more than
    :data:`LOG_SPAN`, else left linear.
    ``top``: the highest value drawn (data + error, model). Returns whether it is logarithmic."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    v = np.asarray(values, dtype=float)
    pos = v[np.isfinite(v) & (v > 0)]
    if pos.size < 2 or pos.max() / pos.min() <= LOG_SPAN:
        ax.set_ylabel(label)
        return False
    hidden = int(np.sum(np.isfinite(v) & (v <= 0)))
    high = float(np.nanmax([pos.max()] + ([float(np.nanmax(top))] if top is not None and np.size(top) else [])))
    lo, hi = pos.min() / 1.5, min(high * 1.3, 2.0)
    ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    subs = (1.0, 2.0, 5.0) if math.log10(hi / lo) <= DENSE_DECADES else (1.0,)
    ax.yaxis.set_major_locator(FixedLocator(log_ticks(lo, hi, subs)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_ylabel(f"{label} (log)" + (f"; {hidden} point(s) ≤ 0 not drawn" if hidden else ""))
    return True
