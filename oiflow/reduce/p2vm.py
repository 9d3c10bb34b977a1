"""The pixel-to-visibility matrix: measured from calibration exposures, inverted by SVD, and
applied to science frames (P2VM.md §1–2).

V2PM per channel (outputs × 16) has the columns [T_{p,1..4}, c cos ψ (6 baselines),
−c sin ψ (6)], so that I = V2PM · [F_1..F_4, Re C_ij, Im C_ij]:

* T_{p,i} (FLAT, beam i alone): mean dark-subtracted signal of output p normalised by its sum
  over outputs (so F_i is the total flux of telescope i over all outputs);
* c_{p,ij}, ψ_{p,ij} (P2VM, beams i and j, internal OPD scanned): per output and channel,
  linear least squares I_p(t) = a + b·sin(φ)·env + d·cos(φ)·env with φ = 2π·OPD/λ and
  env = sinc(OPD·Δλ/λ²); then c = √(b² + d²)/√(F_i F_j) and ψ = atan2(−b, d), where F_i, F_j
  are solved from the constant terms a_p = T_{p,i}F_i + T_{p,j}F_j.

P2VM = pinv(V2PM) (Moore–Penrose, SVD). Science frames: X̂ = P2VM · (I − dark), with variances
Var X̂_k = Σ_p P2VM_{k,p}² σ_p², σ_p² = dark variance + gain·max(I_p, 0), and the per-frame
χ² = Σ_p (V2PM·X̂ − I)_p² / σ_p² / (N_p − 16).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ReductionError
from ..observables import baselines
from .plan import N_TEL, CalibrationSet
from .raw_reader import RawExposure, read_raw

N_UNKNOWNS = N_TEL + 2 * 6


@dataclass
class P2VMCalibration:
    setup: str
    wavelength: np.ndarray  # (C,)
    bandwidth: np.ndarray  # (C,)
    dark: np.ndarray  # (P, C) mean dark (ADU)
    dark_var: np.ndarray  # (P, C) variance of a dark pixel (ADU²): read + dark shot noise
    v2pm: np.ndarray  # (C, P, 16)
    p2vm: np.ndarray  # (C, 16, P)
    gain: float = 1.0  # e-/ADU
    files: list[Path] = field(default_factory=list)
    condition: np.ndarray | None = None  # (C,) condition number of the V2PM

    @property
    def n_outputs(self) -> int:
        return self.v2pm.shape[1]


def _mean_dark(exp: RawExposure):
    if exp.frames.shape[0] < 2:
        raise ReductionError(f"{exp.info.path.name}: a DARK needs at least 2 frames")
    return exp.frames.mean(axis=0), exp.frames.var(axis=0, ddof=1)


def transmission_from_flats(flats: dict[int, RawExposure], dark: np.ndarray) -> np.ndarray:
    """T (P, 4, C): mean dark-subtracted signal of each one-beam exposure, normalised per beam."""
    cols = []
    for beam in range(N_TEL):
        m = flats[beam].frames.mean(axis=0) - dark  # (P, C)
        total = m.sum(axis=0)
        if np.any(total <= 0):
            raise ReductionError(f"{flats[beam].info.path.name}: FLAT of beam {beam + 1} has no flux above the dark")
        cols.append(m / total)
    return np.stack(cols, axis=1)


def coherence_from_scan(scan: RawExposure, pair: tuple[int, int], trans: np.ndarray, dark: np.ndarray):
    """(c, ψ) of every output (P, C) for baseline ``pair`` from a two-beam OPD scan."""
    i, j = pair
    sig = scan.frames - dark  # (T, P, C)
    opd = scan.opd  # (T,)
    if np.ptp(opd) <= 0:
        raise ReductionError(f"{scan.info.path.name}: P2VM exposure without OPD modulation")
    lam, dlam = scan.wavelength, scan.bandwidth
    phi = 2.0 * np.pi * opd[None, :] / lam[:, None]  # (C, T)
    env = np.sinc(opd[None, :] * dlam[:, None] / lam[:, None] ** 2)
    design = np.stack([np.ones_like(phi), np.sin(phi) * env, np.cos(phi) * env], axis=2)  # (C, T, 3)
    coef = np.einsum("cjt,tpc->cjp", np.linalg.pinv(design), sig, optimize=True)  # (C, 3, P)
    a, b, d = coef[:, 0], coef[:, 1], coef[:, 2]  # (C, P)
    # photometry of the two beams from the constant terms
    tij = np.stack([trans[:, i, :].T, trans[:, j, :].T], axis=2)  # (C, P, 2)
    fluxes = np.einsum("cqp,cp->cq", np.linalg.pinv(tij), a)  # (C, 2)
    if np.any(fluxes <= 0):
        raise ReductionError(f"{scan.info.path.name}: P2VM scan of beams {i + 1},{j + 1} has no flux above the dark")
    norm = np.sqrt(fluxes[:, 0] * fluxes[:, 1])[:, None]
    coh = np.hypot(b, d) / norm
    psi = np.arctan2(-b, d)
    return coh.T, psi.T  # (P, C)


def build_v2pm(trans: np.ndarray, coh: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """(C, P, 16) from T (P, 4, C), c (P, 6, C), ψ (P, 6, C)."""
    t = np.transpose(trans, (2, 0, 1))
    c = np.transpose(coh, (2, 0, 1))
    s = np.transpose(psi, (2, 0, 1))
    return np.concatenate([t, c * np.cos(s), -c * np.sin(s)], axis=2)


def calibrate_p2vm(cal: CalibrationSet, mjd: float | None = None) -> P2VMCalibration:
    """Measure the V2PM of a setup from its calibration files (nearest in time) and invert it."""
    chosen = cal.select(mjd if mjd is not None else 0.0)
    dark = read_raw(chosen["dark"].path, chosen["dark"])
    flats = {b: read_raw(r.path, r) for b, r in chosen["flats"].items()}
    scans = {p: read_raw(r.path, r) for p, r in chosen["p2vm"].items()}
    return p2vm_from_exposures(cal.setup, dark, flats, scans)


def p2vm_from_exposures(setup: str, dark_exp: RawExposure, flats: dict[int, RawExposure],
                        scans: dict[tuple[int, int], RawExposure]) -> P2VMCalibration:
    """The P2VM calibration from loaded DARK, FLAT (per beam) and P2VM (per baseline) exposures."""
    dark, dark_var = _mean_dark(dark_exp)
    shapes = {e.info.path.name: e.frames.shape[1:] for e in [dark_exp, *flats.values(), *scans.values()]}
    if len(set(shapes.values())) != 1:
        raise ReductionError(f"setup {setup}: calibration files disagree on (outputs, channels): {shapes}")
    nout = dark.shape[0]
    if nout < N_UNKNOWNS:
        raise ReductionError(f"setup {setup}: {nout} outputs cannot determine {N_UNKNOWNS} unknowns")
    trans = transmission_from_flats(flats, dark)
    nc = dark.shape[1]
    coh = np.zeros((nout, 6, nc))
    psi = np.zeros((nout, 6, nc))
    for b, pair in enumerate(baselines(N_TEL)):
        coh[:, b], psi[:, b] = coherence_from_scan(scans[pair], pair, trans, dark)
    v2pm = build_v2pm(trans, coh, psi)
    sv = np.linalg.svd(v2pm, compute_uv=False)
    cond = sv[:, 0] / np.maximum(sv[:, -1], 1e-300)
    if np.any(cond > 1e8):
        raise ReductionError(f"setup {setup}: the V2PM is singular (condition number {cond.max():.3g}); "
                             "check the FLAT and P2VM files")
    files = [dark_exp.info.path, *(e.info.path for e in flats.values()), *(e.info.path for e in scans.values())]
    return P2VMCalibration(setup, dark_exp.wavelength, dark_exp.bandwidth, dark, dark_var, v2pm,
                           np.linalg.pinv(v2pm), 1.0, files, cond)


@dataclass
class CoherentFluxes:
    """Per-frame unknowns of a science exposure (T frames, C channels)."""

    flux: np.ndarray  # (T, 4, C) photometric flux F_i
    flux_var: np.ndarray  # (T, 4, C)
    coherent: np.ndarray  # (T, 6, C) complex C_ij
    var_re: np.ndarray  # (T, 6, C)
    var_im: np.ndarray  # (T, 6, C)
    chi2: np.ndarray  # (T, C) reduced χ² of the V2PM fit of each frame


def invert_frames(frames: np.ndarray, cal: P2VMCalibration) -> CoherentFluxes:
    """Apply the P2VM to raw frames (T, P, C) (vectorised over frames and channels)."""
    if frames.shape[1:] != cal.dark.shape:
        raise ReductionError(f"frames of shape {frames.shape[1:]} (outputs, channels) do not match the "
                             f"calibration {cal.dark.shape}")
    sig = frames - cal.dark
    var = np.maximum(cal.dark_var + cal.gain * np.clip(sig, 0.0, None), 1e-12)
    x = np.einsum("ckp,tpc->tkc", cal.p2vm, sig, optimize=True)
    xvar = np.einsum("ckp,tpc->tkc", cal.p2vm**2, var, optimize=True)
    model = np.einsum("cpk,tkc->tpc", cal.v2pm, x, optimize=True)
    dof = max(cal.n_outputs - N_UNKNOWNS, 1)
    chi2 = np.sum((model - sig) ** 2 / var, axis=1) / dof
    n = N_TEL
    return CoherentFluxes(
        flux=x[:, :n], flux_var=xvar[:, :n],
        coherent=x[:, n:n + 6] + 1j * x[:, n + 6:n + 12],
        var_re=xvar[:, n:n + 6], var_im=xvar[:, n + 6:n + 12], chi2=chi2,
    )
