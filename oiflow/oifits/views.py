"""Flat per-point views of one observable across all tables of a file.

A view has one entry per data point (row × channel) of every table of its kind, as numpy arrays
in internal units: metres, radians, MJD. Example::

    oi = read_oifits("AXCir.oifits")
    v2 = oi.view("vis2")
    ok = v2.usable                     # not flagged and finite
    plt.plot(v2.spatial_frequency[ok], v2.value[ok], ".")

For ``vis2`` the value is V²; for ``t3`` the closure phase (rad) with ``amp``/``amp_error`` the
triple amplitude; for ``vis`` the amplitude with ``phase``/``phase_error`` (rad); for ``flux`` the
flux. ``u``, ``v`` are metres (baseline AB for t3; ``u2, v2`` is BC, ``u3, v3`` = −(AB+BC)).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from ..errors import OIFitsError
from .model import DataTable, OIFits

KINDS = {"vis2": "OI_VIS2", "t3": "OI_T3", "vis": "OI_VIS", "flux": "OI_FLUX"}

#: the plausible range of what locates a data point (SI): a baseline coordinate beyond 100 km or
#: a wavelength outside 10 nm – 1 cm is a damaged value, not an observation
COORD_MAX_M = 1e5
WAVELENGTH_RANGE_M = (1e-8, 1e-2)

_VALUE = {
    "vis2": ("VIS2DATA", "VIS2ERR", None, None),
    "t3": ("T3PHI", "T3PHIERR", "T3AMP", "T3AMPERR"),
    "vis": ("VISAMP", "VISAMPERR", "VISPHI", "VISPHIERR"),
    "flux": ("FLUXDATA", "FLUXERR", None, None),
}


@dataclass
class ObservableView:
    kind: str
    value: np.ndarray
    error: np.ndarray
    flag: np.ndarray
    wavelength: np.ndarray
    bandwidth: np.ndarray
    mjd: np.ndarray
    int_time: np.ndarray
    target_id: np.ndarray
    target: np.ndarray
    insname: np.ndarray
    stations: np.ndarray  # "A0-B2" or "A0-B2-C1" or "A0"
    sta_index: np.ndarray  # (N, k)
    table: np.ndarray  # index of the table in OIFits.tables
    row: np.ndarray
    channel: np.ndarray
    u: np.ndarray
    v: np.ndarray
    u2: np.ndarray | None = None
    v2: np.ndarray | None = None
    amp: np.ndarray | None = None  # t3: T3AMP
    amp_error: np.ndarray | None = None
    phase: np.ndarray | None = None  # vis: VISPHI (rad)
    phase_error: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.value.shape[0])

    # -- derived quantities ---------------------------------------------------------------
    @property
    def usable(self) -> np.ndarray:
        """Not flagged and finite value."""
        return ~self.flag & np.isfinite(self.value)

    @property
    def u3(self):
        return None if self.u2 is None else -(self.u + self.u2)

    @property
    def v3(self):
        return None if self.v2 is None else -(self.v + self.v2)

    @property
    def baseline(self) -> np.ndarray:
        """Projected baseline length in metres (longest of the three for t3)."""
        b = np.hypot(self.u, self.v)
        if self.kind == "t3":
            b = np.maximum(b, np.maximum(np.hypot(self.u2, self.v2), np.hypot(self.u3, self.v3)))
        return b

    @property
    def spatial_frequency(self) -> np.ndarray:
        """B/λ in cycles per radian (longest baseline of the triangle for t3)."""
        return self.baseline / self.wavelength

    @property
    def snr(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.abs(self.value) / self.error

    def select(self, mask) -> "ObservableView":
        """A view restricted to ``mask`` (boolean or index array)."""
        kw = {}
        for f in fields(self):
            val = getattr(self, f.name)
            if isinstance(val, np.ndarray):
                kw[f.name] = val[mask]
            elif f.name == "extra":
                kw[f.name] = {k: v[mask] for k, v in val.items()}
            else:
                kw[f.name] = val
        return ObservableView(**kw)

    def to_table(self):
        """An astropy Table of the view (units attached)."""
        from astropy import units as u
        from astropy.table import QTable

        t = QTable()
        t["target"] = self.target
        t["insname"] = self.insname
        t["stations"] = self.stations
        t["mjd"] = self.mjd
        t["wavelength"] = self.wavelength * u.m
        t["u"] = self.u * u.m
        t["v"] = self.v * u.m
        if self.u2 is not None:
            t["u2"] = self.u2 * u.m
            t["v2"] = self.v2 * u.m
        t["spatial_frequency"] = self.spatial_frequency / u.rad
        angle = self.kind == "t3"
        t["value"] = self.value * (u.rad if angle else u.one)
        t["error"] = self.error * (u.rad if angle else u.one)
        if self.amp is not None:
            t["amp"] = self.amp
            t["amp_error"] = self.amp_error
        if self.phase is not None:
            t["phase"] = self.phase * u.rad
            t["phase_error"] = self.phase_error * u.rad
        t["flag"] = self.flag
        return t


def _col(table: DataTable, name: str, shape, fill=np.nan, dtype=float):
    arr = table.get(name)
    if arr is None:
        return np.full(shape, fill, dtype=dtype)
    arr = np.asarray(arr)
    if arr.shape != shape:
        try:
            arr = arr.reshape(shape)
        except ValueError:
            raise OIFitsError(f"column shape {arr.shape} does not match (rows, NWAVE) = {shape}",
                              hdu=table.label, column=name) from None
    return arr.astype(dtype, copy=False)


def make_view(oi: OIFits, kind: str) -> ObservableView:
    if kind not in KINDS:
        raise OIFitsError(f"unknown observable {kind!r}; use one of {', '.join(KINDS)}")
    extname = KINDS[kind]
    vname, ename, v2name, e2name = _VALUE[kind]
    names = oi.target_names()
    parts: dict[str, list] = {k: [] for k in (
        "value", "error", "flag", "wavelength", "bandwidth", "mjd", "int_time", "target_id", "target", "insname",
        "stations", "sta_index", "table", "row", "channel", "u", "v", "u2", "v2", "amp", "amp_error")}
    nsta = {"vis2": 2, "vis": 2, "t3": 3, "flux": 1}[kind]
    for ti, table in enumerate(oi.tables):
        if table.EXTNAME != extname:
            continue
        try:
            wave = oi.wavelength_of(table)
        except OIFitsError as exc:
            raise OIFitsError(exc.message, file=oi.path, hdu=table.label, column="INSNAME") from None
        nrows, nwave = table.nrows, wave.nwave
        shape = (nrows, nwave)
        if nrows == 0:
            continue
        value = _col(table, vname, shape)
        if vname not in table and kind == "vis" and "VISPHI" in table:
            value = np.full(shape, np.nan)
        error = _col(table, ename, shape)
        flag = _col(table, "FLAG", shape, fill=False, dtype=bool)
        if kind == "t3":
            value, error = np.deg2rad(value), np.deg2rad(error)
        parts["value"].append(value.ravel())
        parts["error"].append(error.ravel())
        parts["flag"].append(flag.ravel())
        parts["wavelength"].append(np.broadcast_to(wave.eff_wave, shape).ravel())
        band = wave.get("EFF_BAND")
        parts["bandwidth"].append(np.broadcast_to(np.asarray(band, float) if band is not None else np.full(nwave, np.nan), shape).ravel())
        rows = np.repeat(np.arange(nrows), nwave)
        parts["row"].append(rows)
        parts["channel"].append(np.tile(np.arange(nwave), nrows))
        parts["table"].append(np.full(nrows * nwave, ti))
        parts["insname"].append(np.full(nrows * nwave, table.insname, dtype=object))
        tid = np.asarray(table.get("TARGET_ID", np.ones(nrows)), dtype=int).reshape(nrows)
        parts["target_id"].append(tid[rows])
        parts["target"].append(np.array([names.get(int(t), "") for t in tid], dtype=object)[rows])
        parts["mjd"].append(np.asarray(table.get("MJD", np.full(nrows, np.nan)), float).reshape(nrows)[rows])
        parts["int_time"].append(np.asarray(table.get("INT_TIME", np.full(nrows, np.nan)), float).reshape(nrows)[rows])
        sta = table.get("STA_INDEX")
        sta = np.zeros((nrows, nsta), int) if sta is None else np.asarray(sta).reshape(nrows, -1).astype(int)
        parts["sta_index"].append(sta[rows])
        arr = oi.array_of(table)
        stanames = arr.station_names() if arr is not None else {}
        labels = np.array(["-".join(stanames.get(int(s), str(int(s))) for s in r) for r in sta], dtype=object)
        parts["stations"].append(labels[rows])
        if kind in ("vis2", "vis"):
            parts["u"].append(np.asarray(table["UCOORD"], float).reshape(nrows)[rows])
            parts["v"].append(np.asarray(table["VCOORD"], float).reshape(nrows)[rows])
        elif kind == "t3":
            for key, col in (("u", "U1COORD"), ("v", "V1COORD"), ("u2", "U2COORD"), ("v2", "V2COORD")):
                parts[key].append(np.asarray(table[col], float).reshape(nrows)[rows])
        else:
            parts["u"].append(np.zeros(nrows * nwave))
            parts["v"].append(np.zeros(nrows * nwave))
        if v2name is not None:
            a = _col(table, v2name, shape)
            ae = _col(table, e2name, shape)
            if kind == "vis":
                a, ae = np.deg2rad(a), np.deg2rad(ae)
            parts["amp"].append(a.ravel())
            parts["amp_error"].append(ae.ravel())

    def cat(key, dtype=float, width=None):
        if parts[key]:
            return np.concatenate(parts[key])
        return np.zeros((0, width) if width else 0, dtype=dtype)

    out = ObservableView(
        kind=kind,
        value=cat("value"),
        error=cat("error"),
        flag=cat("flag", bool),
        wavelength=cat("wavelength"),
        bandwidth=cat("bandwidth"),
        mjd=cat("mjd"),
        int_time=cat("int_time"),
        target_id=cat("target_id", int),
        target=cat("target", object),
        insname=cat("insname", object),
        stations=cat("stations", object),
        sta_index=cat("sta_index", int, nsta),
        table=cat("table", int),
        row=cat("row", int),
        channel=cat("channel", int),
        u=cat("u"),
        v=cat("v"),
        u2=cat("u2") if kind == "t3" else None,
        v2=cat("v2") if kind == "t3" else None,
    )
    if kind == "t3":
        out.amp, out.amp_error = cat("amp"), cat("amp_error")
    elif kind == "vis":
        out.phase, out.phase_error = cat("amp"), cat("amp_error")
    return out


def _coordinate_columns(kind: str) -> dict[str, str]:
    if kind == "t3":
        return {"u": "U1COORD", "v": "V1COORD", "u2": "U2COORD", "v2": "V2COORD"}
    return {"u": "UCOORD", "v": "VCOORD"} if kind in ("vis2", "vis") else {}


def implausible_points(view: ObservableView, errors: bool = False, times: bool = False,
                       usable: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Masks of the view's usable points (unflagged, finite value) whose location is damaged, by
    the file's column name: a non-finite or out-of-range (u, v) (:data:`COORD_MAX_M`) or
    wavelength (:data:`WAVELENGTH_RANGE_M`, column ``EFF_WAVE``); with ``errors`` also a
    non-finite error bar (real files have those: consumers drop such points, validators report
    them), including the error bar of the second observable (T3AMPERR where T3AMP is finite,
    VISPHIERR where VISPHI is); with ``times`` a non-finite MJD or INT_TIME. Only columns with
    at least one such point are in the result. ``usable``: the points a consumer uses when they
    are not :attr:`ObservableView.usable` (e.g. T3 amplitudes of points whose closure phase is
    NaN)."""
    ok = view.usable if usable is None else np.asarray(usable, bool)
    out: dict[str, np.ndarray] = {}
    for attr, col in _coordinate_columns(view.kind).items():
        a = getattr(view, attr)
        bad = ok & ~(np.isfinite(a) & (np.abs(a) <= COORD_MAX_M))
        if bad.any():
            out[col] = bad
    lo, hi = WAVELENGTH_RANGE_M
    with np.errstate(invalid="ignore"):
        bad = ok & ~(np.isfinite(view.wavelength) & (view.wavelength >= lo) & (view.wavelength <= hi))
    if bad.any():
        out["EFF_WAVE"] = bad
    checks = []
    if errors:
        checks.append((_VALUE[view.kind][1], ok, view.error))
        second = {"t3": (view.amp, view.amp_error), "vis": (view.phase, view.phase_error)}.get(view.kind)
        if second is not None and second[0] is not None:
            checks.append((_VALUE[view.kind][3], ~view.flag & np.isfinite(second[0]), second[1]))
    if times:
        checks += [("MJD", ok, view.mjd), ("INT_TIME", ok, view.int_time)]
    for col, where, values in checks:
        bad = where & ~np.isfinite(values)
        if bad.any():
            out[col] = bad
    return out


def check_usable_points(view: ObservableView, oi: OIFits, usable: np.ndarray | None = None) -> None:
    """Raise :class:`OIFitsError` naming the file, table, column and rows when a usable point
    (unflagged, finite value; or the mask ``usable``) of ``view`` has a damaged location
    (:func:`implausible_points`): such input is refused before any model or transform (finufft)
    sees it. Flagged points, points without a finite value and points without a finite error bar
    are left to the caller's selection (which drops them and counts them)."""
    for col, bad in implausible_points(view, usable=usable).items():
        ti = int(view.table[bad][0])
        table = oi.tables[ti]
        if col == "EFF_WAVE":
            wave = oi.wavelength_of(table)
            chans = sorted({int(c) for c in view.channel[bad & (view.table == ti)]})
            raise OIFitsError(f"non-finite or implausible wavelength on unflagged data of {table.label} "
                              f"(plausible: {WAVELENGTH_RANGE_M[0]:g}–{WAVELENGTH_RANGE_M[1]:g} m)",
                              file=oi.path, hdu=wave.label, column="EFF_WAVE", rows=chans)
        rows = sorted({int(r) for r in view.row[bad & (view.table == ti)]})
        raise OIFitsError(f"non-finite or implausible coordinate on unflagged data (plausible: |value| ≤ "
                          f"{COORD_MAX_M:g} m)", file=oi.path, hdu=table.label,
                          column=col, rows=rows)
