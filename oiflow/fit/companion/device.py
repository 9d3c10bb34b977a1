"""The data of a companion search as arrays: :class:`BinaryContext` (host arrays, picklable for
Dask workers) and its copy on an array namespace (:class:`_Device`, numpy, cupy or any array-API
library), with the single-precision view the Jacobian uses (:class:`_Float32`)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import ConfigError, DataError
from ...units import MAS
from ..data import FitData

log = logging.getLogger(__name__)

#: the observables the vectorised binary model computes
SUPPORTED = ("v2", "t3phi", "t3amp")


@dataclass
class BinaryContext:
    """Host arrays describing the data for the vectorised binary model (picklable for Dask)."""

    U: np.ndarray  # (F,) cycles/rad at the channel's central wavelength
    V: np.ndarray
    eps: np.ndarray  # (F,) fractional bandwidth Δλ/λ (0: no smearing)
    v2_idx: np.ndarray | None
    v2_val: np.ndarray | None
    v2_err: np.ndarray | None
    t3_idx: np.ndarray | None  # (nt, 3)
    t3_conj: np.ndarray | None
    cp_val: np.ndarray | None
    cp_err: np.ndarray | None
    t3a_val: np.ndarray | None
    t3a_err: np.ndarray | None
    n_data: int

    @classmethod
    def from_data(cls, data: FitData, smearing: bool) -> "BinaryContext":
        unsupported = [b.name for b in data.blocks if b.name not in SUPPORTED]
        if unsupported:
            raise ConfigError(f"the companion search uses {', '.join(SUPPORTED)}; not {', '.join(unsupported)}")
        eps = data.freq_band / data.freq_wave if smearing else np.zeros_like(data.freq_wave)
        kw: dict[str, Any] = dict(v2_idx=None, v2_val=None, v2_err=None, t3_idx=None, t3_conj=None, cp_val=None,
                                  cp_err=None, t3a_val=None, t3a_err=None)
        for b in data.blocks:
            if b.name == "v2":
                kw.update(v2_idx=b.freq[:, 0], v2_val=b.value, v2_err=b.error)
            else:
                if kw["t3_idx"] is not None and not np.array_equal(kw["t3_idx"], b.freq):
                    raise DataError("t3phi and t3amp must come from the same triangles for the companion search")
                kw.update(t3_idx=b.freq, t3_conj=b.conj)
                if b.name == "t3phi":
                    kw.update(cp_val=b.value, cp_err=b.error)
                else:
                    kw.update(t3a_val=b.value, t3a_err=b.error)
        if data.corr:
            log.warning("OI_CORR correlations are ignored by the vectorised companion search")
        return cls(U=data.freq_u, V=data.freq_v, eps=np.nan_to_num(eps), n_data=data.n_data, **kw)


class _Device:
    """The context moved to the namespace ``xp`` (once per chunk of nodes).

    The vectorised model works on frequency-major arrays (F, n) — one row per frequency, the n
    nodes contiguous — so that picking the frequencies of a V² or a closure triangle is a copy
    of whole rows, and per-node parameters broadcast along the contiguous axis."""

    def __init__(self, ctx: BinaryContext, xp):
        self.xp = xp
        a = lambda x, dt=None: None if x is None else xp.asarray(x) if dt is None else xp.asarray(x, dtype=dt)  # noqa
        col = lambda x: None if x is None else xp.asarray(np.asarray(x, float)[:, None])  # noqa: E731
        self.U, self.V, self.half_eps = col(ctx.U), col(ctx.V), col(0.5 * ctx.eps)
        self.zfac = col((math.pi * MAS) * np.sqrt(ctx.U * ctx.U + ctx.V * ctx.V))  # z = zfac · d
        self.v2_idx = a(ctx.v2_idx, xp.int64)
        self.v2_val, self.v2_err = col(ctx.v2_val), col(ctx.v2_err)
        self.v2_u = self.v2_v = None
        if ctx.v2_idx is not None:
            self.v2_u, self.v2_v = col(ctx.U[ctx.v2_idx]), col(ctx.V[ctx.v2_idx])
        self.t3_idx = None if ctx.t3_idx is None else [a(ctx.t3_idx[:, k], xp.int64) for k in range(3)]
        self.t3_sign = self.t3_u = self.t3_v = None
        if ctx.t3_idx is not None:
            # sign of the imaginary parts (−1 where the stored frequency is the conjugate)
            sign = np.where(ctx.t3_conj, -1.0, 1.0)
            self.t3_sign = [col(sign[:, k]) if ctx.t3_conj[:, k].any() else None for k in range(3)]
            # stored (sign-folded) frequencies: dW_k/dx = conj?(G_stored) · 2π u_stored
            self.t3_u = [col(ctx.U[ctx.t3_idx[:, k]]) for k in range(3)]
            self.t3_v = [col(ctx.V[ctx.t3_idx[:, k]]) for k in range(3)]
        self.cp_val, self.cp_err = col(ctx.cp_val), col(ctx.cp_err)
        self.t3a_val, self.t3a_err = col(ctx.t3a_val), col(ctx.t3a_err)
        self.f32 = _Float32(self)


class _Float32:
    """The frequencies, signs and errors of a :class:`_Device` in single precision: the Jacobian
    only steers the Levenberg–Marquardt steps (residuals and χ² stay in double precision), and
    single precision halves the cost of its many array passes."""

    def __init__(self, dev: _Device):
        xp = dev.xp
        c = lambda x: None if x is None else xp.astype(x, xp.float32)  # noqa: E731
        self.xp = xp
        self.U, self.V = c(dev.U), c(dev.V)
        self.v2_u, self.v2_v = c(dev.v2_u), c(dev.v2_v)
        self.v2_idx, self.t3_idx, self.cp_val, self.t3a_val = dev.v2_idx, dev.t3_idx, dev.cp_val, dev.t3a_val
        self.v2_err, self.cp_err, self.t3a_err = c(dev.v2_err), c(dev.cp_err), c(dev.t3a_err)
        self.t3_sign = None if dev.t3_sign is None else [c(x) for x in dev.t3_sign]
        self.t3_u = None if dev.t3_u is None else [c(x) for x in dev.t3_u]
        self.t3_v = None if dev.t3_v is None else [c(x) for x in dev.t3_v]
