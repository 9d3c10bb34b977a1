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

#: the plausible range of what locates a data point (SI): a baseline coordinate beyond 100 km or
#: a wavelength outside 10 nm – 1 cm is a damaged value, not an observation
COORD_MAX_M = 1e5
WAVELENGTH_RANGE_M = (1e-8, 1e-2)



@dataclass(frozen=True)
class Observable:
    """Where one observable kind lives in an OIFITS file and how its view is built.

    ``value``/``error``: the columns of :attr:`ObservableView.value` and ``error``;
    ``second``/``second_error``: the table's second observable with the view fields it fills
    (``second_fields``: T3AMP → ``amp``/``amp_error`` for t3, VISPHI → ``phase``/``phase_error``
    for vis); ``degrees``: the columns stored in degrees, converted to radians in the view;
    ``coordinates``: view field → (u, v) column (none for flux: u = v = 0); ``n_stations``: the
    width of STA_INDEX."""

    kind: str
    extname: str
    value: str
    error: str
    n_stations: int
    coordinates: dict[str, str]
    second: str | None = None
    second_error: str | None = None
    second_fields: tuple[str, str] | None = None
    degrees: frozenset[str] = frozenset()


_BASELINE_UV = {"u": "UCOORD", "v": "VCOORD"}

#: the observable kinds of :func:`make_view`
OBSERVABLES = {
    "vis2": Observable("vis2", "OI_VIS2", "VIS2DATA", "VIS2ERR", 2, _BASELINE_UV),
    "t3": Observable("t3", "OI_T3", "T3PHI", "T3PHIERR", 3,
                     {"u": "U1COORD", "v": "V1COORD", "u2": "U2COORD", "v2": "V2COORD"},
                     second="T3AMP", second_error="T3AMPERR", second_fields=("amp", "amp_error"),
                     degrees=frozenset({"T3PHI", "T3PHIERR"})),
    "vis": Observable("vis", "OI_VIS", "VISAMP", "VISAMPERR", 2, _BASELINE_UV,
                      second="VISPHI", second_error="VISPHIERR", second_fields=("phase", "phase_error"),
                      degrees=frozenset({"VISPHI", "VISPHIERR"})),
    "flux": Observable("flux", "OI_FLUX", "FLUXDATA", "FLUXERR", 1, {}),
}

#: observable kind → its table
KINDS = {kind: obs.extname for kind, obs in OBSERVABLES.items()}


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
    """The flat view of observable ``kind`` (``vis2``, ``t3``, ``vis``, ``flux``; see the module
    docstring) over every table of its kind in ``oi``, tables in file order, each table's points
    row-major (row × channel). Angles in radians, coordinates and wavelengths in metres; a
    missing optional column reads as NaN (FLAG: False). Raises :class:`OIFitsError` for an
    unknown kind, a table whose INSNAME has no OI_WAVELENGTH, or a column of the wrong shape."""
    if kind not in OBSERVABLES:
        raise OIFitsError(f"unknown observable {kind!r}; use one of {', '.join(KINDS)}")
    obs = OBSERVABLES[kind]
    names = oi.target_names()
    per_table = [_table_points(oi, ti, table, obs, names) for ti, table in enumerate(oi.tables)
                 if table.EXTNAME == obs.extname and table.nrows > 0]
    return _concatenate(obs, per_table)


def _table_points(oi: OIFits, ti: int, table: DataTable, obs: Observable, names: dict) -> dict[str, np.ndarray]:
    """The points of table ``ti`` (row × channel, flattened): view field → 1-D array (``sta_index``
    2-D)."""
    try:
        wave = oi.wavelength_of(table)
    except OIFitsError as exc:
        raise OIFitsError(exc.message, file=oi.path, hdu=table.label, column="INSNAME") from None
    nrows, nwave = table.nrows, wave.nwave
    shape = (nrows, nwave)
    rows = np.repeat(np.arange(nrows), nwave)  # the row of each point

    def per_point(name: str) -> np.ndarray:
        col = _col(table, name, shape)
        return (np.deg2rad(col) if name in obs.degrees else col).ravel()

    def per_row(name: str) -> np.ndarray:
        return np.asarray(table.get(name, np.full(nrows, np.nan)), float).reshape(nrows)[rows]

    band = wave.get("EFF_BAND")
    points = {  # the reading order decides which problem of a damaged table is reported first: as before
        "value": per_point(obs.value),
        "error": per_point(obs.error),
        "flag": _col(table, "FLAG", shape, fill=False, dtype=bool).ravel(),
        "wavelength": np.broadcast_to(wave.eff_wave, shape).ravel(),
        "bandwidth": np.broadcast_to(np.asarray(band, float) if band is not None else np.full(nwave, np.nan),
                                     shape).ravel(),
        "row": rows,
        "channel": np.tile(np.arange(nwave), nrows),
        "table": np.full(nrows * nwave, ti),
        "insname": np.full(nrows * nwave, table.insname, dtype=object),
    }
    tid = np.asarray(table.get("TARGET_ID", np.ones(nrows)), dtype=int).reshape(nrows)
    points["target_id"] = tid[rows]
    points["target"] = np.array([names.get(int(t), "") for t in tid], dtype=object)[rows]
    points["mjd"], points["int_time"] = per_row("MJD"), per_row("INT_TIME")
    sta = table.get("STA_INDEX")
    sta = np.zeros((nrows, obs.n_stations), int) if sta is None else np.asarray(sta).reshape(nrows, -1).astype(int)
    points["sta_index"] = sta[rows]
    arr = oi.array_of(table)
    stanames = arr.station_names() if arr is not None else {}
    labels = np.array(["-".join(stanames.get(int(s), str(int(s))) for s in r) for r in sta], dtype=object)
    points["stations"] = labels[rows]
    for field_name, col in obs.coordinates.items():
        points[field_name] = np.asarray(table[col], float).reshape(nrows)[rows]
    if not obs.coordinates:
        points["u"] = points["v"] = np.zeros(nrows * nwave)
    if obs.second is not None:
        value_field, error_field = obs.second_fields
        points[value_field], points[error_field] = per_point(obs.second), per_point(obs.second_error)
    return points


#: dtype (and width) of each field of a view without points
_EMPTY = {"flag": (bool, None), "target_id": (int, None), "target": (object, None), "insname": (object, None),
          "stations": (object, None), "sta_index": (int, "n_stations"), "table": (int, None), "row": (int, None),
          "channel": (int, None)}


def _concatenate(obs: Observable, per_table: list[dict[str, np.ndarray]]) -> ObservableView:
    """One :class:`ObservableView` from the points of each table; the fields the kind does not
    have (``u2``/``v2`` but for t3, ``amp`` but for t3, ``phase`` but for vis) stay None."""
    present = ["value", "error", "flag", "wavelength", "bandwidth", "mjd", "int_time", "target_id", "target",
               "insname", "stations", "sta_index", "table", "row", "channel", "u", "v",
               *(k for k in obs.coordinates if k not in ("u", "v")), *(obs.second_fields or ())]
    arrays = {}
    for name in present:
        if per_table:
            arrays[name] = np.concatenate([points[name] for points in per_table])
        else:
            dtype, width = _EMPTY.get(name, (float, None))
            arrays[name] = np.zeros((0, obs.n_stations) if width else 0, dtype=dtype)
    return ObservableView(kind=obs.kind, **arrays)


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
    for attr, col in OBSERVABLES[view.kind].coordinates.items():
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
        obs = OBSERVABLES[view.kind]
        checks.append((obs.error, ok, view.error))
        if obs.second_fields is not None and getattr(view, obs.second_fields[0]) is not None:
            second, second_error = (getattr(view, f) for f in obs.second_fields)
            checks.append((obs.second_error, ~view.flag & np.isfinite(second), second_error))
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
