"""Atomic writing of products and the provenance every product carries.

One helper for every stage (ARCHITECTURE.md): products are written to a temporary file in the
destination directory and renamed when complete, so a crash never leaves half a file; inputs
are never opened for writing.

Provenance written into a FITS header::

    PROCSOFT = 'oiflow 0.1.0'
    CALIB_LV = 2                      / ObsCore calib_level of the product
    HIERARCH OIFLOW STAGE = 'calibrate'
    HIERARCH OIFLOW STATUS = 'COMPLETE'
    HIERARCH OIFLOW SETHASH = '<sha256 of the effective settings>'
    HIERARCH OIFLOW NINPUT = 3
    HIERARCH OIFLOW IN1 NAME = 'obs_001.fits'
    HIERARCH OIFLOW IN1 SHA256 = '…'
    HISTORY oiflow settings {"interpolation": "smooth", …}   (JSON, split over lines)

and, for the products of the pipeline's stages (L1, L2, L3), the status of every stage that
made the product (:class:`StageRecord`, :func:`stage_history`): the stages of its inputs, read
from their own provenance, then its own::

    HIERARCH OIFLOW STAGES = 'reduce ok, calibrate ok, fit poor-fit'   (per stage, the worst)
    HISTORY oiflow stages [{"stage": "reduce", "status": "ok", "detail": "native",
    HISTORY  "products": ["OBS001.fits", …]}, {"stage": "calibrate", …}, …]  (JSON, split over lines)

A JSON product carries the same list as ``provenance.stages``.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from . import PROCSOFT, __version__
from . import verdict as V

_CHUNK = 1 << 20


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import: os.umask is process-wide and not thread-safe


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace variation: the form that is hashed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def settings_hash(settings: Any) -> str:
    """SHA-256 of the canonical JSON of ``settings`` (a dict or a pydantic model)."""
    if hasattr(settings, "model_dump"):
        settings = settings.model_dump(mode="json")
    return hashlib.sha256(canonical_json(settings).encode()).hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = final.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f"{suffix}.tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; products get the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_leftovers(path: str | os.PathLike) -> list[Path]:
    """Temporary files :func:`atomic_path` made for ``path`` and left behind (its writer was
    killed before it could remove them): ``.<stem>.<8 random characters><suffix>.tmp`` beside it."""
    final = Path(path)
    return sorted(final.parent.glob(f".{glob.escape(final.stem)}.{'?' * 8}{glob.escape(final.suffix)}.tmp"))


def write_bytes_atomic(data: bytes, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    return write_bytes_atomic(text.encode("utf-8"), path)


def write_json_atomic(obj: Any, path: str | os.PathLike) -> Path:
    return write_text_atomic(json.dumps(obj, indent=2, default=str) + "\n", path)


def write_hdulist_atomic(hdulist, path: str | os.PathLike, *, checksum: bool = True) -> Path:
    """Write an astropy HDUList atomically (with CHECKSUM/DATASUM by default)."""
    with atomic_path(path) as tmp:
        hdulist.writeto(tmp, overwrite=True, checksum=checksum)
    return Path(path)


def save_figure_atomic(fig, path: str | os.PathLike, **kwargs) -> Path:
    """Save a matplotlib figure atomically (format from the final suffix)."""
    final = Path(path)
    fmt = kwargs.pop("format", final.suffix.lstrip(".") or "png")
    with atomic_path(final) as tmp:
        fig.savefig(tmp, format=fmt, **kwargs)
    return final


@dataclass
class InputRecord:
    name: str
    sha256: str

    @classmethod
    def from_path(cls, path: str | os.PathLike) -> "InputRecord":
        return cls(name=Path(path).name, sha256=sha256_file(path))


#: the status of the stages of an input that oiflow did not make (its stages are not known)
UNKNOWN = "unknown"
#: the stage of such an input
EXTERNAL = "external"


@dataclass
class StageRecord:
    """One stage that made (part of) a product: its ``status`` (a verdict status of
    :mod:`oiflow.verdict`; :data:`UNKNOWN` for an input oiflow did not make), a ``detail`` for
    people (backend, calibrators, model and χ²_red…) and the ``products`` it made that the
    product was made from (file names; empty: the product itself)."""

    stage: str
    status: str
    detail: str = ""
    products: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "status": self.status, "detail": self.detail, "products": list(self.products)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StageRecord":
        return cls(str(d["stage"]), str(d["status"]), str(d.get("detail", "")), [str(p) for p in d.get("products", [])])


def _merged(records: list[StageRecord]) -> list[StageRecord]:
    """Records of the same stage, status and detail merged (products united), in first-seen order."""
    out: dict[tuple[str, str, str], StageRecord] = {}
    for r in records:
        key = (r.stage, r.status, r.detail)
        if key not in out:
            out[key] = StageRecord(r.stage, r.status, r.detail, [])
        out[key].products += [p for p in r.products if p not in out[key].products]
    return list(out.values())


def stages_of(path: str | os.PathLike) -> list[StageRecord]:
    """The stages that made the FITS product ``path`` (its own with the file's name as product),
    from its provenance; an input without oiflow's stage records is one :data:`EXTERNAL` record
    (status :data:`UNKNOWN`, the software that wrote it as detail), or the stage and status its
    older oiflow keywords name."""
    from astropy.io import fits

    name = Path(path).name
    try:
        header = fits.getheader(path, 0)
    except (OSError, ValueError) as exc:
        return [StageRecord(EXTERNAL, UNKNOWN, f"unreadable header: {exc}", [name])]
    prov = Provenance.from_header(header)
    if prov is None:
        return [StageRecord(EXTERNAL, UNKNOWN, str(header.get("PROCSOFT", "") or "not made by oiflow"), [name])]
    if not prov.stages:  # written before stage records existed
        status = V.OK if prov.status == "COMPLETE" else UNKNOWN
        return [StageRecord(prov.stage, status, "", [name])]
    return [StageRecord(r.stage, r.status, r.detail, r.products or [name]) for r in prov.stages]


def stage_history(upstream, stage: str, status: str, detail: str = "") -> list[StageRecord]:
    """The stages of a product of ``stage`` made from the FITS products ``upstream`` (their
    stages, :func:`stages_of`) with its own ``status`` (a verdict status) last."""
    V.rank(status)  # a known status
    records = [r for path in upstream for r in stages_of(path)]
    return _merged(records) + [StageRecord(stage, status, detail)]


def stages_summary(records: list[StageRecord]) -> str:
    """``reduce ok, calibrate ok, fit poor-fit``: per stage, in order, its worst status."""
    by_stage: dict[str, list[str]] = {}
    for r in records:
        by_stage.setdefault(r.stage, []).append(r.status)
    parts = []
    for stage, statuses in by_stage.items():
        known = [st for st in statuses if st in V.STATUSES]
        worst = max(known, key=V.rank) if len(known) == len(statuses) else UNKNOWN
        parts.append(f"{stage} {worst}")
    return ", ".join(parts)


@dataclass
class Provenance:
    """What produced a product: level, stage, status, settings and inputs."""

    level: int
    stage: str
    settings: dict[str, Any] = field(default_factory=dict)
    inputs: list[InputRecord] = field(default_factory=list)
    status: str = "COMPLETE"
    software: str = PROCSOFT
    stages: list[StageRecord] = field(default_factory=list)  # the stages that made the product, its own last

    @classmethod
    def for_inputs(cls, level: int, stage: str, inputs, settings=None, status="COMPLETE",
                   stages: list[StageRecord] | None = None):
        """``stages``: the stages that made the product (:func:`stage_history`)."""
        if settings is not None and hasattr(settings, "model_dump"):
            settings = settings.model_dump(mode="json")
        return cls(
            level=level,
            stage=stage,
            settings=dict(settings or {}),
            inputs=[i if isinstance(i, InputRecord) else InputRecord.from_path(i) for i in inputs],
            status=status,
            stages=list(stages or []),
        )

    @property
    def settings_hash(self) -> str:
        return settings_hash(self.settings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "software": self.software,
            "version": __version__,
            "calib_level": self.level,
            "stage": self.stage,
            "status": self.status,
            "settings_hash": self.settings_hash,
            "settings": self.settings,
            "inputs": [{"name": i.name, "sha256": i.sha256} for i in self.inputs],
            "stages": [r.to_dict() for r in self.stages],
        }

    def apply_to_header(self, header) -> None:
        """Write the provenance keywords into an astropy ``Header`` (in place)."""
        header["PROCSOFT"] = (self.software, "software that produced this file")
        header["CALIB_LV"] = (self.level, "ObsCore calib_level of this product")
        header["HIERARCH OIFLOW STAGE"] = self.stage
        header["HIERARCH OIFLOW STATUS"] = self.status
        header["HIERARCH OIFLOW SETHASH"] = self.settings_hash
        header["HIERARCH OIFLOW NINPUT"] = len(self.inputs)
        for k, rec in enumerate(self.inputs, start=1):
            header[f"HIERARCH OIFLOW IN{k} NAME"] = rec.name[:60]
            header[f"HIERARCH OIFLOW IN{k} SHA256"] = rec.sha256
        texts = ["oiflow settings " + canonical_json(self.settings)]
        if self.stages:
            header["HIERARCH OIFLOW STAGES"] = _fit_card(stages_summary(self.stages))
            texts.append(_STAGES + canonical_json([r.to_dict() for r in self.stages]))
        for text in texts:
            for start in range(0, len(text), 70):
                header.add_history(text[start : start + 70])

    @classmethod
    def from_header(cls, header) -> "Provenance | None":
        """Read back what :meth:`apply_to_header` wrote; None when absent."""
        if "HIERARCH OIFLOW STAGE" not in header and "OIFLOW STAGE" not in header:
            return None
        get = lambda k, d=None: header.get(f"HIERARCH OIFLOW {k}", header.get(f"OIFLOW {k}", d))  # noqa: E731
        n = int(get("NINPUT", 0))
        inputs = [InputRecord(str(get(f"IN{k} NAME")), str(get(f"IN{k} SHA256"))) for k in range(1, n + 1)]
        history = "".join(str(h) for h in header.get("HISTORY", []))
        settings = _history_json(history, "oiflow settings ", {})
        stages = [StageRecord.from_dict(d) for d in _history_json(history, _STAGES, [])]
        return cls(
            level=int(header.get("CALIB_LV", -1)),
            stage=str(get("STAGE")),
            settings=settings,
            inputs=inputs,
            status=str(get("STATUS", "")),
            software=str(header.get("PROCSOFT", "")),
            stages=stages,
        )


_STAGES = "oiflow stages "
#: the longest string value of a ``HIERARCH OIFLOW STAGES`` card (80 columns)
_STAGES_VALUE_MAX = 80 - len("HIERARCH OIFLOW STAGES = ''")


def _fit_card(text: str) -> str:
    return text if len(text) <= _STAGES_VALUE_MAX else text[: _STAGES_VALUE_MAX - 3] + "..."


def _history_json(history: str, marker: str, default):
    """The JSON value written after the LAST ``marker`` in the joined HISTORY text (a product
    whose header was copied from an input holds the input's blob first, its own last)."""
    if marker not in history:
        return default
    try:
        value, _ = json.JSONDecoder().raw_decode(history.rsplit(marker, 1)[1])
    except ValueError:
        return default
    return value
