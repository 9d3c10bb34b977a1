"""Observables from per-frame coherent fluxes: debiased V², bispectrum closure phases and
T3AMP, photometry, coherent VISAMP/VISPHI; frame selection; bootstrap errors (P2VM.md §3–6).

Per baseline ij and channel, over the selected frames t::

    V²_ij   = Σ_t (|C_ij|² − σ²_R − σ²_I) / Σ_t F_i F_j          (debiased; not clipped)
    B_ijk   = Σ_t C_ij C_jk conj(C_ik),  T3PHI = arg B,  T3AMP = |B| / Σ_t F_i F_j F_k
    VISAMP  = |Σ_t C_ij| / Σ_t √(F_i F_j),  VISPHI = arg Σ_t C_ij   (coherent: needs fringe tracking)

Errors: the frames are cut into at most 100 segments of consecutive frames; the per-segment
sums are resampled with replacement ``nboot`` times (realisation 0 = all segments, which gives
the value) and the error is the standard deviation over the resamples (circular for phases).
Deterministic under ``seed``. A baseline (triangle) with fewer than ``min_frames`` selected
frames is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..observables import baselines, bispectrum, triangle_baselines, wrap_phase
from .p2vm import CoherentFluxes

N_TEL = 4


@dataclass
class Observables:
    vis2: np.ndarray  # (6, C)
    vis2_err: np.ndarray
    vis2_flag: np.ndarray  # (6, C) bool
    t3phi: np.ndarray  # (4, C) rad
    t3phi_err: np.ndarray
    t3amp: np.ndarray
    t3amp_err: np.ndarray
    t3_flag: np.ndarray
    flux: np.ndarray  # (4, C) mean photometric flux per frame
    flux_err: np.ndarray
    visamp: np.ndarray  # (6, C) coherent estimator
    visphi: np.ndarray  # (6, C) rad
    n_frames: int
    n_used: np.ndarray  # (6,) frames kept per baseline
    snr: np.ndarray  # (T, 6) fringe SNR of each frame


def fringe_snr(cf: CoherentFluxes) -> np.ndarray:
    """Broad-band fringe SNR of each frame and baseline: √Σ_c|C|² / √Σ_c(σ²_R + σ²_I)  → (T, 6)."""
    power = np.sum(np.abs(cf.coherent) ** 2, axis=2)
    noise = np.sum(cf.var_re + cf.var_im, axis=2)
    return np.sqrt(power / np.maximum(noise, 1e-300))


def select_frames(snr: np.ndarray, min_snr: float = 0.0, keep_fraction: float = 1.0) -> np.ndarray:
    """Boolean mask (T, 6): frames with SNR ≥ ``min_snr``, then the best ``keep_fraction`` of
    each baseline."""
    keep = snr >= min_snr
    if keep_fraction < 1.0:
        n = snr.shape[0]
        nkeep = max(int(np.ceil(keep_fraction * n)), 1)
        thresh = -np.sort(-snr, axis=0)[nkeep - 1]  # (6,)
        keep &= snr >= thresh[None, :]
    return keep


def _segments(n_frames: int, max_segments: int = 100) -> np.ndarray:
    """Start index of each segment of consecutive frames (≈ equal sizes, at most max_segments)."""
    nseg = max(min(n_frames, max_segments), 1)
    return np.unique((np.arange(nseg) * n_frames) // nseg)


def _bootstrap_weights(nseg: int, nboot: int, rng: np.random.Generator) -> np.ndarray:
    """(nboot, nseg) multiplicities; row 0 = all ones (the unresampled estimate)."""
    w = np.ones((max(nboot, 1), nseg))
    if nboot > 1:
        w[1:] = rng.multinomial(nseg, np.full(nseg, 1.0 / nseg), size=nboot - 1)
    return w


def _boot_sums(per_frame: np.ndarray, starts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Sum per segment, then per bootstrap realisation: (T, ...) → (nboot, ...).

    The weighted sum is numpy's own loop (einsum without ``optimize``), not a BLAS matrix product:
    OpenBLAS splits a product differently over 2 threads than over 1 or 64, which changes the
    error bars in their last bits, so the products would depend on the machine's core count
    (and differ between a laptop, a Dask worker and the worker image)."""
    seg = np.add.reduceat(per_frame, starts, axis=0)
    flat = seg.reshape(seg.shape[0], -1)
    return np.einsum("bs,sf->bf", weights, flat, optimize=False).reshape((weights.shape[0],) + seg.shape[1:])


def _spread(values: np.ndarray) -> np.ndarray:
    """Standard deviation over bootstrap realisations 1.. (axis 0)."""
    if values.shape[0] < 3:
        return np.full(values.shape[1:], np.nan)
    return np.std(values[1:], axis=0, ddof=1)


def _phase_spread(phases: np.ndarray) -> np.ndarray:
    if phases.shape[0] < 3:
        return np.full(phases.shape[1:], np.nan)
    d = wrap_phase(phases[1:] - phases[0], np)
    return np.sqrt(np.sum(d**2, axis=0) / (d.shape[0] - 1))


def compute_observables(cf: CoherentFluxes, *, nboot: int = 50, seed: int = 1, min_snr: float = 0.0,
                        keep_fraction: float = 1.0, debias: bool = True, min_frames: int = 5,
                        max_segments: int = 100) -> Observables:
    """All L1 observables of one exposure from its per-frame coherent fluxes."""
    rng = np.random.default_rng(seed)
    nt, _, nc = cf.coherent.shape
    bl = baselines(N_TEL)
    ii = np.array([i for i, _ in bl])
    jj = np.array([j for _, j in bl])
    tb = np.array(triangle_baselines(N_TEL))
    snr = fringe_snr(cf)
    keep = select_frames(snr, min_snr, keep_fraction)  # (T, 6)
    kb = keep[:, :, None].astype(float)
    kt = (keep[:, tb[:, 0]] & keep[:, tb[:, 1]] & keep[:, tb[:, 2]])[:, :, None].astype(float)  # (T, 4, 1)

    f = cf.flux
    c = cf.coherent
    power = np.abs(c) ** 2 - (cf.var_re + cf.var_im if debias else 0.0)
    f1f2 = f[:, ii] * f[:, jj]
    bis = bispectrum(c[:, tb[:, 0]], c[:, tb[:, 1]], c[:, tb[:, 2]], np)
    tel = np.array([(bl[a][0], bl[a][1], bl[b][1]) for a, b, _ in tb])  # (i, j, k) of each triangle
    f123 = f[:, tel[:, 0]] * f[:, tel[:, 1]] * f[:, tel[:, 2]]
    sqf = np.sqrt(np.clip(f1f2, 0.0, None))

    starts = _segments(nt, max_segments)
    weights = _bootstrap_weights(starts.size, nboot, rng)
    stack = np.concatenate([
        power * kb, f1f2 * kb, bis.real * kt, bis.imag * kt, f123 * kt, c.real * kb, c.imag * kb, sqf * kb, f,
    ], axis=1)  # (T, 6+6+4+4+4+6+6+6+4, C)
    boot = _boot_sums(stack, starts, weights)
    o = np.cumsum([0, 6, 6, 4, 4, 4, 6, 6, 6, 4])
    P, F12, BR, BI, F123, CR, CI, SQF, FL = (boot[:, o[k]:o[k + 1]] for k in range(9))
    with np.errstate(divide="ignore", invalid="ignore"):
        v2 = P / F12
        t3amp = np.hypot(BR, BI) / F123
        visamp = np.hypot(CR[0], CI[0]) / SQF[0]
    t3phi = np.arctan2(BI, BR)
    visphi = np.arctan2(CI[0], CR[0])
    flux = FL / nt

    n_used = keep.sum(axis=0)
    n_used_t3 = kt[:, :, 0].sum(axis=0)
    vflag = np.broadcast_to((n_used < min_frames)[:, None], (6, nc)).copy() | ~np.isfinite(v2[0])
    tflag = np.broadcast_to((n_used_t3 < min_frames)[:, None], (4, nc)).copy() | ~np.isfinite(t3phi[0])
    return Observables(
        vis2=v2[0], vis2_err=_spread(v2), vis2_flag=vflag,
        t3phi=t3phi[0], t3phi_err=_phase_spread(t3phi), t3amp=t3amp[0], t3amp_err=_spread(t3amp), t3_flag=tflag,
        flux=flux[0], flux_err=_spread(flux), visamp=visamp, visphi=visphi,
        n_frames=nt, n_used=n_used, snr=snr,
    )
