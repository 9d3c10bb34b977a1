"""Sky models for the simulator: complex visibilities per baseline and channel.

A sky model is described by a small mapping (YAML/JSON friendly, sizes in mas, angles in
degrees — edge units) and turned into a visibility function ``vis(u, v, wavelength)`` with u, v
in cycles/radian. Analytic components call :mod:`oiflow.fit.analytic` (the one home of
analytic visibilities) and images call :func:`oiflow.image.transform.dft`; this module only
composes them. Examples::

    {"type": "point"}
    {"type": "uniform_disk", "diameter_mas": 1.8}
    {"type": "gaussian", "fwhm_mas": 2.0}
    {"type": "ring", "diameter_mas": 3.0}
    {"type": "binary", "flux_ratio": 0.25, "separation_mas": 6.0, "pa_deg": 60.0,
     "diameter1_mas": 0.5, "diameter2_mas": 0.0}
    {"type": "composite", "components": [{"type": "uniform_disk", "diameter_mas": 1.0, "flux": 1.0},
                                         {"type": "point", "flux": 0.1, "x_mas": 3.0, "y_mas": -1.0}]}
    {"type": "image", "file": "img.fits"}            # FITS image, CDELT1 < 0 (East left), deg
    {"type": "image", "array": [[...]], "pixel_size_mas": 0.2}

Binary position angle is from North through East; the secondary sits at
(x, y) = ρ (sin PA, cos PA) (x East, y North).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ..errors import ConfigError
from ..fit import analytic
from ..image.transform import dft
from ..units import DEG, MAS

VisFunc = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

_XP = np


def _num(spec: dict, key: str, default=None) -> float:
    val = spec.get(key, default)
    if val is None:
        raise ConfigError(f"sky model {spec.get('type')!r}: missing {key!r}")
    try:
        return float(val)
    except (TypeError, ValueError):
        raise ConfigError(f"sky model {spec.get('type')!r}: {key} must be a number, got {val!r}") from None


def _flat(fn):
    """Evaluate ``fn(u, v)`` on flat arrays and restore the input shape."""

    def wrapped(u, v, wave=None):
        u = np.asarray(u, float)
        v = np.asarray(v, float)
        shape = np.broadcast_shapes(u.shape, v.shape)
        uf = np.broadcast_to(u, shape).ravel()
        vf = np.broadcast_to(v, shape).ravel()
        return np.asarray(fn(uf, vf), complex).reshape(shape)

    return wrapped


def _image_visfunc(spec: dict) -> VisFunc:
    if "file" in spec:
        from astropy.io import fits

        with fits.open(spec["file"]) as hdul:
            img = np.asarray(hdul[0].data, float)
            hdr = hdul[0].header
        while img.ndim > 2:
            img = img[0]
        pix = abs(float(hdr.get("CDELT1", 0.0))) * DEG
        if pix <= 0:
            pix = _num(spec, "pixel_size_mas") * MAS
        if float(hdr.get("CDELT1", -1.0)) > 0:
            img = img[:, ::-1]  # bring East to the left
    else:
        img = np.asarray(spec.get("array"), float)
        pix = _num(spec, "pixel_size_mas") * MAS
    if img.ndim != 2 or img.size == 0:
        raise ConfigError("image sky model: need a 2-D image")
    total = float(img.sum())
    if not total > 0:
        raise ConfigError("image sky model: the image has no positive flux")
    img = img / total
    return _flat(lambda u, v: dft(img, pix, u, v, _XP))


def component_visfunc(spec: dict[str, Any]) -> VisFunc:
    """Visibility function (normalised to 1 at zero frequency) of one sky-model description."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ConfigError(f"sky model must be a mapping with a 'type', got {spec!r}")
    kind = str(spec["type"]).lower()
    if kind == "point":
        base = _flat(lambda u, v: analytic.point(u, v, _XP))
    elif kind in ("uniform_disk", "ud", "disk"):
        d = _num(spec, "diameter_mas") * MAS
        base = _flat(lambda u, v: analytic.uniform_disk(u, v, d, _XP))
    elif kind == "gaussian":
        f = _num(spec, "fwhm_mas") * MAS
        base = _flat(lambda u, v: analytic.gaussian(u, v, f, _XP))
    elif kind in ("ring", "thin_ring"):
        d = _num(spec, "diameter_mas") * MAS
        base = _flat(lambda u, v: analytic.thin_ring(u, v, d, _XP))
    elif kind == "binary":
        ratio = _num(spec, "flux_ratio")
        sep = _num(spec, "separation_mas") * MAS
        pa = _num(spec, "pa_deg") * DEG
        d1 = _num(spec, "diameter1_mas", 0.0) * MAS
        d2 = _num(spec, "diameter2_mas", 0.0) * MAS
        x, y = sep * math.sin(pa), sep * math.cos(pa)
        base = _flat(lambda u, v: analytic.binary(u, v, ratio, x, y, d1, d2, _XP))
    elif kind == "composite":
        comps = spec.get("components") or []
        if not comps:
            raise ConfigError("composite sky model: no components")
        funcs = [component_visfunc(c) for c in comps]
        fluxes = [float(c.get("flux", 1.0)) for c in comps]
        offsets = [(float(c.get("x_mas", 0.0)) * MAS, float(c.get("y_mas", 0.0)) * MAS) for c in comps]
        total = sum(fluxes)
        if not total > 0:
            raise ConfigError("composite sky model: total flux must be positive")

        def base(u, v, wave=None):
            u = np.asarray(u, float)
            v = np.asarray(v, float)
            out = np.zeros(np.broadcast_shapes(u.shape, v.shape), complex)
            for fn, fl, (x, y) in zip(funcs, fluxes, offsets):
                out = out + fl * fn(u, v, wave) * analytic.shift_phasor(u, v, x, y, _XP)
            return out / total

        return base
    elif kind == "image":
        base = _image_visfunc(spec)
    else:
        raise ConfigError(f"unknown sky model type {spec['type']!r}; use point, uniform_disk, gaussian, ring, "
                          "binary, composite or image")
    return base


def sky_visfunc(spec: dict[str, Any]) -> VisFunc:
    """``vis(u, v, wavelength)`` (u, v in cycles/radian) of a sky-model description."""
    return component_visfunc(spec)


def model_visibilities(spec: dict, u_m, v_m, wavelength) -> np.ndarray:
    """Complex visibilities for baselines (u_m, v_m) in metres (shape (..., B)) at
    ``wavelength`` (C,) metres: returns (..., B, C)."""
    wave = np.asarray(wavelength, float)
    u = np.asarray(u_m, float)[..., None] / wave
    v = np.asarray(v_m, float)[..., None] / wave
    return sky_visfunc(spec)(u, v, np.broadcast_to(wave, u.shape))


def uniform_disk_diameter_mas(spec: dict) -> float | None:
    """The diameter of a uniform-disk (or point: 0) description, else None."""
    kind = str(spec.get("type", "")).lower()
    if kind in ("uniform_disk", "ud", "disk"):
        return float(spec["diameter_mas"])
    if kind == "point":
        return 0.0
    return None
