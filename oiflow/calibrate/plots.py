"""Transfer-function diagnostics: TF² and instrumental closure phase against time, per
baseline / triangle (channel-averaged), with the interpolated curve and the science times."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..provenance import save_figure_atomic
from .transfer_function import interpolate


def plot_transfer_function(tf_v2, tf_t3, science, config, path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    sci_t = np.array(sorted({float(o.mjd) for o in science}))
    all_t = np.concatenate([tf_v2.mjd, sci_t]) if sci_t.size else tf_v2.mjd
    t0 = np.floor(np.min(all_t))
    grid = np.linspace(np.min(all_t) - 0.01, np.max(all_t) + 0.01, 200)
    for ax, pts, phase, label in ((axes[0], tf_v2, False, "TF² (V²raw / V²UD)"),
                                  (axes[1], tf_t3, True, "instrumental closure phase (deg)")):
        if pts.value.size == 0:
            ax.text(0.5, 0.5, "no calibrator points", transform=ax.transAxes, ha="center")
            continue
        bases = sorted({k.split("|")[0] for k in pts.key})
        colors = plt.cm.tab10(np.linspace(0, 1, max(len(bases), 1)))
        for col, base in zip(colors, bases):
            sel = np.array([k.split("|")[0] == base for k in pts.key])
            # channel average per calibrator observation
            times = np.unique(pts.mjd[sel])
            if phase:
                y = np.array([np.angle(np.mean(np.exp(1j * pts.value[sel][pts.mjd[sel] == t]))) for t in times])
            else:
                y = np.array([np.mean(pts.value[sel][pts.mjd[sel] == t]) for t in times])
            e = np.array([np.sqrt(np.mean(pts.error[sel][pts.mjd[sel] == t] ** 2)) for t in times])
            scale = np.degrees(1.0) if phase else 1.0
            ax.errorbar((times - t0) * 24, y * scale, yerr=e * scale, fmt="o", color=col, label=base, ms=4)
            curve, cerr = interpolate(times, y, e, grid, config.interpolation, config.window_h, phase)
            ax.plot((grid - t0) * 24, curve * scale, "-", color=col, lw=1)
            ax.fill_between((grid - t0) * 24, (curve - cerr) * scale, (curve + cerr) * scale, color=col, alpha=0.15)
        for t in sci_t:
            ax.axvline((t - t0) * 24, color="0.6", lw=0.8, ls=":")
        ax.set_ylabel(label)
        ax.legend(fontsize=7, ncol=3)
    axes[1].set_xlabel(f"UT hours from MJD {t0:.0f}  (dotted: science observations)")
    axes[0].set_title(f"Transfer function {title} — mode {config.interpolation}"
                      + (f", L = {config.window_h} h" if config.interpolation == "smooth" else ""))
    fig.tight_layout()
    out = save_figure_atomic(fig, path, dpi=90)
    plt.close(fig)
    return out
