"""The data an image is fitted to, and the likelihood (χ²) with its gradient.

:func:`imaging_data` selects points from OIFITS files (target, wavelength range, observables)
and arranges them in *groups* — one group for a grey image, one per spectral channel for per-channel images. A group
has the unique frequencies (u, v) (cycles/rad) where its image is transformed, and for every
observable the indices of its "legs" into that list:

* V²: one leg; model |V|² (negative data values are kept: the noise is Gaussian on V²);
* closure phase: three legs ij, jk, ik (the triangle of :mod:`oiflow.observables`), model
  arg(V_ij V_jk conj V_ik), compared **on the circle**: χ² = Σ 2(1 − cos Δψ)/σ², written
  Σ 2(1 − Re(B e^{−iψ})/√(|B|² + ε²))/σ² so that it stays smooth where the model bispectrum B
  crosses zero (the phase is singular there and a plain 1 − cos Δψ traps the optimiser on a
  cusp). ε = 0.01·σ·|B_expected| (|B| expected from the V² profile), so the penalty equals
  2(1 − cos Δψ)/σ² (to < 1 % of a χ² unit) wherever the model is not far below that amplitude;
* T3 amplitude: |V_ij||V_jk||V_ik|; VISAMP: |V|; VISPHI: arg V (absolute phase, on the circle,
  smoothed like the closure phase with ε from VISAMP or the V² profile).

What cannot be used, by a stated rule, before any native code (finufft) sees it:

* a usable point (unflagged, with a value) whose (u, v) or wavelength is non-finite or absurd
  refuses the input: :func:`oiflow.oifits.views.check_usable_points` raises
  :class:`~oiflow.errors.OIFitsError` naming the file, table, column and rows;
* flagged points, points of another target or outside [WAVE_MIN, WAVE_MAX] (or beyond UV_MAX), points with a
  non-finite value (or an amplitude beyond ±:data:`MAX_AMPLITUDE`) and points with a non-finite
  error bar or one below :data:`MIN_ERROR` (zero and negative ones included) are dropped and
  counted in :attr:`ImagingData.excluded` (:func:`dropped_messages` words the damaged ones);
* fewer than :data:`MIN_POINTS` usable points: :class:`~oiflow.errors.DataError`.

:func:`likelihood` returns the χ² of each term and the complex gradient
``∂χ²/∂Re V + i ∂χ²/∂Im V`` at the unique frequencies, which the transform's adjoint turns
into the image gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError
from ..observables import bispectrum, t3_uv, vis2
from ..oifits.model import OIFits
from ..oifits.views import check_usable_points

USE_CHOICES = ("none", "all", "amp", "phi")
TERMS = ("vis2", "t3phi", "t3amp", "visamp", "visphi")
_EPS_ABS2 = 1e-300  # |V|² floor against 0/0 only (V normalised to 1 at zero frequency)

#: error bars below this (V², amplitudes; radians for phases) are not measurements (an SNR above
#: 1e8) and make the χ² overflow: such points are dropped and counted, as are non-finite and
#: non-positive ones
MIN_ERROR = 1e-8
#: amplitude-type values (V², T3AMP, VISAMP: normalised visibilities, |V| ≤ 1 but for noise)
#: beyond this are damaged (or correlated fluxes, which an image of unit flux cannot fit):
#: dropped and counted; phases may have any finite value (they are compared on the circle)
MAX_AMPLITUDE = 1e3
#: fewer usable points than this cannot constrain an image (one closure triangle): refused
MIN_POINTS = 3
#: what ``<term>_bad_value`` / ``<term>_bad_error`` in :attr:`ImagingData.excluded` count
DROP_REASONS = {"value": f"a non-finite value (or an amplitude beyond ±{MAX_AMPLITUDE:g})",
                "error": f"a non-finite error bar or one below {MIN_ERROR:g}"}


@dataclass
class Selection:
    """Which data to use (IMAGE-OI INPUT PARAM semantics; FLAG is always honoured)."""

    target: str | None = None
    wave_min: float | None = None  # metres, inclusive
    wave_max: float | None = None
    use_vis2: bool = True
    use_t3: str = "phi"  # none | all | amp | phi
    use_vis: str = "none"  # none | all | amp | phi
    uv_max: float | None = None  # cycles/rad, inclusive (longest leg of a triangle); BSMEM's UV_MAX

    def __post_init__(self):
        for name in ("use_t3", "use_vis"):
            val = str(getattr(self, name)).lower()
            if val not in USE_CHOICES:
                raise DataError(f"{name} must be one of {', '.join(USE_CHOICES)}, not {val!r}")
            setattr(self, name, val)


@dataclass
class Term:
    """One observable's points in a group: leg indices into the group's frequencies."""

    legs: np.ndarray  # (N, k) int
    data: np.ndarray  # (N,)
    error: np.ndarray  # (N,)
    spatial_frequency: np.ndarray  # (N,) cycles/rad (longest leg for triangles), for plots
    wavelength: np.ndarray  # (N,)
    smoothing: np.ndarray | None = None  # phases only: ε of the smoothed phase penalty (see likelihood)

    def __len__(self) -> int:
        return int(self.data.shape[0])


@dataclass
class DataGroup:
    """The points fitted by one image (all channels for a grey image)."""

    wavelength: float  # mean wavelength (m)
    u: np.ndarray  # unique frequencies, cycles/rad
    v: np.ndarray
    terms: dict[str, Term] = field(default_factory=dict)

    @property
    def ndata(self) -> int:
        return sum(len(t) for t in self.terms.values())


@dataclass
class ImagingData:
    groups: list[DataGroup]
    target: str
    selection: Selection
    excluded: dict[str, int]  # points dropped per reason (see _select and DROP_REASONS)
    used: dict[str, int]  # points used per term

    @property
    def ndata(self) -> int:
        return sum(g.ndata for g in self.groups)

    @property
    def max_frequency(self) -> float:
        return max(float(np.max(np.hypot(g.u, g.v))) if g.u.size else 0.0 for g in self.groups)

    @property
    def wavelengths(self) -> np.ndarray:
        return np.array([g.wavelength for g in self.groups])


def _target_name(ois: list[OIFits], wanted: str | None) -> str:
    names: set[str] = set()
    for oi in ois:
        names.update(n for n in oi.target_names().values() if n)
    if wanted:
        if wanted.strip() not in names:
            raise DataError(f"target {wanted!r} not in the data (targets: {', '.join(sorted(names)) or 'none'})")
        return wanted.strip()
    if len(names) > 1:
        raise DataError(f"several targets in the data ({', '.join(sorted(names))}): choose one with TARGET/--target")
    if not names:
        raise DataError("no target in the data")
    return names.pop()


def _select(view, target: str, sel: Selection, excluded: dict, label: str, value_ok, error_ok):
    """Boolean mask of the points of ``view`` to use; counts the exclusions by reason
    (``other_target``, ``wavelength_range``, ``<term>_flagged``, ``<term>_bad_value``,
    ``<term>_bad_error``; see :data:`DROP_REASONS`)."""
    n = len(view)
    if n == 0:
        return np.zeros(0, bool)
    keep = np.ones(n, bool)
    tmask = np.array([str(t).strip() == target for t in view.target], bool)
    excluded["other_target"] = excluded.get("other_target", 0) + int((~tmask).sum())
    keep &= tmask
    wmask = np.ones(n, bool)
    if sel.wave_min is not None:
        wmask &= view.wavelength >= sel.wave_min * (1 - 1e-7)
    if sel.wave_max is not None:
        wmask &= view.wavelength <= sel.wave_max * (1 + 1e-7)
    excluded["wavelength_range"] = excluded.get("wavelength_range", 0) + int((keep & ~wmask).sum())
    keep &= wmask
    if sel.uv_max is not None:
        uvmask = view.spatial_frequency <= sel.uv_max
        excluded["uv_range"] = excluded.get("uv_range", 0) + int((keep & ~uvmask).sum())
        keep &= uvmask
    flagged = keep & view.flag
    excluded[f"{label}_flagged"] = excluded.get(f"{label}_flagged", 0) + int(flagged.sum())
    keep &= ~view.flag
    bad_value = keep & ~value_ok
    excluded[f"{label}_bad_value"] = excluded.get(f"{label}_bad_value", 0) + int(bad_value.sum())
    keep &= value_ok
    bad_error = keep & ~error_ok
    excluded[f"{label}_bad_error"] = excluded.get(f"{label}_bad_error", 0) + int(bad_error.sum())
    keep &= error_ok
    return keep


def _usable_error(err):
    """Error bars a χ² can use: finite and ≥ :data:`MIN_ERROR`."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(err) & (err >= MIN_ERROR)


def _plausible_amplitude(val):
    """Finite amplitude-type values (V², T3AMP, VISAMP) within ±:data:`MAX_AMPLITUDE`."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(val) & (np.abs(val) <= MAX_AMPLITUDE)


def dropped_messages(excluded: dict[str, int]) -> list[str]:
    """One line per reason that dropped damaged points (bad values or error bars), for people;
    flagged points and the selection (target, wavelength range) are not damage and not listed."""
    out = []
    for key, n in excluded.items():
        term, _, reason = key.partition("_bad_")
        if n and reason in ("value", "error"):
            out.append(f"dropped {n} {term} point(s) with {DROP_REASONS[reason]}")
    return out


_SMOOTH_FRACTION = 0.01


def _median(a: np.ndarray) -> float:
    """``np.median`` of a 1-D float array, the same number (partition, then the middle element or
    the mean of the two middle ones; NaN when any is NaN) without the ``numpy.ma`` import that
    ``np.median`` does on its first call (30–120 ms of an imaging command's start-up)."""
    a = np.asarray(a, dtype=float).ravel()
    n = a.size
    if n == 0 or np.isnan(a).any():
        return float("nan")
    k = n // 2
    if n % 2:
        return float(np.partition(a, k)[k])
    part = np.partition(a, (k - 1, k))
    return float(np.mean(part[k - 1:k + 1]))


def _amplitude_profile(merged: dict):
    """|V| as a function of spatial frequency from the V² data (binned median of √max(V², 0)),
    used to set the smoothing scale of phase terms; None without V²."""
    m = merged.get("vis2")
    if m is None:
        return None
    lu, lv = m["legs"][0]
    rho = np.hypot(lu, lv)
    amp = np.sqrt(np.clip(m["data"], 0, None))
    order = np.argsort(rho)
    rho, amp = rho[order], amp[order]
    nb = max(1, min(30, rho.size // 10))
    edges = np.linspace(0, rho.size, nb + 1).astype(int)
    centres = np.array([_median(rho[a:b]) for a, b in zip(edges[:-1], edges[1:]) if b > a])
    values = np.array([_median(amp[a:b]) for a, b in zip(edges[:-1], edges[1:]) if b > a])
    floor = max(_median(m["err"]) ** 0.5 * 0.1, 1e-6)
    values = np.maximum(values, floor)
    return lambda r: np.interp(r, centres, values, left=1.0, right=values[-1])


def _phase_smoothing(term: str, m: dict, profile, amp_data) -> np.ndarray:
    """ε per point: 0.01·σ_ψ times the amplitude of the bispectrum (visibility) expected from the
    V² profile (else from T3AMP/VISAMP where positive). The bias this adds at the true image,
    ≈ ε²/(σ²|B|²) per point, stays ≤ 1e-4 wherever the true |B| is not below the expected one."""
    n = m["data"].size
    expected = np.full(n, np.nan)
    if profile is not None:
        expected = np.ones(n)
        for lu, lv in m["legs"]:
            expected = expected * profile(np.hypot(lu, lv))
    if amp_data is not None:
        ok = np.isfinite(amp_data) & (amp_data > 0) & ~np.isfinite(expected)
        expected = np.where(ok, amp_data, expected)
    expected = np.where(np.isfinite(expected), expected, 1e-3)
    sigma = np.clip(m["err"], 1e-3, 1.0)
    return np.maximum(_SMOOTH_FRACTION * sigma * expected, 1e-12)


class _UVIndex:
    """Unique frequencies of a group: legs with the same (u, v) share one transform point."""

    def __init__(self):
        self.u: list[np.ndarray] = []
        self.v: list[np.ndarray] = []

    def add(self, u, v) -> np.ndarray:
        start = sum(a.size for a in self.u)
        self.u.append(np.asarray(u, float).ravel())
        self.v.append(np.asarray(v, float).ravel())
        return np.arange(start, start + np.asarray(u).size)

    def finish(self):
        if not self.u:
            return np.zeros(0), np.zeros(0), np.zeros(0, int)
        u = np.concatenate(self.u)
        v = np.concatenate(self.v)
        scale = max(float(np.max(np.abs(np.concatenate([u, v])))), 1.0) if u.size else 1.0
        tol = 1e-9 * scale
        keys = np.stack([np.round(u / tol), np.round(v / tol)], axis=1).astype(np.int64)
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        return u[first], v[first], inverse.ravel()


def imaging_data(ois: list[OIFits], selection: Selection | None = None, polychromatic: str = "grey") -> ImagingData:
    """Collect the points to fit from OIFITS objects.

    ``polychromatic``: ``"grey"`` (one group) or ``"channels"`` (one group per distinct
    wavelength, rounded to 1e-4 relative). Raises :class:`DataError` when nothing is usable.
    """
    sel = selection or Selection()
    if polychromatic not in ("grey", "channels"):
        raise DataError(f"polychromatic must be 'grey' or 'channels', not {polychromatic!r}")
    target = _target_name(ois, sel.target)
    excluded: dict[str, int] = {}
    # raw per-term point lists: (u legs..., data, err, wavelength)
    raw: dict[str, list[dict]] = {t: [] for t in TERMS}
    for oi in ois:
        if sel.use_vis2:
            v2 = oi.view("vis2")
            check_usable_points(v2, oi)
            keep = _select(v2, target, sel, excluded, "vis2", _plausible_amplitude(v2.value), _usable_error(v2.error))
            if keep.any():
                w = v2.wavelength[keep]
                raw["vis2"].append(dict(legs=[(v2.u[keep] / w, v2.v[keep] / w)], data=v2.value[keep],
                                        err=v2.error[keep], wave=w))
        if sel.use_t3 != "none":
            t3 = oi.view("t3")
            if len(t3):
                used = np.zeros(len(t3), bool)
                if sel.use_t3 in ("all", "phi"):
                    used |= np.isfinite(t3.value)
                if sel.use_t3 in ("all", "amp"):
                    used |= np.isfinite(t3.amp)
                check_usable_points(t3, oi, usable=used & ~t3.flag)
                w_all = t3.wavelength
                (a, b), (c, d), _ = t3_uv(t3.u, t3.v, t3.u2, t3.v2)
                legs_all = [(a / w_all, b / w_all), (c / w_all, d / w_all), ((a + c) / w_all, (b + d) / w_all)]
                for term, use, val, err in (("t3phi", ("all", "phi"), t3.value, t3.error),
                                            ("t3amp", ("all", "amp"), t3.amp, t3.amp_error)):
                    if sel.use_t3 not in use:
                        continue
                    ok = np.isfinite(val) if term == "t3phi" else _plausible_amplitude(val)
                    keep = _select(t3, target, sel, excluded, term, ok, _usable_error(err))
                    if keep.any():
                        raw[term].append(dict(legs=[(lu[keep], lv[keep]) for lu, lv in legs_all], data=val[keep],
                                              err=err[keep], wave=w_all[keep], amp=t3.amp[keep]))
        if sel.use_vis != "none":
            vv = oi.view("vis")
            if len(vv):
                used = np.zeros(len(vv), bool)
                if sel.use_vis in ("all", "amp"):
                    used |= np.isfinite(vv.value)
                if sel.use_vis in ("all", "phi") and vv.phase is not None:
                    used |= np.isfinite(vv.phase)
                check_usable_points(vv, oi, usable=used & ~vv.flag)
                w_all = vv.wavelength
                for term, use, val, err in (("visamp", ("all", "amp"), vv.value, vv.error),
                                            ("visphi", ("all", "phi"), vv.phase, vv.phase_error)):
                    if sel.use_vis not in use or val is None:
                        continue
                    ok = np.isfinite(val) if term == "visphi" else _plausible_amplitude(val)
                    keep = _select(vv, target, sel, excluded, term, ok, _usable_error(err))
                    if keep.any():
                        raw[term].append(dict(legs=[(vv.u[keep] / w_all[keep], vv.v[keep] / w_all[keep])],
                                              data=val[keep], err=err[keep], wave=w_all[keep], amp=vv.value[keep]))
    merged = {}
    for term, parts in raw.items():
        if not parts:
            continue
        nleg = len(parts[0]["legs"])
        merged[term] = dict(
            legs=[(np.concatenate([p["legs"][k][0] for p in parts]), np.concatenate([p["legs"][k][1] for p in parts]))
                  for k in range(nleg)],
            data=np.concatenate([p["data"] for p in parts]),
            err=np.concatenate([p["err"] for p in parts]),
            wave=np.concatenate([p["wave"] for p in parts]),
            amp=np.concatenate([p["amp"] for p in parts]) if all("amp" in p for p in parts) else None,
        )
    if not merged:
        raise DataError(f"no usable data for target {target!r} with the selection {sel} (excluded: {excluded})")
    npoints = {term: int(m["data"].size) for term, m in merged.items()}
    if sum(npoints.values()) < MIN_POINTS:
        per_term = ", ".join(f"{term} {n}" for term, n in npoints.items())
        raise DataError(f"too few data to make an image of {target!r}: {sum(npoints.values())} usable point(s) "
                        f"({per_term}); at least {MIN_POINTS} are needed (excluded: {excluded})")
    profile = _amplitude_profile(merged)
    for term in ("t3phi", "visphi"):
        if term in merged:
            merged[term]["smoothing"] = _phase_smoothing(term, merged[term], profile, merged[term]["amp"])
    all_waves = np.concatenate([m["wave"] for m in merged.values()])
    if polychromatic == "grey":
        group_keys = {0: None}
        group_of = {term: np.zeros(m["wave"].size, int) for term, m in merged.items()}
        group_wave = [float(np.mean(all_waves))]
    else:
        rounded = np.unique(np.round(np.log(all_waves) / 1e-4).astype(np.int64))
        group_keys = {k: r for k, r in enumerate(rounded)}
        lookup = {r: k for k, r in group_keys.items()}
        group_of = {term: np.array([lookup[r] for r in np.round(np.log(m["wave"]) / 1e-4).astype(np.int64)])
                    for term, m in merged.items()}
        group_wave = [float(math.exp(r * 1e-4)) for r in rounded]
    groups = []
    for gk in group_keys:
        index = _UVIndex()
        pending = {}
        for term, m in merged.items():
            sel_pts = group_of[term] == gk
            if not sel_pts.any():
                continue
            leg_ids = [index.add(lu[sel_pts], lv[sel_pts]) for lu, lv in m["legs"]]
            freq = np.max(np.stack([np.hypot(lu[sel_pts], lv[sel_pts]) for lu, lv in m["legs"]]), axis=0)
            smooth = m["smoothing"][sel_pts] if "smoothing" in m else None
            pending[term] = (leg_ids, m["data"][sel_pts], m["err"][sel_pts], freq, m["wave"][sel_pts], smooth)
        u, v, inverse = index.finish()
        terms = {}
        for term, (leg_ids, data, err, freq, wave, smooth) in pending.items():
            legs = np.stack([inverse[ids] for ids in leg_ids], axis=1)
            terms[term] = Term(legs=legs, data=np.asarray(data, float), error=np.asarray(err, float),
                               spatial_frequency=freq, wavelength=wave, smoothing=smooth)
        groups.append(DataGroup(wavelength=group_wave[gk], u=u, v=v, terms=terms))
    used = {term: sum(len(g.terms[term]) for g in groups if term in g.terms) for term in merged}
    return ImagingData(groups=groups, target=target, selection=sel, excluded=excluded, used=used)


# -- likelihood on any array namespace ----------------------------------------------------

class DeviceGroup:
    """A group's arrays on the backend ``xp``: concatenated legs, data and errors per term."""

    def __init__(self, group: DataGroup, xp):
        self.xp = xp
        self.m = int(group.u.size)
        legs, slices, start = [], {}, 0
        self.data, self.error, self.nleg = {}, {}, {}
        self.eps2, self.phasor = {}, {}
        for term, t in group.terms.items():
            k = t.legs.shape[1]
            # legs stored leg-major: all first legs, then all second legs, ...
            legs.append(t.legs.T.ravel())
            slices[term] = (start, len(t), k)
            start += len(t) * k
            self.data[term] = xp.asarray(t.data, dtype=xp.float64)
            self.error[term] = xp.asarray(t.error, dtype=xp.float64)
            self.nleg[term] = k
            if t.smoothing is not None:
                self.eps2[term] = xp.asarray(t.smoothing**2, dtype=xp.float64)
                ph = np.exp(-1j * t.data)
                self.phasor[term] = xp.asarray(ph.astype(np.complex128))
        idx = np.concatenate(legs) if legs else np.zeros(0, int)
        self.slices = slices
        self.nlegs = int(idx.size)
        self.legs = xp.asarray(idx.astype(np.int64))
        self._scatter = _Scatter(idx, self.m, xp)

    def gather(self, V):
        return self.xp.take(V, self.legs)

    def scatter(self, g_legs):
        return self._scatter(g_legs)


class _Scatter:
    """Sum leg gradients onto unique frequencies (adjoint of the gather).

    numpy: ``np.bincount``; other namespaces: sort once, then segment sums by cumulative sum
    (array-API only, so it runs on cupy and array_api_strict)."""

    def __init__(self, idx: np.ndarray, m: int, xp):
        self.xp = xp
        self.m = m
        self.numpy = "numpy" in getattr(xp, "__name__", "")
        if not self.numpy and idx.size:
            order = np.argsort(idx, kind="stable")
            counts = np.bincount(idx, minlength=m)
            ends = np.cumsum(counts)
            self.order = xp.asarray(order.astype(np.int64))
            self.ends = xp.asarray(ends.astype(np.int64))
            self.starts = xp.asarray((ends - counts).astype(np.int64))
        self.idx = idx

    def __call__(self, g):
        xp = self.xp
        if self.numpy:
            re = np.bincount(self.idx, weights=np.real(g), minlength=self.m)
            im = np.bincount(self.idx, weights=np.imag(g), minlength=self.m)
            return re + 1j * im
        gs = xp.take(g, self.order)
        out = []
        for part in (xp.real(gs), xp.imag(gs)):
            cs = xp.concat([xp.zeros(1, dtype=xp.float64), xp.cumulative_sum(part)])
            out.append(xp.take(cs, self.ends) - xp.take(cs, self.starts))
        return xp.astype(out[0], xp.complex128) + xp.astype(out[1], xp.complex128) * 1j


def _abs_grad(a, xp):
    """∂|a| as a complex gradient: a/|a|."""
    return a / xp.astype(xp.sqrt(vis2(a, xp) + _EPS_ABS2), xp.complex128)


def likelihood(dg: DeviceGroup, V, want_grad: bool = True):
    """χ² per term and the complex gradient at the group's unique frequencies.

    ``V``: model visibilities at ``group.u, group.v`` (image normalised to unit flux).
    Returns ``(chi2: dict term → backend scalar, G or None)``.
    """
    xp = dg.xp
    Vl = dg.gather(V)
    chi2 = {}
    grads = []
    for term, (start, n, k) in dg.slices.items():
        legs = [Vl[start + j * n: start + (j + 1) * n] for j in range(k)]
        d, e = dg.data[term], dg.error[term]
        if term == "vis2":
            (a,) = legs
            m = vis2(a, xp)
            r = (m - d) / e
            chi2[term] = xp.sum(r * r)
            if want_grad:
                w = xp.astype(4.0 * r / e, xp.complex128)
                grads.append(w * a)
        elif term in ("t3phi", "visphi"):
            if term == "t3phi":
                a, b, c = legs
                P = a * b
                B = bispectrum(a, b, c, xp)
            else:
                (a,) = legs
                B = a
            K = 2.0 / (e * e)
            cd = dg.phasor[term]  # exp(−i ψ_data)
            A = xp.sqrt(vis2(B, xp) + dg.eps2[term])
            R = xp.real(B * cd)
            chi2[term] = xp.sum(K * (1.0 - R / A))
            if want_grad:
                # complex gradient w.r.t. B of K(1 − Re(B c)/A), A = √(|B|² + ε²)
                gB = xp.astype(-K / A, xp.complex128) * xp.conj(cd) + xp.astype(K * R / (A * A * A), xp.complex128) * B
                if term == "t3phi":
                    grads += [gB * xp.conj(b * xp.conj(c)), gB * xp.conj(a * xp.conj(c)), xp.conj(gB) * P]
                else:
                    grads.append(gB)
        elif term in ("t3amp", "visamp"):
            if term == "t3amp":
                a, b, c = legs
                absa = xp.sqrt(vis2(a, xp) + _EPS_ABS2)
                absb = xp.sqrt(vis2(b, xp) + _EPS_ABS2)
                absc = xp.sqrt(vis2(c, xp) + _EPS_ABS2)
                m = absa * absb * absc
            else:
                (a,) = legs
                m = xp.sqrt(vis2(a, xp) + _EPS_ABS2)
            r = (m - d) / e
            chi2[term] = xp.sum(r * r)
            if want_grad:
                w = 2.0 * r / e
                if term == "t3amp":
                    grads += [xp.astype(w * absb * absc, xp.complex128) * _abs_grad(a, xp),
                              xp.astype(w * absa * absc, xp.complex128) * _abs_grad(b, xp),
                              xp.astype(w * absa * absb, xp.complex128) * _abs_grad(c, xp)]
                else:
                    grads.append(xp.astype(w, xp.complex128) * _abs_grad(a, xp))
    G = None
    if want_grad:
        G = dg.scatter(xp.concat(grads)) if grads else xp.zeros(dg.m, dtype=xp.complex128)
    return chi2, G


def model_observables(group: DataGroup, V: np.ndarray) -> dict[str, np.ndarray]:
    """Model values of each term (numpy, for residual plots): V², CP (rad), amplitudes, phases."""
    out = {}
    for term, t in group.terms.items():
        legs = [V[t.legs[:, j]] for j in range(t.legs.shape[1])]
        if term == "vis2":
            out[term] = np.abs(legs[0]) ** 2
        elif term == "t3phi":
            out[term] = np.angle(legs[0] * legs[1] * np.conj(legs[2]))
        elif term == "t3amp":
            out[term] = np.abs(legs[0]) * np.abs(legs[1]) * np.abs(legs[2])
        elif term == "visamp":
            out[term] = np.abs(legs[0])
        elif term == "visphi":
            out[term] = np.angle(legs[0])
    return out
