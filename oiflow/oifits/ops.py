"""Operations on whole OIFITS files: merge several into one, select a subset.

Both return new :class:`OIFits` objects; their inputs are never modified.

    merged = merge([read_oifits(a), read_oifits(b)])
    sub = select(merged, target="HD_45677", wave_min=1.6e-6, wave_max=1.7e-6, min_snr=3)

Units are internal ones (metres for wavelengths and baselines, MJD in days); the command line
converts µm to metres.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import DataError, OIFitsError, OIFitsWarning
from ..product_tree import target_key
from .model import (
    ArrayTable,
    CorrTable,
    DataTable,
    InspolTable,
    OIFits,
    OITable,
    T3Table,
    TargetTable,
    WavelengthTable,
)
from .schema import MAIN_HEADER_V2, TABLES

#: targets closer than this (arcsec) are the same object when merging
SAME_TARGET_ARCSEC = 1.0
_ARCSEC = 1.0 / 3600.0


# ----------------------------------------------------------------------------------------------
# merge
def _same_position(ra1, dec1, ra2, dec2) -> bool:
    vals = np.array([ra1, dec1, ra2, dec2], float)
    if not np.all(np.isfinite(vals)) or (ra1 == 0 and dec1 == 0) or (ra2 == 0 and dec2 == 0):
        return False
    r1, d1, r2, d2 = np.radians(vals)
    cos_sep = np.sin(d1) * np.sin(d2) + np.cos(d1) * np.cos(d2) * np.cos(r1 - r2)
    sep = np.degrees(np.arccos(np.clip(cos_sep, -1.0, 1.0)))
    return bool(sep < SAME_TARGET_ARCSEC * _ARCSEC)


def _unique_name(base: str, taken: set[str]) -> str:
    k = 2
    while f"{base}_{k}" in taken:
        k += 1
    return f"{base}_{k}"


def _same_array(a: ArrayTable, b: ArrayTable) -> bool:
    try:
        ia, ib = np.asarray(a["STA_INDEX"], int), np.asarray(b["STA_INDEX"], int)
        if sorted(ia.tolist()) != sorted(ib.tolist()):
            return False
        oa, ob = np.argsort(ia), np.argsort(ib)
        na = np.char.strip(np.asarray(a.get("STA_NAME", a.get("TEL_NAME")), str))[oa]
        nb = np.char.strip(np.asarray(b.get("STA_NAME", b.get("TEL_NAME")), str))[ob]
        if not np.array_equal(na, nb):
            return False
        xa, xb = a.get("STAXYZ"), b.get("STAXYZ")
        if xa is not None and xb is not None:
            return bool(np.allclose(np.asarray(xa, float)[oa], np.asarray(xb, float)[ob], atol=1e-3))
        return True
    except (OIFitsError, ValueError, TypeError):
        return False


def _same_wavelength(a: WavelengthTable, b: WavelengthTable) -> bool:
    if a.nwave != b.nwave:
        return False
    ok = np.allclose(a.eff_wave, b.eff_wave, rtol=1e-6, atol=0, equal_nan=True)
    ba, bb = a.get("EFF_BAND"), b.get("EFF_BAND")
    if ba is not None and bb is not None:
        ok = ok and np.allclose(np.asarray(ba, float), np.asarray(bb, float), rtol=1e-6, atol=0, equal_nan=True)
    return bool(ok)


def _same_corr(a: CorrTable, b: CorrTable) -> bool:
    if a.ndata != b.ndata or a.nrows != b.nrows:
        return False
    return all(np.array_equal(np.asarray(a[c]), np.asarray(b[c])) for c in ("IINDX", "JINDX", "CORR"))


def merge(ois: Sequence[OIFits]) -> OIFits:
    """Merge OIFITS files into one.

    Targets are re-indexed (1..N): two targets are the same when their names agree ignoring
    case, blanks, '_' and '-', or when their positions agree within 1 arcsec. OI_ARRAY,
    OI_WAVELENGTH and OI_CORR tables with the same name are shared when their content is
    identical; otherwise the later one is renamed ``NAME_2`` (``_3``, …) and every reference
    (ARRNAME, INSNAME, CORRNAME, OI_INSPOL INSNAME column) is re-pointed.
    """
    ois = list(ois)
    if not ois:
        raise OIFitsError("nothing to merge")
    merged_rows: list[dict] = []  # one dict per merged target: column → value
    tcols: list[str] = []
    target_units, target_formats, target_header = {}, {}, None
    arrays: list[ArrayTable] = []
    waves: list[WavelengthTable] = []
    corrs: list[CorrTable] = []
    others: list[OITable] = []
    extra_hdus = []
    history = []
    for k, src in enumerate(ois):
        oi = src.copy()
        # -- targets
        id_map: dict[int, int] = {}
        if oi.targets:
            tt = oi.targets[0]
            target_header = target_header or tt.header.copy()
            target_units = target_units or dict(tt.units)
            target_formats = target_formats or dict(tt.formats)
            for c in tt.columns:
                if c not in tcols:
                    tcols.append(c)
            for row in range(tt.nrows):
                values = {c: tt.columns[c][row] for c in tt.columns}
                name, ra, dec = str(values.get("TARGET", "")).strip(), values.get("RAEP0", np.nan), values.get("DECEP0", np.nan)
                match = None
                for j, m in enumerate(merged_rows):
                    if target_key(m.get("TARGET", "")) == target_key(name) or _same_position(
                            ra, dec, m.get("RAEP0", np.nan), m.get("DECEP0", np.nan)):
                        match = j
                        break
                if match is None:
                    merged_rows.append(values)
                    match = len(merged_rows) - 1
                id_map[int(values.get("TARGET_ID", row + 1))] = match + 1
        # -- arrays, wavelengths, corr: share identical, rename clashing
        arr_map = _merge_named(oi.arrays, arrays, "arrname", "ARRNAME", _same_array)
        ins_map = _merge_named(oi.wavelengths, waves, "insname", "INSNAME", _same_wavelength)
        corr_map = _merge_named(oi.corrs, corrs, "corrname", "CORRNAME", _same_corr)
        for old, new in {**arr_map, **ins_map, **corr_map}.items():
            if old != new:
                history.append(f"file {k + 1}: {old!r} renamed {new!r}")
        for t in oi.tables:
            if isinstance(t, (TargetTable, ArrayTable, WavelengthTable, CorrTable)):
                continue
            _repoint(t, id_map, arr_map, ins_map, corr_map)
            others.append(t)
        extra_hdus.extend(oi.extra_hdus)

    target = TargetTable(target_header, {}, target_units, target_formats)
    for c in tcols:
        present = [m[c] for m in merged_rows if c in m]
        if not present:
            continue
        values = [m.get(c, _blank_like(present[0])) for m in merged_rows]
        target.columns[c] = np.array(values)
    target.columns["TARGET_ID"] = np.arange(1, len(merged_rows) + 1, dtype=np.int16)
    target.hdu_index = None
    primary = _merged_primary([o.primary_header for o in ois])
    for line in history:
        primary.add_history(f"oiflow merge: {line}")
    tables = [target, *arrays, *waves, *corrs, *others]
    for t in tables:
        t.hdu_index = None
    return OIFits(primary_header=primary, tables=tables, extra_hdus=extra_hdus)


def _blank_like(value):
    if isinstance(value, (str, np.str_)):
        return ""
    if isinstance(value, np.ndarray):
        return np.zeros_like(value)
    return type(value)(0) if not isinstance(value, (float, np.floating)) else np.nan


def _merge_named(new_tables, kept: list, attr: str, keyword: str, same) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for t in new_tables:
        name = getattr(t, attr)
        existing = [x for x in kept if getattr(x, attr) == name]
        if existing and same(existing[0], t):
            mapping[name] = name
            continue
        if existing:
            new = _unique_name(name, {getattr(x, attr) for x in kept})
            t.header[keyword] = new
            mapping[name] = new
        else:
            mapping[name] = name
        kept.append(t)
    return mapping


def _repoint(t: OITable, id_map, arr_map, ins_map, corr_map) -> None:
    if "TARGET_ID" in t.columns and id_map:
        tid = np.asarray(t.columns["TARGET_ID"])
        t.columns["TARGET_ID"] = np.array([id_map.get(int(i), int(i)) for i in tid.ravel()],
                                          dtype=tid.dtype).reshape(tid.shape)
    for key, mapping in (("ARRNAME", arr_map), ("INSNAME", ins_map), ("CORRNAME", corr_map)):
        val = t.keyword(key)
        if isinstance(val, str) and val in mapping:
            t.header[key] = mapping[val]
    if isinstance(t, InspolTable) and "INSNAME" in t.columns:
        ins = np.char.strip(np.asarray(t.columns["INSNAME"]).astype(str))
        t.columns["INSNAME"] = np.array([ins_map.get(s, s) for s in ins.tolist()])


def _merged_primary(headers) -> "object":
    first = headers[0].copy()
    first.remove("CONTENT", ignore_missing=True)  # the writer sets it for the version it writes
    for key in MAIN_HEADER_V2:
        if key in ("CONTENT", "DATE", "ORIGIN"):
            continue
        vals = {str(h.get(key, "")).strip() for h in headers}
        if len(vals) > 1:
            first[key] = "MULTI"
    dates = sorted(str(h.get("DATE-OBS")).strip() for h in headers if str(h.get("DATE-OBS", "") or "").strip())
    if dates:
        first["DATE-OBS"] = dates[0]
    return first


# ----------------------------------------------------------------------------------------------
# select
def _as_list(x) -> list:
    if x is None:
        return []
    if isinstance(x, (str, int, np.integer)):
        return [x]
    return list(x)


def _snr(t: DataTable) -> np.ndarray | None:
    """Per-point SNR: V²/σ, VISAMP/σ, FLUX/σ; closure phases 1/σφ (σφ in radians) unless T3AMP is
    measured, in which case T3AMP/σ."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if isinstance(t, T3Table):
            amp, aerr = t.get("T3AMP"), t.get("T3AMPERR")
            perr = t.get("T3PHIERR")
            out = None
            if perr is not None:
                out = 1.0 / np.deg2rad(np.asarray(perr, float))
            if amp is not None and aerr is not None:
                a = np.abs(np.asarray(amp, float)) / np.asarray(aerr, float)
                out = np.where(np.isfinite(a), a, out if out is not None else np.nan)
            return out
        pairs = {"OI_VIS2": ("VIS2DATA", "VIS2ERR"), "OI_VIS": ("VISAMP", "VISAMPERR"), "OI_FLUX": ("FLUXDATA", "FLUXERR")}
        v, e = pairs[t.EXTNAME]
        if v not in t or e not in t:
            return None
        return np.abs(np.asarray(t[v], float)) / np.asarray(t[e], float)


def _baseline(t: DataTable) -> np.ndarray | None:
    if isinstance(t, T3Table):
        u1, v1, u2, v2 = (np.asarray(t[c], float) for c in ("U1COORD", "V1COORD", "U2COORD", "V2COORD"))
        return np.max([np.hypot(u1, v1), np.hypot(u2, v2), np.hypot(u1 + u2, v1 + v2)], axis=0)
    if "UCOORD" in t and "VCOORD" in t:
        return np.hypot(np.asarray(t["UCOORD"], float), np.asarray(t["VCOORD"], float))
    return None


def _nwave_columns(t: OITable, nwave: int) -> list[str]:
    tdef = TABLES[t.EXTNAME]
    out = []
    for name, arr in t.columns.items():
        col = tdef.column(name)
        a = np.asarray(arr)
        if col is not None and col.repeat == "NWAVE":
            out.append(name)
        elif col is None and a.ndim == 2 and a.shape[1] == nwave and a.dtype.kind in "biufcU" and nwave > 1:
            out.append(name)  # instrument-specific per-channel columns (e.g. GRAVITY VISDATA) follow the channels
    return out


def select(oi: OIFits, *, target=None, insname=None, wave_min: float | None = None, wave_max: float | None = None,
           mjd_min: float | None = None, mjd_max: float | None = None, baseline_min: float | None = None,
           baseline_max: float | None = None, drop_flagged: bool = False, min_snr: float | None = None) -> OIFits:
    """A new OIFits with only the requested data.

    * ``target``: name(s) or TARGET_ID(s); OI_TARGET keeps only those rows (IDs unchanged).
    * ``insname``: INSNAME(s) to keep (data tables and their OI_WAVELENGTH).
    * ``wave_min``/``wave_max`` (m): keeps the channels inside the range — a new OI_WAVELENGTH
      and sliced per-channel columns. CORRINDX columns cannot survive a channel cut: they are
      removed with the CORRNAME keyword (warning).
    * ``mjd_min``/``mjd_max`` (days), ``baseline_min``/``baseline_max`` (m; for OI_T3 the longest
      baseline of the triangle): row cuts; OI_FLUX rows have no baseline and are kept.
    * ``min_snr``: points below it are flagged (see :func:`_snr` for the SNR of each observable).
    * ``drop_flagged``: rows whose every channel is flagged are removed (a row cannot lose single
      channels; partly flagged rows keep their flags).

    Raises :class:`DataError` when nothing is left.
    """
    out = oi.copy()
    names = out.target_names()
    keep_ids = None
    if target is not None:
        keep_ids = set()
        for t in _as_list(target):
            if isinstance(t, (int, np.integer)) or (isinstance(t, str) and t.isdigit() and int(t) in names
                                                     and t not in names.values()):
                keep_ids.add(int(t))
            else:
                found = [i for i, n in names.items() if n == str(t) or target_key(n) == target_key(str(t))]
                if not found:
                    raise DataError(f"no target {t!r} in {oi.path or 'the file'} (targets: {', '.join(names.values())})")
                keep_ids.update(found)
    ins_keep = set(_as_list(insname)) if insname is not None else None
    if ins_keep is not None:
        unknown = ins_keep - {w.insname for w in out.wavelengths}
        if unknown:
            raise DataError(f"no INSNAME {sorted(unknown)} in {oi.path or 'the file'} "
                            f"(INSNAMEs: {', '.join(w.insname for w in out.wavelengths)})")

    # channel cut: new OI_WAVELENGTH tables
    channel_keep: dict[str, np.ndarray] = {}
    if wave_min is not None or wave_max is not None:
        lo = -np.inf if wave_min is None else wave_min
        hi = np.inf if wave_max is None else wave_max
        for w in out.wavelengths:
            channel_keep[w.insname] = (w.eff_wave >= lo) & (w.eff_wave <= hi)

    new_tables: list[OITable] = []
    dropped_corr = False
    for t in out.tables:
        if isinstance(t, WavelengthTable):
            if ins_keep is not None and t.insname not in ins_keep:
                continue
            keep = channel_keep.get(t.insname)
            if keep is not None:
                if not keep.any():
                    continue
                t = t.take(keep)
            new_tables.append(t)
            continue
        if isinstance(t, TargetTable):
            if keep_ids is not None:
                t = t.take(np.isin(np.asarray(t["TARGET_ID"], int), list(keep_ids)))
            new_tables.append(t)
            continue
        if isinstance(t, (DataTable, InspolTable)):
            ins = t.insname if isinstance(t, DataTable) else None
            if ins is not None and ins_keep is not None and ins not in ins_keep:
                continue
            t, corr_cut = _cut_table(out, t, keep_ids, channel_keep, mjd_min, mjd_max, baseline_min, baseline_max,
                                     drop_flagged, min_snr)
            dropped_corr |= corr_cut
            if t is None or t.nrows == 0:
                continue
        new_tables.append(t)
    if dropped_corr:
        warnings.warn("channel selection invalidates CORRINDX columns: they were removed with CORRNAME",
                      OIFitsWarning, stacklevel=2)
    result = OIFits(out.primary_header.copy(), new_tables, out.extra_hdus, out.primary_data, None, [])
    if not result.data_tables:
        raise DataError(f"the selection leaves no data in {oi.path or 'the file'}")
    # drop OI_WAVELENGTH/OI_CORR tables nothing refers to any more
    used_ins = {t.insname for t in result.data_tables}
    for p in result.inspols:
        if "INSNAME" in p.columns:
            used_ins.update(np.char.strip(np.asarray(p["INSNAME"]).astype(str)).tolist())
    used_corr = {t.corrname for t in result.data_tables if t.corrname}
    users = [*result.data_tables, *result.inspols]
    used_arr = {t.arrname for t in users if t.arrname}
    keep_all_arrays = any(not t.arrname for t in users)
    result.tables = [t for t in result.tables
                     if not (isinstance(t, WavelengthTable) and t.insname not in used_ins)
                     and not (isinstance(t, CorrTable) and t.corrname not in used_corr)
                     and not (isinstance(t, ArrayTable) and not keep_all_arrays and t.arrname not in used_arr)]
    result.primary_header.add_history("oiflow select: " + _describe(target=target, insname=insname, wave_min=wave_min,
                                                                    wave_max=wave_max, mjd_min=mjd_min, mjd_max=mjd_max,
                                                                    baseline_min=baseline_min, baseline_max=baseline_max,
                                                                    drop_flagged=drop_flagged, min_snr=min_snr))
    return result


def _describe(**kw) -> str:
    return ", ".join(f"{k}={v}" for k, v in kw.items() if v not in (None, False))[:60] or "all"


def _cut_table(oi: OIFits, t, keep_ids, channel_keep, mjd_min, mjd_max, bmin, bmax, drop_flagged, min_snr):
    corr_cut = False
    nrows = t.nrows
    rows = np.ones(nrows, bool)
    if keep_ids is not None and "TARGET_ID" in t:
        rows &= np.isin(np.asarray(t["TARGET_ID"], int).reshape(nrows), list(keep_ids))
    mjd_col = "MJD" if "MJD" in t else ("MJD_OBS" if "MJD_OBS" in t else None)
    if mjd_col is not None:
        mjd = np.asarray(t[mjd_col], float).reshape(nrows)
        end = np.asarray(t["MJD_END"], float).reshape(nrows) if isinstance(t, InspolTable) and "MJD_END" in t else mjd
        if mjd_min is not None:
            rows &= end >= mjd_min
        if mjd_max is not None:
            rows &= mjd <= mjd_max
    if isinstance(t, DataTable) and (bmin is not None or bmax is not None):
        b = _baseline(t)
        if b is not None:
            if bmin is not None:
                rows &= b >= bmin
            if bmax is not None:
                rows &= b <= bmax
    t = t.take(rows)
    # channel cut
    ins = t.insname if isinstance(t, DataTable) else None
    if isinstance(t, InspolTable) and "INSNAME" in t and t.nrows:
        ins = str(np.asarray(t["INSNAME"]).astype(str)[0]).strip()
    keep = channel_keep.get(ins) if ins is not None else None
    if keep is not None:
        if not keep.any():
            return None, False
        nwave = keep.size
        for name in _nwave_columns(t, nwave):
            a = np.asarray(t.columns[name])
            if a.ndim == 2 and a.shape[1] == nwave:
                t.columns[name] = a[:, keep]
        if "VISREFMAP" in t.columns:
            m = np.asarray(t.columns["VISREFMAP"])
            if m.ndim == 3 and m.shape[1:] == (nwave, nwave):
                t.columns["VISREFMAP"] = m[:, keep][:, :, keep]
        if not keep.all():
            for name in [c for c in t.columns if c.startswith("CORRINDX_")]:
                del t.columns[name]
                corr_cut = True
            if corr_cut:
                t.header.remove("CORRNAME", ignore_missing=True)
    if isinstance(t, DataTable) and min_snr is not None and "FLAG" in t:
        snr = _snr(t)
        if snr is not None:
            flag = np.asarray(t["FLAG"], bool).copy()
            with np.errstate(invalid="ignore"):
                low = ~(np.asarray(snr).reshape(flag.shape) >= min_snr)
            t.columns["FLAG"] = flag | low
    if isinstance(t, DataTable) and drop_flagged and "FLAG" in t and t.nrows:
        flag = np.asarray(t["FLAG"], bool).reshape(t.nrows, -1)
        t = t.take(~flag.all(axis=1))
    return t, corr_cut


def select_files(ois: Iterable[OIFits], **criteria) -> list[OIFits]:
    """:func:`select` over several files; files left empty are skipped."""
    out = []
    for oi in ois:
        try:
            out.append(select(oi, **criteria))
        except DataError:
            continue
    return out


__all__ = ["merge", "select", "select_files", "SAME_TARGET_ARCSEC"]
