"""L3 fit products: ``fit_<model>.json`` + ``fit_<model>_<observable>.png``, and for the companion
search ``companion.json``, ``companion_maps.fits`` (χ², nσ, detection limit) and PNG maps.

Every write is atomic (:mod:`oiflow.provenance`) and carries provenance (level 3, stage "fit").
Map images follow the oiflow image convention: image[iy, ix], North up, East left,
x_east = −(ix − n//2)·step, CDELT1 < 0.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..product_tree import safe_name
from ..provenance import Provenance, save_figure_atomic, stage_history, write_hdulist_atomic, write_json_atomic
from .data import OBSERVABLES
from .evaluate import block_residual

_LABEL = {"v2": "V²", "visamp": "|V|", "visphi": "differential phase (deg)", "t3amp": "T3 amplitude",
          "t3phi": "closure phase (deg)", "flux": "flux (arbitrary scale)"}


def provenance(files, settings: dict, status: str, detail: str) -> Provenance:
    """Level-3 provenance of a fit product from OIFITS ``files`` (those on disk), with the stages
    that made it: those of the files, then the fit's ``status`` (its verdict) and ``detail``."""
    inputs = [f for f in files if f and Path(f).is_file()]
    return Provenance.for_inputs(3, "fit", inputs, settings=settings,
                                 stages=stage_history(inputs, "fit", status, detail))


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def write_fit_products(result, out_dir, plot: bool = True) -> list[Path]:
    """Write ``fit_<model>.json`` (and the plots) into ``out_dir``; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = safe_name(result.model.name)
    doc = result.to_dict()
    prov = provenance(result.files, {"model": doc["model"], "observables": doc["observables"],
                                     "bandwidth_smearing": doc["bandwidth_smearing"]},
                      result.verdict.status, f"model {result.model.name}, chi2_red {result.chi2_red:.3g}")
    doc["provenance"] = prov.to_dict()
    paths = [write_json_atomic(doc, out_dir / f"fit_{name}.json")]
    if plot and result.evaluator is not None:
        paths += plot_fit(result, out_dir, f"fit_{name}")
    return paths


def plot_fit(result, out_dir, prefix: str) -> list[Path]:
    """Data and model against spatial frequency (wavelength for fluxes), with normalised
    residuals below: one PNG per observable (:func:`fit_figures`)."""
    plt = _figure()
    paths = []
    for name, fig in fit_figures(result):
        path = Path(out_dir) / f"{prefix}_{name}.png"
        save_figure_atomic(fig, path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def fit_title(result, observable: str) -> str:
    """The title of a fit plot: the target(s), the model and the observable; every fitted value
    with its error and unit (:func:`oiflow.fit.headline.fit_values`), a binary's separation, PA
    and flux ratio; χ²_red and the verdict."""
    from .headline import fit_headline, fit_values

    data = result.evaluator.data if result.evaluator is not None else None
    targets = ", ".join(data.targets) if data is not None and data.targets else "?"
    lines = [f"{targets} — model {result.model.name}: {observable}"]
    lines += _pack(fit_values(result), 90)
    if result.derived:
        lines.append(fit_headline(result))
    lines.append(f"χ²_red = {result.chi2_red:.3g} (all data), verdict {result.verdict.status}")
    return "\n".join(lines)


def _pack(items: list[str], width: int) -> list[str]:
    """``items`` joined by ", " into lines of at most ``width`` characters, broken between items
    only (a longer item has its own line)."""
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + 2 + len(item) <= width:
            lines[-1] += ", " + item
        else:
            if lines:
                lines[-1] += ","
            lines.append(item)
    return lines


def fit_figures(result) -> list[tuple[str, object]]:
    """(observable, figure) per fitted observable: data (grey) and model (red) against spatial
    frequency, normalised residuals below. Phases are drawn on the data's branch and V² on a
    log axis when it spans more than a decade (:mod:`oiflow.plot_axes`)."""
    from ..backend import to_numpy
    from ..plot_axes import on_data_branch, v2_axis

    plt = _figure()
    ev = result.evaluator
    models = [to_numpy(m) for m in ev.observables(result.values)]
    out = []
    for b, m in zip(ev.data.blocks, models):
        res = block_residual(b, m)
        title = fit_title(result, OBSERVABLES[b.name][3])
        fig, (ax, axr) = plt.subplots(2, 1, figsize=(7, 6 + 0.18 * title.count("\n")), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
        angle = b.name in ("t3phi", "visphi")
        k = 180 / math.pi if angle else 1.0
        if b.name == "flux":
            x, xlabel = b.wavelength * 1e6, "wavelength (µm)"
        else:
            x = b.spatial_frequency / 1e6
            xlabel = "spatial frequency B/λ (Mλ)" + (", longest baseline" if b.name.startswith("t3") else "")
        shown = b.value
        if b.name == "visphi":  # differential: both with the data's per-row mean removed
            shown = b.value - (b.value - m - res * b.error)
        ax.errorbar(x, shown * k, yerr=b.error * k, fmt=".", ms=3, color="0.4", ecolor="0.75", lw=0.8,
                    label="data", zorder=1)
        mod = m
        if b.name == "flux":
            w = 1.0 / b.error**2
            mod = m * np.sum(b.value * m * w) / np.sum(m * m * w)
        if angle:
            mod = on_data_branch(mod, shown)
        ax.plot(x, mod * k, ".", ms=3, color="C3", label="model" + (" (on the data's ±180° branch)" if angle else ""),
                zorder=2)
        if b.name == "v2":
            v2_axis(ax, shown, top=np.concatenate([shown + b.error, mod]), label=_LABEL["v2"])
        else:
            ax.set_ylabel(_LABEL.get(b.name, b.name))
        ax.legend(loc="best", fontsize=8)
        ax.set_title(title, fontsize=9)
        axr.axhline(0, color="k", lw=0.6)
        axr.plot(x, res, ".", ms=3, color="C0")
        lim = max(3.0, float(np.nanpercentile(np.abs(res), 99.5)) * 1.1)
        axr.set_ylim(-lim, lim)
        axr.set_ylabel("residual (σ)")
        axr.set_xlabel(xlabel)
        fig.tight_layout()
        out.append((b.name, fig))
    return out


# -- companion search ----------------------------------------------------------------------------
def _map_hdu(name: str, image: np.ndarray, step_mas: float, unit: str, comment: str):
    from astropy.io import fits

    hdu = fits.ImageHDU(np.asarray(image, dtype=np.float64), name=name)
    n_y, n_x = image.shape
    h = hdu.header
    h["CTYPE1"] = ("XOFFSET", "offset towards East")
    h["CTYPE2"] = ("YOFFSET", "offset towards North")
    h["CUNIT1"] = h["CUNIT2"] = "deg"
    h["CRPIX1"] = n_x // 2 + 1
    h["CRPIX2"] = n_y // 2 + 1
    h["CRVAL1"] = h["CRVAL2"] = 0.0
    h["CDELT1"] = (-step_mas / 3.6e6, "deg; East is left")
    h["CDELT2"] = (step_mas / 3.6e6, "deg")
    h["BUNIT"] = unit
    h["COMMENT"] = comment
    return hdu


def write_companion_products(result, out_dir, plot: bool = True) -> list[Path]:
    from astropy.io import fits

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = result.to_dict()
    prov = provenance(result.files, {"grid": doc["grid"], "observables": doc["observables"],
                                     "bandwidth_smearing": doc["bandwidth_smearing"]},
                      result.verdict.status, f"companion search, best companion at {result.nsigma:.3g} sigma")
    doc["provenance"] = prov.to_dict()
    paths = [write_json_atomic(doc, out_dir / "companion.json")]
    primary = fits.PrimaryHDU()
    prov.apply_to_header(primary.header)
    primary.header["NSIGMA"] = (float(result.nsigma), "significance of the best companion (CANDID)")
    primary.header["CHI2R_UD"] = (float(result.chi2r_single), "chi2/n_data of the single star")
    primary.header["CHI2R_BI"] = (float(result.chi2r_binary), "chi2/n_data of the best binary")
    hdus = [primary,
            _map_hdu("CHI2R", result.chi2_map, result.step_mas, "", "chi2/n_data of the fit started at each node"),
            _map_hdu("NSIGMA", result.nsigma_map, result.step_mas, "", "significance vs the single star")]
    if result.detection is not None:
        det = result.detection
        hdus.append(_map_hdu("DETLIM", det["flux_ratio"], det["step_mas"], "",
                             f"flux ratio detectable at {det['nsigma']} sigma (injection)"))
    paths.append(write_hdulist_atomic(fits.HDUList(hdus), out_dir / "companion_maps.fits"))
    if plot:
        paths += plot_companion(result, out_dir)
    return paths


def _extent(xs, ys):
    step = abs(ys[1] - ys[0]) if len(ys) > 1 else 1.0
    return [xs[0] + step / 2, xs[-1] - step / 2, ys[0] - step / 2, ys[-1] + step / 2]


#: colours of the grid nodes that have no value in the χ² and nσ maps (companion_chi2.png)
NODE_COLOURS = {"left": "0.6", "failed": "tab:red", "outside": "white"}


def node_status(result) -> dict[str, np.ndarray]:
    """Masks (the maps' shape) of the grid nodes without a value in the χ² and nσ maps and why:
    ``outside`` — not searched (outside rmin..rmax); ``left`` — the fit started there ended
    outside rmin..rmax (it belongs to another region of the sky: not counted); ``failed`` —
    its χ² is not finite. Nodes are ``X[inside]`` in row order, as the search made them."""
    X, Y = np.meshgrid(result.x_axis, result.y_axis)
    R = np.hypot(X, Y)
    inside = (R >= result.rmin_mas) & (R <= result.rmax_mas)
    end = np.hypot(result.solutions[:, 0], result.solutions[:, 1])
    finite = np.isfinite(result.solution_chi2r)
    left, failed = np.zeros(X.shape, bool), np.zeros(X.shape, bool)
    left[inside] = finite & ((end < result.rmin_mas) | (end > result.rmax_mas))
    failed[inside] = ~finite
    return {"outside": ~inside, "left": left, "failed": failed}


def companion_figure(result):
    """The χ² and nσ maps side by side. Nodes without a value are drawn in the colours of
    :data:`NODE_COLOURS`, said in a legend with their number (:func:`node_status`); the
    searched annulus is outlined."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Circle, Patch

    plt = _figure()
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.6))
    ext = _extent(result.x_axis, result.y_axis)
    status = node_status(result)
    codes = np.full(result.chi2_map.shape, np.nan)
    for k, name in enumerate(NODE_COLOURS):
        codes[status[name]] = k
    im = axes[0].imshow(result.chi2_map / result.chi2r_single, origin="lower", extent=ext, cmap="viridis_r")
    fig.colorbar(im, ax=axes[0], label="χ²_r(binary) / χ²_r(single star)")
    im = axes[1].imshow(result.nsigma_map, origin="lower", extent=ext, cmap="magma", vmin=0)
    fig.colorbar(im, ax=axes[1], label="nσ")
    b = result.best
    n_nodes = int((~status["outside"]).sum())
    span = f"{result.rmin_mas:g}–{result.rmax_mas:g} mas"
    labels = {"left": f"fit left {span} ({int(status['left'].sum())} of {n_nodes} nodes)",
              "failed": f"fit failed: χ² not finite ({int(status['failed'].sum())} of {n_nodes} nodes)",
              "outside": f"not searched (r < {result.rmin_mas:g} or > {result.rmax_mas:g} mas)"}
    handles = [Patch(facecolor=c, edgecolor="0.3", label=labels[name]) for name, c in NODE_COLOURS.items()
               if status[name].any()]
    for ax in axes:
        ax.imshow(codes, origin="lower", extent=ext, cmap=ListedColormap(list(NODE_COLOURS.values())),
                  vmin=-0.5, vmax=len(NODE_COLOURS) - 0.5, interpolation="nearest", zorder=0.5)
        for r in (result.rmin_mas, result.rmax_mas):
            ax.add_patch(Circle((0, 0), r, fill=False, ls="--", lw=0.7, color="0.3"))
        ax.plot([b["x_mas"]], [b["y_mas"]], "+", color="r", ms=14, mew=2)
        ax.plot([0], [0], "*", color="w", ms=10, mec="k")
        ax.set_xlabel("Δα (mas, East ←)")
        ax.set_ylabel("Δδ (mas, North ↑)")
        ax.set_aspect("equal")
    axes[0].set_title("χ² map (fit from each grid node)")
    axes[1].set_title(f"best: ({b['x_mas']:.3f}, {b['y_mas']:.3f}) mas, f = {b['flux_ratio']:.4g}, "
                      f"{result.nsigma:.1f}σ", fontsize=10)
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def plot_companion(result, out_dir) -> list[Path]:
    plt = _figure()
    paths = []
    fig = companion_figure(result)
    path = Path(out_dir) / "companion_chi2.png"
    save_figure_atomic(fig, path, dpi=110)
    plt.close(fig)
    paths.append(path)
    if result.detection is not None:
        det = result.detection
        fig, axes = plt.subplots(1, 2, figsize=(11, 5))
        with np.errstate(invalid="ignore", divide="ignore"):
            dmag = -2.5 * np.log10(det["flux_ratio"])
        im = axes[0].imshow(dmag, origin="lower", extent=_extent(det["x_axis"], det["y_axis"]), cmap="inferno")
        fig.colorbar(im, ax=axes[0], label=f"Δmag detectable at {det['nsigma']:g}σ")
        axes[0].plot([0], [0], "*", color="w", ms=10, mec="k")
        axes[0].set_xlabel("Δα (mas, East ←)")
        axes[0].set_ylabel("Δδ (mas, North ↑)")
        axes[0].set_aspect("equal")
        axes[0].set_title("detection limit (injection)" + (", best companion removed" if det["companion_removed"]
                                                           else ""), fontsize=10)
        if len(det["radius_mas"]):
            axes[1].plot(det["radius_mas"], -2.5 * np.log10(det["flux_ratio_median"]), "-", label="median")
            axes[1].plot(det["radius_mas"], -2.5 * np.log10(det["flux_ratio_p90"]), "--", label="90 % of positions")
            axes[1].set_xlabel("separation (mas)")
            axes[1].set_ylabel(f"Δmag at {det['nsigma']:g}σ")
            axes[1].legend()
            axes[1].grid(alpha=0.3)
        fig.tight_layout()
        path = Path(out_dir) / "companion_detection_limit.png"
        save_figure_atomic(fig, path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
