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


@dataclass
class Provenance:
    """What produced a product: level, stage, status, settings and inputs."""

    level: int
    stage: str
    settings: dict[str, Any] = field(default_factory=dict)
    inputs: list[InputRecord] = field(default_factory=list)
    status: str = "COMPLETE"
    software: str = PROCSOFT

    @classmethod
    def for_inputs(cls, level: int, stage: str, inputs, settings=None, status="COMPLETE"):
        if settings is not None and hasattr(settings, "model_dump"):
            settings = settings.model_dump(mode="json")
        return cls(
            level=level,
            stage=stage,
            settings=dict(settings or {}),
            inputs=[i if isinstance(i, InputRecord) else InputRecord.from_path(i) for i in inputs],
            status=status,
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
        text = "oiflow settings " + canonical_json(self.settings)
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
        settings: dict[str, Any] = {}
        marker = "oiflow settings "
        if marker in history:
            blob = history.split(marker, 1)[1]
            try:
                settings, _ = json.JSONDecoder().raw_decode(blob)
            except ValueError:
                settings = {}
        return cls(
            level=int(header.get("CALIB_LV", -1)),
            stage=str(get("STAGE")),
            settings=settings,
            inputs=inputs,
            status=str(get("STATUS", "")),
            software=str(header.get("PROCSOFT", "")),
        )
