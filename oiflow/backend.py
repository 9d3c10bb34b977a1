"""Array backends chosen by name and passed explicitly (no global "active backend").

``get_xp("numpy" | "cupy" | "array_api_strict")`` returns an array namespace that follows the
Python array API (through ``array_api_compat``). Numerical kernels take ``xp`` or infer it from
their inputs with :func:`array_namespace`; cupy is imported lazily, only when asked for.
scipy optimisers stay on the host: objective functions move parameters to the device and
return host floats (:func:`to_numpy`).
"""

from __future__ import annotations

import logging

import numpy as np

from .errors import ConfigError

log = logging.getLogger(__name__)

BACKENDS = ("numpy", "cupy", "array_api_strict")
#: numpy implements the 2023.12 array API (astype, concat, cumulative_sum, ...) from 2.1 on
_NUMPY_IS_ARRAY_API = getattr(np, "__array_api_version__", "0") >= "2023.12"


def get_xp(name: str = "numpy"):
    """Return the array namespace called ``name``.

    Raises :class:`ConfigError` for an unknown name and ``ImportError`` when the library is not
    installed (use :func:`resolve_device` for the "gpu, else numpy with a message" behaviour).
    """
    name = name.lower()
    if name == "numpy":
        if _NUMPY_IS_ARRAY_API:
            return np  # numpy ≥ 2.1 is itself an array-API namespace (saves array_api_compat's ~0.2 s clone of numpy)
        import array_api_compat.numpy as xp

        return xp
    if name == "cupy":
        import cupy  # noqa: F401  (lazy: only here)
        import array_api_compat.cupy as xp

        return xp
    if name == "array_api_strict":
        import array_api_strict as xp

        return xp
    raise ConfigError(f"unknown array backend {name!r}; choose one of {', '.join(BACKENDS)}")


def gpu_available() -> tuple[bool, str]:
    """(True, "") when cupy imports and sees a CUDA device, else (False, reason)."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or CUDA library errors at import
        return False, f"cupy is not installed ({exc.__class__.__name__})"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"no usable CUDA device ({exc})"
    if n < 1:
        return False, "no CUDA device"
    return True, ""


def resolve_device(device: str) -> tuple[str, str | None]:
    """Map a user ``--device cpu|gpu`` to a backend name.

    Returns ``(backend_name, message)``; ``message`` is set (once, for the caller to show) when
    the GPU was asked for but is not usable and numpy is used instead.
    """
    device = device.lower()
    if device in ("cpu", "numpy"):
        return "numpy", None
    if device in ("gpu", "cupy", "cuda"):
        ok, why = gpu_available()
        if ok:
            return "cupy", None
        return "numpy", f"GPU requested but unavailable: {why}; using numpy on the CPU"
    if device == "array_api_strict":
        return "array_api_strict", None
    raise ConfigError(f"unknown device {device!r}; use cpu or gpu")


def array_namespace(*arrays):
    """The array namespace of the given arrays: numpy itself when they are all numpy arrays and
    numpy implements the array API (≥ 2.1; array_api_compat's import costs ~0.2 s of a command's
    start-up), else array_api_compat's."""
    if _NUMPY_IS_ARRAY_API and all(isinstance(a, np.ndarray) for a in arrays):
        return np
    from array_api_compat import array_namespace as _ns

    return _ns(*arrays)


def to_numpy(a) -> np.ndarray:
    """Copy any backend's array to a host numpy array."""
    if isinstance(a, np.ndarray):
        return a
    mod = type(a).__module__
    if mod.startswith("cupy"):
        return a.get()
    try:
        return np.asarray(a)
    except Exception:  # array_api_strict may refuse __array__; DLPack always works on the CPU
        return np.from_dlpack(a)
