"""Quicklook plots of an OIFITS file (matplotlib, Agg backend, PNG).

    from oiflow.oifits.plot import quicklook
    paths = quicklook(read_oifits("file.fits"), "plots/")   # {"uv": ".../file_uv.png", ...}

Each ``plot_*`` function returns a matplotlib Figure (or None when the file has no such data);
:func:`quicklook` saves them atomically. Only unflagged, finite points are drawn. Spatial
frequencies are in Mλ (10⁶ cycles per radian), phases in degrees, wavelengths in µm; the uv
plane is drawn as on the sky, East to the left.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..provenance import save_figure_atomic
from .model import OIFits

MEGA = 1e6


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _title(oi: OIFits, what: str) -> str:
    name = Path(oi.path).name if oi.path else "OIFITS"
    targets = sorted(set(oi.target_names().values()))
    tgt = ", ".join(targets[:3]) + (" …" if len(targets) > 3 else "")
    ins = sorted({t.insname for t in oi.data_tables})
    insl = ", ".join(ins[:2]) + (" …" if len(ins) > 2 else "")
    return f"{what} — {tgt}\n{name} [{insl}]"


def _wave_norm(oi: OIFits):
    import matplotlib.colors as mcolors

    waves = np.concatenate([w.eff_wave for w in oi.wavelengths]) * MEGA
    waves = waves[np.isfinite(waves)]
    lo, hi = (float(waves.min()), float(waves.max())) if waves.size else (1.0, 2.0)
    if hi <= lo:
        lo, hi = lo * 0.99, hi * 1.01
    return mcolors.Normalize(lo, hi)


def _colorbar(fig, sc, ax):
    cb = fig.colorbar(sc, ax=ax, pad=0.02)
    cb.set_label("wavelength (µm)")
    return cb


def _errorbar_scatter(ax, x, y, yerr, c, norm, cmap="turbo", size=9):
    ok = np.isfinite(x) & np.isfinite(y)
    x, y, c = x[ok], y[ok], c[ok]
    yerr = None if yerr is None else np.where(np.isfinite(yerr[ok]), np.abs(yerr[ok]), 0.0)
    if yerr is not None and x.size <= 20000:
        ax.errorbar(x, y, yerr=yerr, fmt="none", ecolor="0.75", elinewidth=0.6, zorder=1)
    return ax.scatter(x, y, c=c, cmap=cmap, norm=norm, s=size, linewidths=0, zorder=2)


def plot_uv(oi: OIFits):
    """uv coverage: ±(u, v)/λ in Mλ, coloured by wavelength, East left."""
    plt = _plt()
    pts_u, pts_v, pts_w = [], [], []
    for kind in ("vis2", "vis"):
        v = oi.view(kind)
        if len(v):
            ok = v.usable
            pts_u.append(v.u[ok] / v.wavelength[ok])
            pts_v.append(v.v[ok] / v.wavelength[ok])
            pts_w.append(v.wavelength[ok])
            break
    if not pts_u:
        t3 = oi.view("t3")
        if not len(t3):
            return None
        ok = t3.usable
        for uu, vv in ((t3.u, t3.v), (t3.u2, t3.v2), (t3.u3, t3.v3)):
            pts_u.append(uu[ok] / t3.wavelength[ok])
            pts_v.append(vv[ok] / t3.wavelength[ok])
            pts_w.append(t3.wavelength[ok])
    u = np.concatenate(pts_u) / MEGA
    v = np.concatenate(pts_v) / MEGA
    w = np.concatenate(pts_w) * MEGA
    norm = _wave_norm(oi)
    fig, ax = plt.subplots(figsize=(6.4, 5.6), constrained_layout=True)
    sc = ax.scatter(np.concatenate([u, -u]), np.concatenate([v, -v]), c=np.concatenate([w, w]), cmap="turbo",
                    norm=norm, s=6, linewidths=0)
    lim = 1.08 * float(np.nanmax(np.hypot(u, v))) if u.size else 1.0
    ax.set_xlim(lim, -lim)  # East left
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.axhline(0, color="0.85", lw=0.6, zorder=0)
    ax.axvline(0, color="0.85", lw=0.6, zorder=0)
    ax.set_xlabel("u (Mλ)   ← East")
    ax.set_ylabel("v (Mλ)   North →")
    ax.set_title(_title(oi, "uv coverage"), fontsize=9)
    _colorbar(fig, sc, ax)
    return fig


def plot_vis2(oi: OIFits):
    """V² against spatial frequency (Mλ), coloured by wavelength."""
    v = oi.view("vis2")
    if not len(v) or not v.usable.any():
        return None
    plt = _plt()
    ok = v.usable
    fig, ax = plt.subplots(figsize=(7.0, 4.6), constrained_layout=True)
    sc = _errorbar_scatter(ax, v.spatial_frequency[ok] / MEGA, v.value[ok], v.error[ok], v.wavelength[ok] * MEGA,
                           _wave_norm(oi))
    ax.set_xlabel("spatial frequency B/λ (Mλ)")
    ax.set_ylabel("V²")
    ax.set_xlim(left=0)
    top = float(np.nanmax(v.value[ok] + np.nan_to_num(v.error[ok]))) if ok.any() else 1.0
    bottom = float(np.nanmin(v.value[ok])) if ok.any() else 0.0
    ax.set_ylim(max(min(-0.02, bottom - 0.02), -0.5), max(1.05, min(top + 0.02, 1.6)))  # outliers beyond clipped
    ax.axhline(0, color="0.8", lw=0.6)
    ax.set_title(_title(oi, "squared visibility"), fontsize=9)
    ax.grid(alpha=0.25)
    _colorbar(fig, sc, ax)
    return fig


def plot_t3(oi: OIFits):
    """Closure phase (deg) against the longest baseline of each triangle (Mλ)."""
    t3 = oi.view("t3")
    if not len(t3) or not t3.usable.any():
        return None
    plt = _plt()
    ok = t3.usable
    fig, ax = plt.subplots(figsize=(7.0, 4.6), constrained_layout=True)
    sc = _errorbar_scatter(ax, t3.spatial_frequency[ok] / MEGA, np.degrees(t3.value[ok]), np.degrees(t3.error[ok]),
                           t3.wavelength[ok] * MEGA, _wave_norm(oi))
    ax.set_xlabel("longest baseline of the triangle B_max/λ (Mλ)")
    ax.set_ylabel("closure phase (deg)")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlim(left=0)
    ax.set_title(_title(oi, "closure phase"), fontsize=9)
    ax.grid(alpha=0.25)
    _colorbar(fig, sc, ax)
    return fig


def plot_vis(oi: OIFits):
    """VISAMP and VISPHI (deg) against spatial frequency (Mλ)."""
    v = oi.view("vis")
    if not len(v):
        return None
    amp_ok = ~v.flag & np.isfinite(v.value)
    phi_ok = ~v.flag & np.isfinite(v.phase)
    if not (amp_ok.any() or phi_ok.any()):
        return None
    plt = _plt()
    norm = _wave_norm(oi)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7.0, 6.4), sharex=True, constrained_layout=True)
    sc = None
    if amp_ok.any():
        sc = _errorbar_scatter(ax1, v.spatial_frequency[amp_ok] / MEGA, v.value[amp_ok], v.error[amp_ok],
                               v.wavelength[amp_ok] * MEGA, norm)
    amptyp = {str(t.keyword("AMPTYP", "") or "") for t in oi.vis} - {""}
    units = {t.units.get("VISAMP", "") for t in oi.vis} - {""}
    label = "VISAMP" + (f" ({', '.join(sorted(amptyp))})" if amptyp else "") + (f" [{', '.join(sorted(units))}]" if units else "")
    ax1.set_ylabel(label)
    ax1.grid(alpha=0.25)
    if phi_ok.any():
        sc = _errorbar_scatter(ax2, v.spatial_frequency[phi_ok] / MEGA, np.degrees(v.phase[phi_ok]),
                               np.degrees(v.phase_error[phi_ok]), v.wavelength[phi_ok] * MEGA, norm)
    phityp = {str(t.keyword("PHITYP", "") or "") for t in oi.vis} - {""}
    ax2.set_ylabel("VISPHI (deg)" + (f" ({', '.join(sorted(phityp))})" if phityp else ""))
    ax2.set_xlabel("spatial frequency B/λ (Mλ)")
    ax2.axhline(0, color="0.6", lw=0.8)
    ax2.grid(alpha=0.25)
    ax2.set_xlim(left=0)
    ax1.set_title(_title(oi, "complex visibility"), fontsize=9)
    if sc is not None:
        _colorbar(fig, sc, [ax1, ax2])
    return fig


def plot_flux(oi: OIFits):
    """OI_FLUX spectra: one panel per INSNAME, one line per row labelled by station."""
    f = oi.view("flux")
    if not len(f) or not f.usable.any():
        return None
    plt = _plt()
    insnames = [n for n in dict.fromkeys(f.insname.tolist()) if (f.usable & (f.insname == n)).any()][:4]
    fig, axes = plt.subplots(len(insnames), 1, figsize=(7.0, 2.2 + 2.4 * len(insnames)), squeeze=False,
                             constrained_layout=True)
    cmap = plt.get_cmap("tab10")
    units = {t.units.get("FLUXDATA", "") for t in oi.flux} - {""}
    cal = {t.calstat for t in oi.flux} - {""}
    ylabel = "flux" + (f" [{', '.join(sorted(units))}]" if units else " (arb. units)") + (
        " — uncalibrated" if cal == {"U"} else "")
    for ax, ins in zip(axes[:, 0], insnames):
        colors: dict[str, tuple] = {}
        rows = np.unique(np.stack([f.table, f.row], axis=1)[f.insname == ins], axis=0)
        for ti, ri in rows[:60]:
            sel = (f.table == ti) & (f.row == ri) & f.usable
            if not sel.any():
                continue
            order = np.argsort(f.wavelength[sel])
            who = str(f.stations[sel][0])
            if who in ("0", "-1", ""):
                who = str(f.target[sel][0])
            color = colors.setdefault(who, cmap(len(colors) % 10))
            ax.plot(f.wavelength[sel][order] * MEGA, f.value[sel][order], lw=0.9, color=color,
                    marker="." if sel.sum() < 20 else None)
        ax.legend(handles=[plt.Line2D([], [], color=c, label=k) for k, c in colors.items()], fontsize=7, ncol=4,
                  frameon=False, title=ins, title_fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.25)
    axes[-1, 0].set_xlabel("wavelength (µm)")
    axes[0, 0].set_title(_title(oi, "OI_FLUX spectra"), fontsize=9)
    return fig


PLOTS = {"uv": plot_uv, "vis2": plot_vis2, "t3": plot_t3, "vis": plot_vis, "flux": plot_flux}


def quicklook(oi: OIFits, outdir: str | os.PathLike, stem: str | None = None, dpi: int = 120) -> dict[str, str]:
    """Write every applicable quicklook PNG to ``outdir``; returns {plot name: path}."""
    plt = _plt()
    outdir = Path(outdir)
    stem = stem or (Path(oi.path).stem if oi.path else "oifits")
    written = {}
    for name, func in PLOTS.items():
        fig = func(oi)
        if fig is None:
            continue
        try:
            path = outdir / f"{stem}_{name}.png"
            save_figure_atomic(fig, path, dpi=dpi)
            written[name] = str(path)
        finally:
            plt.close(fig)
    return written
