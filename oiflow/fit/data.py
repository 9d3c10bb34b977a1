"""The data a fit sees: chosen observables from OIFITS files, flattened, checked and indexed.

Observables (names used everywhere: config, CLI, JSON):

=========  =========================  ================================================
name       source                     residual
=========  =========================  ================================================
v2         OI_VIS2 VIS2DATA           (model − data)/σ
visamp     OI_VIS VISAMP              (|V| − data)/σ (VISAMP taken as a normalised |V|)
visphi     OI_VIS VISPHI              differential: wrap(data − model) minus its
                                      weighted mean over each row's channels
t3amp      OI_T3 T3AMP                (|B| − data)/σ
t3phi      OI_T3 T3PHI                wrap(data − model)/σ (closure phase on the circle)
flux       OI_FLUX FLUXDATA           (data − s·F_model(λ))/σ, s fitted per row (the
                                      spectrum's shape is fitted, not its scale)
=========  =========================  ================================================

Points that are flagged or not finite (value or error) are excluded and not counted;
an error bar ≤ 0 on a usable point is a :class:`~oiflow.errors.DataError` naming the rows, and a
damaged location (non-finite or absurd u, v or EFF_WAVE) an :class:`~oiflow.errors.OIFitsError`
naming file, table, column and rows (:func:`oiflow.oifits.views.check_usable_points`).
Every baseline of every observable is mapped onto one table of unique spatial frequencies
(V(−u) = conj V(u) for a real sky), so the model is evaluated once per unique point.
OI_CORR correlations (OIFITS 2) are used through a whitening matrix per correlation table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..oifits import read_oifits
from ..oifits.model import OIFits
from ..oifits.views import check_usable_points

#: observable name → (view kind, OIFITS table, value column, description)
OBSERVABLES = {
    "v2": ("vis2", "OI_VIS2", "VIS2DATA", "V²"),
    "visamp": ("vis", "OI_VIS", "VISAMP", "visibility amplitude"),
    "visphi": ("vis", "OI_VIS", "VISPHI", "differential visibility phase"),
    "t3amp": ("t3", "OI_T3", "T3AMP", "triple amplitude"),
    "t3phi": ("t3", "OI_T3", "T3PHI", "closure phase"),
    "flux": ("flux", "OI_FLUX", "FLUXDATA", "flux"),
}
ALIASES = {"vis2": "v2", "cp": "t3phi", "closure_phase": "t3phi", "t3": "t3phi", "dphi": "visphi",
           "vamp": "visamp", "|v|": "visamp", "fluxdata": "flux"}
ERROR_COLUMN = {"VIS2DATA": "VIS2ERR", "VISAMP": "VISAMPERR", "VISPHI": "VISPHIERR", "T3AMP": "T3AMPERR",
                "T3PHI": "T3PHIERR", "FLUXDATA": "FLUXERR"}
ANGLES = ("visphi", "t3phi")


def normalise_observables(observables) -> tuple[str, ...]:
    if isinstance(observables, str):
        observables = [o for o in observables.replace(";", ",").split(",") if o.strip()]
    out = []
    for o in observables:
        key = ALIASES.get(o.strip().lower(), o.strip().lower())
        if key not in OBSERVABLES:
            raise DataError(f"unknown observable {o!r}; choose from {', '.join(OBSERVABLES)}")
        if key not in out:
            out.append(key)
    if not out:
        raise DataError("no observable requested")
    return tuple(out)


@dataclass
class Block:
    """One observable's usable points."""

    name: str
    value: np.ndarray
    error: np.ndarray
    freq: np.ndarray  # (n, k) indices into FitData.freq_u/v/wave (k = 1, or 3 for t3)
    conj: np.ndarray  # (n, k) True where the baseline is the conjugate of the stored frequency
    wavelength: np.ndarray
    spatial_frequency: np.ndarray  # cycles/rad (longest baseline for triangles)
    mjd: np.ndarray
    file: np.ndarray  # index into FitData.files
    hdu: np.ndarray  # label of the table ("OI_VIS2#2")
    row: np.ndarray
    channel: np.ndarray
    group: np.ndarray  # row id (file, table, row) for differential phases / flux scales
    corr_index: np.ndarray | None = None  # 0-based index into its OI_CORR matrix, −1 when none
    corr_name: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.value.shape[0])

    def take(self, mask) -> "Block":
        kw = {}
        for k, v in self.__dict__.items():
            kw[k] = v[mask] if isinstance(v, np.ndarray) else v
        return Block(**kw)


@dataclass
class FitData:
    blocks: list[Block]
    freq_u: np.ndarray  # unique spatial frequencies, cycles/rad
    freq_v: np.ndarray
    freq_wave: np.ndarray  # their wavelength (m)
    freq_band: np.ndarray  # their bandwidth (m)
    files: list[str]
    corr: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (positions in residual, whitening W)
    targets: tuple[str, ...] = ()  # OI_TARGET names of the points used (sorted)

    @property
    def n_data(self) -> int:
        return int(sum(len(b) for b in self.blocks))

    @property
    def observables(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.blocks)

    def block(self, name: str) -> Block:
        for b in self.blocks:
            if b.name == name:
                return b
        raise KeyError(name)

    def observation_ids(self) -> np.ndarray:
        """One id per data point (in residual order): points of the same file and exposure
        (MJD within 10 s) share it. The bootstrap resamples these."""
        keys = np.concatenate([b.file.astype(float) * 1e6 + np.round(b.mjd * 8640.0) for b in self.blocks])
        _, ids = np.unique(keys, return_inverse=True)
        return ids


# -- building ----------------------------------------------------------------------------------
def _error_rows(bad, view, oi: OIFits, colname: str, path) -> str:
    msgs = []
    for ti in np.unique(view.table[bad]):
        sel = bad & (view.table == ti)
        rows = sorted(set(int(r) + 1 for r in view.row[sel]))
        shown = ", ".join(str(r) for r in rows[:12]) + (" …" if len(rows) > 12 else "")
        msgs.append(f"{path}: {oi.tables[ti].label} column {ERROR_COLUMN[colname]} rows {shown} (1-based)")
    return "; ".join(msgs)


def _freq_key(u, v, wave):
    """Canonical (sign-folded) integer keys for spatial frequencies: u, v rounded to 1 mm."""
    flip = (u < 0) | ((u == 0) & (v < 0))
    uu = np.where(flip, -u, u)
    vv = np.where(flip, -v, v)
    return np.round(uu * 1000).astype(np.int64), np.round(vv * 1000).astype(np.int64), wave, flip


class _FreqTable:
    """Collects baselines, then maps them all at once onto unique sign-folded frequencies."""

    def __init__(self):
        self.chunks: list[tuple] = []
        self.n = 0

    def add(self, u_m, v_m, wave, band):
        """Register baselines; returns provisional indices (resolved by :meth:`finish`) and flips."""
        ku, kv, w, flip = _freq_key(u_m, v_m, wave)
        self.chunks.append((ku, kv, np.asarray(w, float), np.asarray(band, float), u_m, v_m, flip))
        start = self.n
        self.n += u_m.shape[0]
        return np.arange(start, self.n), flip

    def finish(self):
        """(mapping provisional → unique index, u, v (cycles/rad), wavelength, bandwidth)."""
        ku, kv, w, b, u, v, flip = (np.concatenate([c[k] for c in self.chunks]) for k in range(7))
        keys = np.stack([ku, kv, w.view(np.int64), b.view(np.int64)], axis=1)
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        sgn = np.where(flip[first], -1.0, 1.0)
        return (inverse.reshape(-1), sgn * u[first] / w[first], sgn * v[first] / w[first], w[first], b[first])


def _read(f) -> tuple[OIFits, str]:
    if isinstance(f, OIFits):
        return f, f.path or "<in-memory OIFITS>"
    return read_oifits(f, warn=False), str(f)


def load_data(files, observables=("v2", "t3phi")) -> FitData:
    """Read ``files`` (paths or :class:`OIFits`) and assemble the requested observables."""
    if isinstance(files, (str, os.PathLike, OIFits)):
        files = [files]
    observables = normalise_observables(observables)
    ois = [_read(f) for f in files]
    if not ois:
        raise DataError("no input file")
    freqs = _FreqTable()
    parts: dict[str, list[dict]] = {o: [] for o in observables}
    contributed = np.zeros(len(ois), dtype=bool)
    targets: set[str] = set()
    for fi, (oi, path) in enumerate(ois):
        views = {}
        for obs in observables:
            kind, ext, col, desc = OBSERVABLES[obs]
            if kind not in views:
                views[kind] = oi.view(kind)
                check_usable_points(views[kind], oi)  # damaged (u, v, λ) on usable points: refused, named
            view = views[kind]
            if len(view) == 0:
                continue
            if obs in ("t3amp",):
                value, error = view.amp, view.amp_error
            elif obs == "visphi":
                value, error = view.phase, view.phase_error
            else:
                value, error = view.value, view.error
            if value is None:
                continue
            usable = ~view.flag & np.isfinite(value)
            bad = usable & ~(np.isfinite(error) & (error > 0))
            if bad.any():
                raise DataError(f"{int(bad.sum())} usable {desc} point(s) have a zero, negative or missing "
                                f"error bar: {_error_rows(bad, view, oi, col, path)}")
            if not usable.any():
                continue
            v = view.select(usable)
            contributed[fi] = True
            targets.update(str(t) for t in np.unique(v.target) if t)
            value, error = value[usable], error[usable]
            if kind == "t3":
                uvs = [(v.u, v.v), (v.u2, v.v2), (v.u + v.u2, v.v + v.v2)]  # ij, jk, ik
            elif kind == "flux":
                uvs = [(np.zeros(len(v)), np.zeros(len(v)))]
            else:
                uvs = [(v.u, v.v)]
            band = np.where(np.isfinite(v.bandwidth), v.bandwidth, 0.0)
            idx, flip = zip(*[freqs.add(np.asarray(a, float), np.asarray(b, float), v.wavelength, band) for a, b in uvs])
            # corr indices
            corr_index = np.full(len(v), -1, dtype=np.int64)
            corr_name = np.full(len(v), "", dtype=object)
            for ti in np.unique(v.table):
                table = oi.tables[ti]
                cname = table.corrname
                cidx = table.get(f"CORRINDX_{col}")
                if cname and cidx is not None and oi.corr_of(table) is not None:
                    sel = v.table == ti
                    base = np.asarray(cidx, dtype=np.int64).reshape(-1)[v.row[sel]]
                    corr_index[sel] = base - 1 + v.channel[sel]
                    corr_name[sel] = f"{fi}:{cname}"
            parts[obs].append(dict(
                value=value, error=error, freq=np.stack(idx, axis=1), conj=np.stack(flip, axis=1),
                wavelength=v.wavelength, spatial_frequency=v.spatial_frequency, mjd=v.mjd,
                file=np.full(len(v), fi), hdu=np.array([oi.tables[t].label for t in v.table], dtype=object),
                row=v.row, channel=v.channel, group=fi * 10**9 + v.table * 10**6 + v.row,
                corr_index=corr_index, corr_name=corr_name))
    names = [p for _, p in ois]
    for obs in observables:
        if not parts[obs]:
            kind, ext, col, desc = OBSERVABLES[obs]
            raise DataError(f"{desc} ({obs}) was requested but no input has usable {ext} {col} data: "
                            f"{', '.join(names)}")
    if not contributed.all():
        missing = [names[i] for i in np.flatnonzero(~contributed)]
        raise DataError(f"no usable data for {', '.join(observables)} in: {', '.join(missing)}")
    mapping, fu, fv, fw, fb = freqs.finish()
    blocks = []
    for obs in observables:
        merged = {k: np.concatenate([p[k] for p in parts[obs]]) for k in parts[obs][0]}
        merged["freq"] = mapping[merged["freq"]]
        blocks.append(Block(name=obs, **merged))
    data = FitData(blocks, fu, fv, fw, fb, names, targets=tuple(sorted(targets)))
    data.corr = _whitening(data, [oi for oi, _ in ois])
    return data


def _whitening(data: FitData, ois: list[OIFits]) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each OI_CORR matrix used: (positions in the residual vector, W = L⁻¹) with C = L Lᵀ."""
    pos = np.concatenate([b.corr_index for b in data.blocks])
    names = np.concatenate([b.corr_name for b in data.blocks])
    out = []
    for key in sorted(set(names[pos >= 0])):
        sel = np.flatnonzero((names == key) & (pos >= 0))
        fi, cname = key.split(":", 1)
        corr = next(c for c in ois[int(fi)].corrs if c.corrname == cname)
        full = corr.matrix()
        ci = pos[sel]
        if ci.max() >= full.shape[0]:
            raise DataError(f"{data.files[int(fi)]}: CORRINDX points beyond NDATA of OI_CORR {cname!r}")
        sub = full[np.ix_(ci, ci)]
        try:
            chol = np.linalg.cholesky(sub)
        except np.linalg.LinAlgError:
            raise DataError(f"{data.files[int(fi)]}: OI_CORR {cname!r} is not positive definite for the "
                            f"points used") from None
        if np.allclose(sub, np.eye(len(sel))):
            continue
        out.append((sel, np.linalg.inv(chol)))
    return out


def file_label(path) -> str:
    return Path(path).name if path else "<memory>"
