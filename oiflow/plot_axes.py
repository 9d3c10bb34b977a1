"""Rules the plots of data against a model share (fit plots, image quicklooks).

* **Phases** (closure and differential phases) are drawn on the data's branch: the model at
  ``data + wrap(model − data)``, the difference wrapped into (−180°, 180°] — a model at +179°
  beside data at −179° is drawn at −181°, next to its data, not across the plot.
* **V²** is drawn on a logarithmic axis when its positive values span more than
  :data:`LOG_SPAN` (a resolved star's lobes), else on a linear one; the log axis is labelled at
  1, 2 and 5 × 10ⁿ up to :data:`DENSE_DECADES` decades, at 10ⁿ beyond (at least three
  labelled ticks either way), with plain numbers ("0.02", not "2×10⁻²"). Points ≤ 0 cannot be
  drawn on it: the axis label says how many.
"""

from __future__ import annotations

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


def v2_axis(ax, values, top=None, label: str = "V²") -> bool:
    """Set ``ax``'s y axis for the V² ``values`` (module rule): logarithmic with ticks at
    1, 2, 5 × 10ⁿ (10ⁿ beyond :data:`DENSE_DECADES`) when the positive values span more than
    :data:`LOG_SPAN`, else left linear.
    ``top``: the highest value drawn (data + error, model). Returns whether it is logarithmic."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

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
    ax.yaxis.set_major_locator(LogLocator(base=10.0, subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_locator(LogLocator(base=10.0, subs=np.arange(1, 10) * 1.0))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel(f"{label} (log)" + (f"; {hidden} point(s) ≤ 0 not drawn" if hidden else ""))
    return True
