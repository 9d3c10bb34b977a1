"""Evaluate a parsed :class:`~oiflow.fit.model.Model` on a :class:`~oiflow.fit.data.FitData`:
complex visibilities at the unique spatial frequencies, the model observables, the normalised
(and, with OI_CORR, whitened) residuals.

The composite visibility is the flux-weighted sum V(u, v, λ) = Σ_c F_c(λ) V_c(u, v) / Σ_c F_c(λ),
with V_c the component's analytic shape (:mod:`oiflow.fit.analytic`), elongated and shifted.
With ``bandwidth_smearing`` each channel (taken uniform in wavenumber over its EFF_BAND) is
sampled at ``n_smear`` midpoints (automatic by default, see :func:`auto_n_smear`): V² and the
bispectrum are averaged over them (the cross terms of a wide binary lose contrast), as the
instruments integrate over the channel. Whether a fit models it (``bandwidth_smearing: auto``,
the default of ``oiflow fit`` and ``oiflow companion``) is decided once, by :func:`decide_smearing`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, DataError
from ..observables import wrap_phase
from ..units import MAS
from . import analytic
from .data import FitData
from .model import Component, Model

DEG = math.pi / 180.0


def reference_wavelength(model: Model, data: FitData) -> float:
    """λ_ref (m) of chromatic fluxes: the model option, else the mean wavelength of the data."""
    ref = model.options.get("reference_wavelength_um")
    if ref:
        return float(ref) * 1e-6
    return float(np.mean(data.freq_wave))


def component_shape(comp: Component, vals: dict, u, v, xp, image_vis=None):
    """Normalised complex visibility of one component at (u, v) cycles/rad, centred on its (x, y)."""
    g = lambda k: vals[f"{comp.name}.{k}"]  # noqa: E731
    t = comp.type
    if t in ("ud", "gaussian", "ld", "ring"):
        ratio, pa = g("axis_ratio"), g("pa")
        if ratio != 1.0:
            u, v = analytic.stretch(u, v, ratio, pa * DEG, xp)
    if t == "point":
        vis = analytic.point(u, v, xp)
    elif t == "ud":
        vis = analytic.uniform_disk(u, v, g("diameter") * MAS, xp)
    elif t == "gaussian":
        vis = analytic.gaussian(u, v, g("fwhm") * MAS, xp)
    elif t == "ld":
        if comp.law == "power":
            vis = analytic.ld_power(u, v, g("diameter") * MAS, g("alpha"), xp)
        else:
            vis = analytic.ld_quadratic(u, v, g("diameter") * MAS, g("u1"), g("u2"), xp)
    elif t == "ring":
        vis = analytic.ring(u, v, g("diameter") * MAS, g("width") * MAS, xp)
    elif t == "background":
        vis = analytic.background(u, v, xp)
    elif t == "image":
        vis = image_vis
    else:  # pragma: no cover - parse_model rejects unknown types
        raise ConfigError(f"unknown component type {t}")
    return vis


def component_flux(comp: Component, vals: dict, wave, ref: float, xp):
    """F_c(λ): the flux parameter times the chromatic law (1 at λ_ref)."""
    f = vals[f"{comp.name}.flux"]
    law = comp.chromatic
    if law == "spectral_index":
        return f * analytic.power_law_ratio(wave, vals[f"{comp.name}.spectral_index"], ref, xp)
    if law == "temperature":
        return f * analytic.blackbody_ratio(wave, vals[f"{comp.name}.temperature"], ref, xp)
    return f


def load_image_component(comp: Component, base_dir=None):
    """(image normalised to unit sum, pixel size in rad) from the component's FITS file.

    The image follows the oiflow convention (:mod:`oiflow.image.transform`): image[iy, ix], North
    up, East left (CDELT1 < 0), centre at pixel n//2. A FITS image with CDELT1 > 0 is flipped."""
    from pathlib import Path

    from astropy.io import fits

    path = Path(comp.file)
    if not path.is_absolute() and base_dir is not None and not path.exists():
        path = Path(base_dir) / path
    if not path.is_file():
        raise ConfigError(f"component {comp.name!r}: image file not found: {comp.file}")
    with fits.open(path) as hdul:
        hdu = next((h for h in hdul if getattr(h, "data", None) is not None and np.ndim(h.data) >= 2), None)
        if hdu is None:
            raise ConfigError(f"component {comp.name!r}: no image in {path}")
        img = np.asarray(hdu.data, float)
        while img.ndim > 2:
            img = img[0]
        h = hdu.header
        cd1 = h.get("CDELT1", h.get("CD1_1"))
        cd2 = h.get("CDELT2", h.get("CD2_2"))
    if cd1 is None or cd2 is None:
        raise ConfigError(f"component {comp.name!r}: {path} has no CDELT1/CDELT2 (pixel size in degrees)")
    if not math.isclose(abs(cd1), abs(cd2), rel_tol=1e-6):
        raise ConfigError(f"component {comp.name!r}: {path} has non-square pixels")
    if cd1 > 0:
        img = img[:, ::-1]
    img = np.where(np.isfinite(img), img, 0.0)
    total = img.sum()
    if not total > 0:
        raise ConfigError(f"component {comp.name!r}: {path} has no positive flux")
    return img / total, abs(float(cd1)) * DEG


def model_extent_mas(model: Model, vals: dict | None = None) -> float:
    """The model's angular extent (mas): the largest offset from the origin plus size of a component."""
    vals = model.values() if vals is None else vals
    extent = 0.0
    for c in model.components:
        r = math.hypot(vals[f"{c.name}.x"], vals[f"{c.name}.y"])
        size = max((vals.get(f"{c.name}.{k}", 0.0) or 0.0) for k in ("diameter", "fwhm", "width"))
        extent = max(extent, r + size)
    return extent


def smearing_excursion(data: FitData, extent_mas: float) -> float:
    """The largest phase excursion across a channel (cycles) for a source of ``extent_mas``:
    max over the data of (Δλ/λ)·ρ·extent, ρ = B/λ in cycles/rad."""
    eps = np.nan_to_num(data.freq_band / data.freq_wave)
    rho = np.hypot(data.freq_u, data.freq_v)
    return float(np.max(eps * rho)) * extent_mas * MAS if rho.size else 0.0


def spectral_resolution(data: FitData) -> float | None:
    """R = λ/Δλ of the data (median over the channels with an EFF_BAND); None without one."""
    ok = data.freq_band > 0
    return float(np.median(data.freq_wave[ok] / data.freq_band[ok])) if ok.any() else None


def auto_n_smear(model: Model, data: FitData) -> int:
    """Samples per channel for bandwidth smearing: enough for the largest phase excursion
    across a channel (:func:`smearing_excursion` of the model's extent at its starting
    values), about 8 samples per cycle, between 3 and 64."""
    cycles = smearing_excursion(data, model_extent_mas(model))
    return int(min(max(math.ceil(8.0 * cycles) + 3, 3), 64))


#: bandwidth smearing is applied ("auto") when ignoring it changes χ² at the solution by at least this
SMEARING_DCHI2 = 1.0


@dataclass
class SmearingChoice:
    """Whether a fit models bandwidth smearing, and why (printed with the result, in the JSON)."""

    on: bool
    mode: str  # "auto" (decided from the data) or "requested"
    reason: str
    resolution: float | None = None  # R = λ/Δλ
    excursion_cycles: float | None = None  # largest phase excursion across a channel
    delta_chi2: float | None = None  # χ²(smeared) − χ²(monochromatic) at the solution

    def line(self) -> str:
        return f"bandwidth smearing: {'on' if self.on else 'off'} ({self.mode}: {self.reason})"

    def to_dict(self) -> dict:
        return {"on": self.on, "mode": self.mode, "reason": self.reason, "resolution": self.resolution,
                "excursion_cycles": self.excursion_cycles, "delta_chi2": self.delta_chi2}


def requested_smearing(on: bool, data: FitData) -> SmearingChoice:
    return SmearingChoice(bool(on), "requested", "set by the caller or the model's bandwidth_smearing option",
                          spectral_resolution(data))


def decide_smearing(model: Model, data: FitData, vals: dict, chi2_plain: float) -> SmearingChoice:
    """The one rule for bandwidth smearing, of ``oiflow fit`` and ``oiflow companion`` alike:
    on when modelling it changes χ² at the (monochromatic) solution ``vals`` by at least
    :data:`SMEARING_DCHI2` — i.e. when the channels' width (R = λ/Δλ), the baselines and the
    model's extent make it visible in these data; off otherwise, and off without EFF_BAND."""
    R = spectral_resolution(data)
    if R is None:
        return SmearingChoice(False, "auto", "the data have no EFF_BAND", None)
    extent = model_extent_mas(model, vals)
    cycles = smearing_excursion(data, extent)
    smeared = ModelEvaluator(model.with_values(vals), data, smearing=True)
    r = smeared.residuals(vals)
    dchi2 = float(r @ r) - float(chi2_plain)
    on = bool(abs(dchi2) >= SMEARING_DCHI2)
    reason = (f"R = λ/Δλ = {R:.3g}, extent {extent:.3g} mas, up to {cycles:.2g} cycles of phase across a "
              f"channel; modelling it changes χ² by {dchi2:+.3g} ({'≥' if on else '<'} {SMEARING_DCHI2:g})")
    return SmearingChoice(on, "auto", reason, R, cycles, dchi2)


class ModelEvaluator:
    """Model observables and residuals for one (model, data) pair, on the array namespace ``xp``
    (numpy by default; the fitter runs on the host)."""

    def __init__(self, model: Model, data: FitData, xp=None, smearing: bool | None = None):
        from ..backend import get_xp

        self.model = model
        self.data = data
        self.xp = xp or get_xp("numpy")
        option = model.options.get("bandwidth_smearing")
        # "auto" is decided by the fitter (decide_smearing); an evaluator is either smeared or not
        self.smearing = bool(option is True if smearing is None else smearing)
        self.ref_wave = reference_wavelength(model, data)
        u, v, w, b = data.freq_u, data.freq_v, data.freq_wave, data.freq_band
        if self.smearing:
            if not np.any(b > 0):
                raise DataError("bandwidth smearing asked for but the data have no EFF_BAND")
            n = model.options.get("n_smear")
            n = auto_n_smear(model, data) if n in (None, "auto") else max(int(n), 1)
            self.n_smear = n
            # midpoints of n equal slices of the channel, uniform in wavenumber σ = 1/λ
            frac = (np.arange(n) + 0.5) / n - 0.5
            sigma = (1.0 + (b / w)[:, None] * frac[None, :]) / w[:, None]
            scale = w[:, None] * sigma
            U, V, W = u[:, None] * scale, v[:, None] * scale, 1.0 / sigma
        else:
            self.n_smear = 1
            U, V, W = u[:, None], v[:, None], w[:, None]
        xp = self.xp
        self.U, self.V, self.W = xp.asarray(U), xp.asarray(V), xp.asarray(W)
        self.shape = U.shape
        self._images = {}
        for comp in model.components:
            if comp.type == "image":
                from ..image.transform import dft

                img, pix = load_image_component(comp, model.base_dir)
                vis = dft(xp.asarray(img), pix, xp.reshape(self.U, (-1,)), xp.reshape(self.V, (-1,)), xp)
                self._images[comp.name] = xp.reshape(vis, self.shape)
        self.flux_wave = {b.name: xp.asarray(b.wavelength) for b in data.blocks if b.name == "flux"}

    # -- the model ----------------------------------------------------------------------------
    def visibility(self, vals: dict):
        """Total normalised complex visibility at the unique frequencies, shape (F, S)."""
        xp = self.xp
        num = 0.0
        den = 0.0
        for comp in self.model.components:
            flux = component_flux(comp, vals, self.W, self.ref_wave, xp)
            den = den + flux
            if comp.type == "background":
                continue
            vis = component_shape(comp, vals, self.U, self.V, xp, self._images.get(comp.name))
            x, y = vals[f"{comp.name}.x"], vals[f"{comp.name}.y"]
            if x != 0.0 or y != 0.0:
                vis = vis * analytic.shift_phasor(self.U, self.V, x * MAS, y * MAS, xp)
            num = num + flux * vis
        if isinstance(den, float) and den <= 0:
            raise DataError("the model's total flux is not positive")
        return num / den

    def total_flux(self, vals: dict, wave):
        xp = self.xp
        tot = 0.0
        for comp in self.model.components:
            tot = tot + component_flux(comp, vals, wave, self.ref_wave, xp)
        return tot + 0.0 * wave

    def observables(self, vals: dict) -> list:
        """Model values per block, in the data's units (V², |V|, rad, |B|, rad, flux shape)."""
        vis = self.visibility(vals)
        out = []
        for b in self.data.blocks:
            out.append(self._block_model(b, vis, vals))
        return out

    def _pick(self, vis, idx, conj):
        xp = self.xp
        sel = xp.take(vis, xp.asarray(idx), axis=0)
        return xp.where(xp.asarray(conj)[:, None], xp.conj(sel), sel)

    def _block_model(self, b, vis, vals):
        xp = self.xp
        if b.name in ("v2", "visamp", "visphi"):
            vb = self._pick(vis, b.freq[:, 0], b.conj[:, 0])
            if b.name == "v2":
                return xp.mean(xp.real(vb) ** 2 + xp.imag(vb) ** 2, axis=1)
            vm = xp.mean(vb, axis=1)
            if b.name == "visamp":
                return xp.abs(vm)
            return xp.atan2(xp.imag(vm), xp.real(vm))
        if b.name in ("t3amp", "t3phi"):
            v1 = self._pick(vis, b.freq[:, 0], b.conj[:, 0])
            v2 = self._pick(vis, b.freq[:, 1], b.conj[:, 1])
            v3 = self._pick(vis, b.freq[:, 2], b.conj[:, 2])
            bis = xp.mean(v1 * v2 * xp.conj(v3), axis=1)
            if b.name == "t3amp":
                return xp.abs(bis)
            return xp.atan2(xp.imag(bis), xp.real(bis))
        if b.name == "flux":
            return self.total_flux(vals, self.flux_wave["flux"])
        raise DataError(f"unknown observable {b.name}")  # pragma: no cover

    # -- residuals ------------------------------------------------------------------------------
    def residuals(self, vals: dict) -> np.ndarray:
        """Normalised residuals (data − model)/σ of every block, concatenated, whitened where
        OI_CORR applies. Host numpy array."""
        from ..backend import to_numpy

        parts = []
        for b, m in zip(self.data.blocks, self.observables(vals)):
            parts.append(block_residual(b, to_numpy(m)))
        r = np.concatenate(parts)
        for sel, w in self.data.corr:
            r[sel] = w @ r[sel]
        return r


def _group_mean(groups, values, weights):
    """Weighted mean of ``values`` per group, broadcast back to every point."""
    uniq, inv = np.unique(groups, return_inverse=True)
    num = np.bincount(inv, weights=values * weights, minlength=uniq.size)
    den = np.bincount(inv, weights=weights, minlength=uniq.size)
    return (num / den)[inv]


def block_residual(b, model: np.ndarray) -> np.ndarray:
    """(data − model)/σ for one block (host arrays), with the per-observable rules of
    :mod:`oiflow.fit.data`."""
    if b.name == "t3phi":
        return wrap_phase(b.value - model, np) / b.error
    if b.name == "visphi":
        d = wrap_phase(b.value - model, np)
        w = 1.0 / b.error**2
        return (d - _group_mean(b.group, d, w)) / b.error
    if b.name == "flux":
        w = 1.0 / b.error**2
        uniq, inv = np.unique(b.group, return_inverse=True)
        num = np.bincount(inv, weights=b.value * model * w)
        den = np.bincount(inv, weights=model * model * w)
        scale = (num / np.where(den > 0, den, 1.0))[inv]
        return (b.value - scale * model) / b.error
    return (b.value - model) / b.error
