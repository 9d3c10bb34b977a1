"""Quicklooks of a reconstruction: the image (beam, scale bar, N/E arrows) and the residuals.

East is drawn to the LEFT and North up, as on the sky; axes are relative offsets in mas.
Quicklooks are named after their product (:func:`quicklook_paths`): ``x.fits`` → ``x.png`` and
``x.residuals.png``, so that two products in one folder keep their own.

They are drawn from a **payload** (:func:`quicklook_payload`: plain numpy arrays and strings,
picklable) by :func:`draw_quicklooks`, in the process that reconstructed (library, pipeline) or
in a child process while the solver runs (``oiflow image``, :mod:`oiflow.image.quicklook_process`).
A figure that fails is reported with its reason and never costs the product.

**Image scale**: intensity relative to the image's peak on an asinh stretch, linear below
:data:`ASINH_WIDTH` (0.3 % of the peak) and logarithmic above: a 1 % companion sits at ~30 % of
the colour scale, where a linear scale would leave it at 1 % (black). The colour bar's label says
so. The truth, when given, is drawn beside it on the same scale.

**Speed** (the quicklooks used to cost 1–2 s per command): matplotlib's object API without pyplot
(:class:`matplotlib.figure.Figure`, the Agg canvas), a fixed layout in inches (no layout engine:
``tight_layout`` drew every figure twice; titles placed by hand), legends at a fixed place,
error bars as one path, PNGs at zlib level 1, and at most :data:`MAX_POINTS` points per
observable drawn (evenly strided; the panel's title says so). Then (≈ 40 % less CPU drawing the two, README): few
ticks, all inside their axis and no unlabelled minor ticks (:mod:`oiflow.plot_axes`: matplotlib
makes an object per tick, the largest cost of the residuals figure), font sizes set once for
the figure (:data:`STYLE`) rather than changed on every tick, text without FreeType's
auto-hinter.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..provenance import save_figure_atomic
from ..units import MAS

_LABELS = {"vis2": ("V²", 1.0, ""), "t3phi": ("closure phase", 180 / math.pi, "deg"), "t3amp": ("T3 amplitude", 1.0, ""),
           "visamp": ("visibility amplitude", 1.0, ""), "visphi": ("visibility phase", 180 / math.pi, "deg")}

#: the asinh stretch of the image: linear below this fraction of the peak, logarithmic above
ASINH_WIDTH = 0.003
#: colour-bar ticks (fractions of the peak)
COLORBAR_TICKS = (0.0, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
#: points drawn per observable in the residuals figure at most (evenly strided beyond)
MAX_POINTS = 5000
#: at most this many intervals between the labelled ticks of an axis: the image's (mas), the
#: residuals figure's (frequency, observable) and its normalised residuals' (σ)
IMAGE_TICKS, RESIDUAL_TICKS, SIGMA_TICKS = 4, 5, 4
#: tick steps of a phase axis (degrees): multiples of 90°, 45°, 30°… over ±180°
PHASE_STEPS = (1, 1.5, 3, 4.5, 9, 10)
#: font sizes (points) of the quicklooks (axis labels, tick labels) and text drawn without
#: FreeType's auto-hinter (a tenth of the drawing time; as legible at these sizes)
STYLE = {"axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7, "text.hinting": "no_hinting"}
IMAGE_DPI = 110
RESIDUALS_DPI = 100

# image figure layout (inches): per panel, a square image axes (the image fills it) and its colour bar
_SIDE, _LEFT, _BOTTOM, _TOP = 3.4, 0.8, 0.55, 0.75
_CBAR_GAP, _CBAR_WIDTH, _CBAR_LABEL = 0.1, 0.14, 0.72
_PANEL = _LEFT + _SIDE + _CBAR_GAP + _CBAR_WIDTH + _CBAR_LABEL
# residuals figure layout (inches): per observable, data/model above, residuals below
_R_WIDTH, _R_LEFT, _R_RIGHT = 3.6, 0.75, 0.15
_R_BOTTOM, _R_LOW, _R_GAP, _R_HIGH, _R_TOP = 0.5, 1.3, 0.08, 2.6, 0.35


def quicklook_paths(product: str | os.PathLike) -> tuple[Path, Path]:
    """(image PNG, residuals PNG) of the product file ``product``: its name without the last
    suffix, + ``.png`` / ``.residuals.png`` (``L3/t/n/image.fits`` → ``image.png``,
    ``image.residuals.png``)."""
    stem = Path(product).with_suffix("")
    return stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".residuals.png")


def image_layout(panels: int) -> tuple[tuple[float, float], list[tuple[float, float, float, float]]]:
    """Figure size (inches) and the image axes of each panel (left, bottom, width, height in
    figure fractions) of the image quicklook with ``panels`` panels (2 with the truth). The
    image fills its axes: pixel (ix, iy) of an n×n image covers [ix/n, (ix+1)/n] × [iy/n,
    (iy+1)/n] of the box, iy from the bottom."""
    w, h = panels * _PANEL, _BOTTOM + _SIDE + _TOP
    return (w, h), [((k * _PANEL + _LEFT) / w, _BOTTOM / h, _SIDE / w, _SIDE / h) for k in range(panels)]


def _strided(n: int, limit: int) -> np.ndarray:
    return np.arange(0, n, max(1, math.ceil(n / limit)))


def quicklook_payload(result, truth: np.ndarray | None = None) -> dict:
    """What the quicklooks of ``result`` (an :class:`~oiflow.image.reconstruct.ImageResult`)
    need, as plain arrays and strings: the image (first plane of a cube), the truth, pixel size,
    beam, the title, and per fitted observable its spatial frequencies, data, errors and model
    (at most :data:`MAX_POINTS` per observable)."""
    img = np.asarray(result.image if result.image.ndim == 2 else result.image[0], dtype=np.float64)
    terms = ", ".join(f"{k} {v:.2f}" for k, v in result.chi2_terms.items())
    verdict = getattr(result, "verdict", None)
    title = (f"{result.data.target if result.data else ''}  {result.regularization} μ={result.mu:.3g}\n"
             f"χ²_red {result.chi2:.2f} ({terms})\n{result.niter} it"
             + (f", verdict {verdict.status}" if verdict is not None else ""))
    kinds: dict[str, list] = {}
    if result.data is not None:
        for gi, g in enumerate(result.data.groups):
            for term, t in g.terms.items():
                kinds.setdefault(term, []).append((t, result.models[gi][term]))
    observables = []
    for kind, parts in kinds.items():
        f = np.concatenate([t.spatial_frequency for t, _ in parts])
        data = np.concatenate([t.data for t, _ in parts])
        error = np.concatenate([t.error for t, _ in parts])
        model = np.concatenate([np.asarray(m, float) for _, m in parts])
        keep = _strided(f.size, MAX_POINTS)
        observables.append({"kind": kind, "chi2": float(result.chi2_terms.get(kind, float("nan"))), "total": int(f.size),
                            "frequency": f[keep], "data": data[keep], "error": error[keep], "model": model[keep]})
    beam = result.beam
    return {"image": img, "truth": None if truth is None else np.asarray(truth, dtype=np.float64),
            "pixel_size": float(result.pixel_size), "title": title,
            "beam": None if beam is None else (float(beam.major), float(beam.minor), float(beam.pa)),
            "observables": observables}


def _nice_length(fov_mas: float) -> float:
    target = fov_mas / 5
    p = 10 ** math.floor(math.log10(target))
    for m in (5, 2, 1):
        if m * p <= target:
            return m * p
    return p


def _draw_image(fig, rect, img: np.ndarray, pixel_size: float, beam, title: str, cmap: str = "afmhot"):
    """One image panel in the axes ``rect`` (figure fractions) with its colour bar at its right."""
    from matplotlib.colors import AsinhNorm
    from matplotlib.patches import Ellipse

    from ..plot_axes import few_ticks

    ax = fig.add_axes(rect)
    n = img.shape[-1]
    pix = pixel_size / MAS
    half_lo = -(n // 2 + 0.5) * pix
    half_hi = (n - n // 2 - 0.5) * pix
    # column ix has x_east = −(ix − n//2)·pix: the left edge is the most Eastern
    extent = (-half_lo, -half_hi, half_lo, half_hi)
    peak = float(img.max())
    rel = img / peak if peak > 0 else img
    im = ax.imshow(rel, origin="lower", extent=extent, cmap=cmap, interpolation="nearest", aspect="auto",
                   norm=AsinhNorm(linear_width=ASINH_WIDTH, vmin=0.0, vmax=1.0))
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    few_ticks(ax.xaxis, IMAGE_TICKS)
    few_ticks(ax.yaxis, IMAGE_TICKS)
    ax.set_xlabel("ΔRA (mas, East ←)")
    ax.set_ylabel("ΔDec (mas, North ↑)")
    _title(fig, rect, title)
    fov = n * pix
    x0, x1 = extent[0], extent[1]
    y0, y1 = extent[2], extent[3]
    if beam is not None:
        major, minor, pa = beam
        bx, by = x0 - 0.12 * fov, y0 + 0.12 * fov
        # in data coordinates (x = East offset, y = North) the ellipse's height axis points at
        # (−sin a, cos a) for a rotation a; the major axis must point at (sin PA, cos PA): a = −PA
        ax.add_patch(Ellipse((bx, by), width=minor / MAS, height=major / MAS, angle=-math.degrees(pa),
                             edgecolor="white", facecolor="none", lw=1.2))
        ax.text(bx, by + 0.08 * fov, "beam", color="white", ha="center", fontsize=7)
    length = _nice_length(fov)
    sx1 = x1 + 0.08 * fov
    sx0 = sx1 + length
    sy = y0 + 0.06 * fov
    ax.plot([sx0, sx1], [sy, sy], color="white", lw=2)
    ax.text((sx0 + sx1) / 2, sy + 0.03 * fov, f"{length:g} mas", color="white", ha="center", fontsize=7)
    # compass: N up, E left
    cx, cy, arm = x0 - 0.25 * fov, y1 - 0.22 * fov, 0.12 * fov
    for tip in ((cx, cy + arm), (cx + arm, cy)):
        ax.annotate("", xy=tip, xytext=(cx, cy), arrowprops=dict(arrowstyle="->", color="white", lw=1.2))
    ax.text(cx, cy + arm * 1.15, "N", color="white", ha="center", va="bottom", fontsize=8)
    ax.text(cx + arm * 1.15, cy, "E", color="white", ha="right", va="center", fontsize=8)
    w = fig.get_figwidth()
    cax = fig.add_axes((rect[0] + (_SIDE + _CBAR_GAP) / w, rect[1], _CBAR_WIDTH / w, rect[3]))
    cb = fig.colorbar(im, cax=cax, ticks=COLORBAR_TICKS, format="{x:g}")
    cb.minorticks_off()
    cb.set_label(f"intensity / peak (asinh stretch, linear below {ASINH_WIDTH:g})", fontsize=7)
    return ax


def _title(fig, rect, text: str) -> None:
    """A title just above the axes ``rect`` (figure fractions), placed by hand: an axes title is
    placed by measuring every tick label (a tenth of a second per figure)."""
    fig.text(rect[0] + rect[2] / 2, rect[1] + rect[3] + 0.01, text, ha="center", va="bottom", fontsize=8)


def _save(fig, path, dpi: int) -> None:
    """PNG at zlib level 1: a few per cent larger than the default level 6, encoded 3× faster."""
    save_figure_atomic(fig, path, dpi=dpi, pil_kwargs={"compress_level": 1})


def _figure(size):
    from matplotlib.figure import Figure

    return Figure(figsize=size)


def _style():
    """The figures' font sizes (:data:`STYLE`) for the ``with`` block: ticks are made as the
    figure is drawn, with these sizes, instead of being made and then changed (``tick_params``)."""
    from matplotlib import rc_context

    return rc_context(STYLE)


def plot_image(payload: dict, path: str | os.PathLike) -> str:
    """PNG of the reconstructed image (first plane of a cube) on the asinh scale, with the beam,
    a scale bar, N/E arrows and the verdict in the title; the truth beside it when the payload
    has one."""
    with _style():
        _save(_image_figure(payload), path, IMAGE_DPI)
    return str(path)


def _image_figure(payload: dict):
    truth = payload.get("truth")
    size, rects = image_layout(2 if truth is not None else 1)
    fig = _figure(size)
    _draw_image(fig, rects[0], payload["image"], payload["pixel_size"], payload["beam"], payload["title"])
    if truth is not None:
        _draw_image(fig, rects[1], truth, payload["pixel_size"], payload["beam"], "truth")
    return fig


def plot_residuals(payload: dict, path: str | os.PathLike) -> str:
    """PNG with, for each fitted observable, data and model against spatial frequency and the
    normalised residuals (phases wrapped to ±180°, the model's drawn on the data's branch; V² on
    a labelled log axis when it spans decades: :mod:`oiflow.plot_axes`)."""
    with _style():
        _save(_residuals_figure(payload), path, RESIDUALS_DPI)
    return str(path)


def _residuals_figure(payload: dict):
    from ..plot_axes import few_ticks, on_data_branch, v2_axis

    obs = payload["observables"]
    ncol = max(len(obs), 1)
    w, h = ncol * _R_WIDTH, _R_BOTTOM + _R_LOW + _R_GAP + _R_HIGH + _R_TOP
    fig = _figure((w, h))
    aw = (_R_WIDTH - _R_LEFT - _R_RIGHT) / w
    for col, o in enumerate(obs):
        x = (col * _R_WIDTH + _R_LEFT) / w
        ax = fig.add_axes((x, (_R_BOTTOM + _R_LOW + _R_GAP) / h, aw, _R_HIGH / h))
        axr = fig.add_axes((x, _R_BOTTOM / h, aw, _R_LOW / h), sharex=ax)
        kind = o["kind"]
        label, scale, unit = _LABELS[kind]
        f = o["frequency"] / 1e6
        data, err, model = o["data"], o["error"], o["model"]
        if kind in ("t3phi", "visphi"):
            res = np.angle(np.exp(1j * (data - model))) / err
        else:
            res = (data - model) / err
        # the error bars as one path (segments separated by NaN): a collection of thousands of
        # segments cost more than the rest of the figure
        bars = np.full((3, f.size), np.nan)
        ax.plot(np.repeat(f[None], 3, axis=0).T.ravel(),
                np.stack([(data - err) * scale, (data + err) * scale, bars[2]]).T.ravel(), color="0.65", lw=0.5)
        ax.plot(f, data * scale, ".", ms=2, color="0.35", label="data")
        drawn_model = on_data_branch(model, data) if kind in ("t3phi", "visphi") else model
        ax.plot(f, drawn_model * scale, ".", ms=2, color="C3", label="model")
        axr.plot(f, res, ".", ms=2, color="C0")
        drawn = "" if f.size == o["total"] else f" ({f.size} of {o['total']} drawn)"
        _title(fig, ax.get_position().bounds, f"{label}: χ²_red = {o['chi2']:.2f}{drawn}")
        ax.set_ylabel(f"{label} ({unit})" if unit else label)
        if kind == "vis2":
            v2_axis(ax, data, top=np.concatenate([data + err, model]), label=label)
        few_ticks(ax.xaxis, RESIDUAL_TICKS)  # shared with axr
        few_ticks(axr.yaxis, SIGMA_TICKS)
        if kind in ("t3phi", "visphi"):
            few_ticks(ax.yaxis, RESIDUAL_TICKS, PHASE_STEPS)
        elif not (kind == "vis2" and ax.get_yscale() == "log"):
            few_ticks(ax.yaxis, RESIDUAL_TICKS)
        ax.legend(loc="upper right", fontsize=7, markerscale=3)
        ax.tick_params(labelbottom=False)
        axr.axhline(0, color="k", lw=0.5)
        for lev in (-3, 3):
            axr.axhline(lev, color="k", lw=0.5, ls=":")
        axr.set_xlabel("spatial frequency (Mλ)")
        axr.set_ylabel("residual / σ")
    return fig


def draw_quicklooks(payload: dict, product: str | os.PathLike, which: tuple[int, ...] = (0, 1)) -> tuple[list[str], list[str]]:
    """Draw the quicklooks of ``product`` (:func:`quicklook_paths`) from ``payload``: (the
    paths written, a message per figure that failed). A failure is reported, never raised.
    ``which``: the figures to draw, 0 the image, 1 the residuals (both by default)."""
    paths, messages = [], []
    for k, (plot, path) in enumerate(zip((plot_image, plot_residuals), quicklook_paths(product))):
        if k not in which:
            continue
        try:
            paths.append(plot(payload, path))
        except Exception as exc:  # a quicklook never costs the product
            messages.append(f"quicklook {Path(path).name} not written: {type(exc).__name__}: {exc}")
    return paths, messages


def warm_up() -> None:
    """Import what drawing needs and load the font (the first text drawn reads it): what a
    quicklook process does while the solver runs."""
    import io

    from matplotlib.colors import AsinhNorm  # noqa: F401
    from matplotlib.patches import Ellipse  # noqa: F401

    fig = _figure((0.5, 0.5))
    fig.text(0.5, 0.5, "χ²", fontsize=8)
    fig.savefig(io.BytesIO(), format="png", dpi=20)
