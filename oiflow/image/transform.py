"""Image ↔ visibility transforms (the one home for them: simulator image skies, the fitter's
image component and imaging all call these).

Image grid convention (as displayed on the sky and as stored in FITS with CDELT1 < 0):
``image[iy, ix]`` with North up (y grows with ``iy``) and East left (x grows as ``ix``
decreases). For an ``n``-pixel axis the reference pixel is ``n // 2`` (0-based), so

    x_east(ix)  = −(ix − n//2) · pixel_size
    y_north(iy) = +(iy − n//2) · pixel_size

and V(u, v) = Σ image · exp(−2πi(u x + v y)) (OIFITS sign convention, see :mod:`oiflow`).

Transforms for imaging are objects built once for a fixed set of frequencies (u, v) and an
n×n grid, with two methods:

* ``forward(image)`` → complex visibilities ``A · image`` (not normalised by the flux);
* ``adjoint(g)`` → real image ``Re(Aᴴ g)``: the gradient of any real function of the
  visibilities, given ``g = ∂f/∂Re V + i ∂f/∂Im V`` (the chain rule for a real image).

Backends (:func:`make_transform`):

* :class:`NufftTransform` — finufft (CPU, type 2 forward / type 1 adjoint, plans made once) or
  cufinufft (GPU) when installed. Cost O(M + n² log n).
* :class:`MatrixDFT` — the exact separable DFT as two matrix products, written once against the
  array API: the reference on the CPU, the GPU path with cupy when cufinufft is absent, and the
  path exercised in CI with ``array_api_strict``. Cost O(M·n²) time, O(M·n) memory.

With k = ix − n//2 and l = iy − n//2 the phase is −2πi(u x + v y) = i(k·X + l·Y) with
X = 2π u p and Y = −2π v p: exactly finufft's centred mode ordering with isign = +1.
"""

from __future__ import annotations

import logging
import math

from ..backend import array_namespace, to_numpy
from ..errors import ConfigError, ImagingError

log = logging.getLogger(__name__)

TRANSFORMS = ("auto", "nufft", "dft")
#: the last guard before native code: frequencies beyond this many cycles per pixel (the grid
#: samples up to 0.5) are damaged input, never data of this grid; finufft aborts or corrupts its
#: heap on non-finite or overflowing points, so both are refused here with ImagingError
MAX_CYCLES_PER_PIXEL = 1e3


def check_frequencies(u, v, pixel_size: float) -> None:
    """Raise :class:`~oiflow.errors.ImagingError` when a frequency (cycles/rad) is not finite or
    lies beyond :data:`MAX_CYCLES_PER_PIXEL` cycles per pixel of ``pixel_size`` rad, or the pixel
    size is not a finite positive number. Data are checked where they are read
    (:func:`oiflow.oifits.views.check_usable_points`, naming file and column); this is the
    guard for every other caller."""
    import numpy as np

    if not (math.isfinite(pixel_size) and pixel_size > 0):
        raise ImagingError(f"pixel size {pixel_size!r} rad is not a finite positive number")
    for name, a in (("u", u), ("v", v)):
        a = np.asarray(to_numpy(a), dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            bad = ~(np.isfinite(a) & (np.abs(a) * pixel_size <= MAX_CYCLES_PER_PIXEL))
        if bad.any():
            k = np.flatnonzero(bad)
            raise ImagingError(f"{k.size} of {a.size} frequencies {name} are non-finite or beyond "
                               f"{MAX_CYCLES_PER_PIXEL:g} cycles per pixel (first at index {int(k[0])}: "
                               f"{a[k[0]]!r} cycles/rad, pixel {pixel_size!r} rad): refused before the transform")


def pixel_coordinates(n: int, pixel_size: float, xp):
    """(x_east, y_north) 1-D coordinate vectors in radians for an n×n grid."""
    idx = xp.arange(n, dtype=xp.float64) - (n // 2)
    return -idx * pixel_size, idx * pixel_size


def _phasor(phase, xp):
    """exp(i·phase) as a complex array (array-API: built from cos and sin)."""
    c = xp.astype(xp.cos(phase), xp.complex128)
    s = xp.astype(xp.sin(phase), xp.complex128)
    return c + s * 1j


def dft(image, pixel_size: float, u, v, xp=None):
    """Exact (separable) discrete Fourier transform of ``image`` at frequencies (u, v).

    ``u``, ``v``: 1-D arrays in cycles/radian; ``pixel_size`` in radians. Returns complex
    visibilities (not normalised by the total flux). Cost O(M·n²) through two matrix products.
    """
    xp = xp or array_namespace(image)
    ny, nx = image.shape
    return MatrixDFT(u, v, (ny, nx), pixel_size, xp).forward(image)


def dft_adjoint(g, pixel_size: float, u, v, shape, xp=None):
    """Re(Aᴴ g) for the exact DFT of :func:`dft` (the gradient back-projection)."""
    xp = xp or array_namespace(g)
    return MatrixDFT(u, v, shape, pixel_size, xp).adjoint(g)


def _shape2(shape) -> tuple[int, int]:
    if isinstance(shape, int):
        return shape, shape
    ny, nx = shape
    return int(ny), int(nx)


class MatrixDFT:
    """Exact DFT as two matrix products: V = Σ_x (E_y · I)[j, x] · E_x[j, x].

    Array-API code (numpy, cupy, array_api_strict). Memory 2·M·n complex numbers.
    """

    name = "dft"

    def __init__(self, u, v, shape, pixel_size: float, xp=None):
        xp = xp or array_namespace(u)
        check_frequencies(u, v, float(pixel_size))
        self.xp = xp
        self.ny, self.nx = _shape2(shape)
        self.pixel_size = float(pixel_size)
        u = xp.asarray(u, dtype=xp.float64)
        v = xp.asarray(v, dtype=xp.float64)
        self.m = int(u.shape[0])
        x, _ = pixel_coordinates(self.nx, pixel_size, xp)
        _, y = pixel_coordinates(self.ny, pixel_size, xp)
        two_pi = 2.0 * math.pi
        self.ex = _phasor(-two_pi * (u[:, None] * x[None, :]), xp)  # (M, nx)
        self.ey = _phasor(-two_pi * (v[:, None] * y[None, :]), xp)  # (M, ny)
        self._ex_c = xp.conj(self.ex)
        self._ey_ct = xp.matrix_transpose(xp.conj(self.ey))  # (ny, M)

    def forward(self, image):
        xp = self.xp
        img = xp.astype(image, xp.complex128)
        tmp = self.ey @ img  # (M, nx)
        return xp.sum(tmp * self.ex, axis=1)

    def adjoint(self, g):
        xp = self.xp
        g = xp.astype(g, xp.complex128)
        out = self._ey_ct @ (g[:, None] * self._ex_c)  # (ny, nx)
        return xp.real(out)


def _cufinufft_available() -> bool:
    try:
        import cufinufft  # noqa: F401
    except Exception:
        return False
    return True


def _is_numpy(xp) -> bool:
    return "numpy" in getattr(xp, "__name__", "")


class NufftTransform:
    """Non-uniform FFT (finufft on numpy arrays, cufinufft on cupy arrays).

    Plans are made once (points set once); each call executes one transform. ``eps`` is the
    requested relative accuracy (finufft's: the error of each output is ≲ eps·Σ|input|, i.e.
    ≲ eps in visibility units for a unit-flux image).

    The type-1 (adjoint) and type-2 (forward) transforms share the spreading kernel, the grid and
    its deconvolution, so they are exact adjoints of each other whatever ``eps`` (measured:
    ⟨A x, g⟩ = ⟨x, Aᴴ g⟩ to ~1e-15 relative in double precision at eps = 1e-5 … 1e-9): the
    gradient is the exact gradient of the objective computed with the same forward transform,
    and a lower accuracy only moves the model, not the consistency the line search needs.

    ``upsampfac``: finufft's grid oversampling, 2.0 (its default) or 1.25 (smaller FFT and fewer
    grid cells, wider kernel: faster when the points are few per Fourier mode, which is the case
    of optical interferometry: measured ×2–×10 for 600 points on 128², ×1.2 for 200,000 on 256²).
    ``precision``: ``"double"`` or ``"single"`` (complex64 transforms, eps ≥ 1e-6; about twice as
    fast for many points; the results are returned in double precision).
    """

    name = "nufft"

    def __init__(self, u, v, shape, pixel_size: float, xp=None, eps: float = 1e-9, nthreads: int = 1,
                 upsampfac: float | None = None, precision: str = "double"):
        xp = xp or array_namespace(u)
        if precision not in ("double", "single"):
            raise ConfigError(f"precision must be 'double' or 'single', not {precision!r}")
        check_frequencies(u, v, float(pixel_size))
        self.xp = xp
        self.ny, self.nx = _shape2(shape)
        self.pixel_size = float(pixel_size)
        self.precision = precision
        self.eps = max(float(eps), 1e-6) if precision == "single" else float(eps)
        self.gpu = "cupy" in getattr(xp, "__name__", "")
        two_pi = 2.0 * math.pi
        cdtype = "complex64" if precision == "single" else "complex128"
        opts = dict(eps=self.eps)
        if upsampfac is not None:
            opts["upsampfac"] = float(upsampfac)
        if self.gpu:
            import cupy as cp
            import cufinufft

            rdtype = cp.float32 if precision == "single" else cp.float64
            u = cp.asarray(u, dtype=cp.float64)
            v = cp.asarray(v, dtype=cp.float64)
            self.m = int(u.shape[0])
            self._X = (two_pi * u * pixel_size).astype(rdtype)
            self._Y = (-two_pi * v * pixel_size).astype(rdtype)
            self._cdtype = cp.complex64 if precision == "single" else cp.complex128
            self._fwd = cufinufft.Plan(2, (self.ny, self.nx), isign=1, dtype=cdtype, **opts)
            self._adj = cufinufft.Plan(1, (self.ny, self.nx), isign=-1, dtype=cdtype, **opts)
            self._fwd.setpts(self._Y, self._X)
            self._adj.setpts(self._Y, self._X)
        else:
            import finufft
            import numpy as np

            rdtype = np.float32 if precision == "single" else np.float64
            u = np.ascontiguousarray(to_numpy(u), dtype=np.float64)
            v = np.ascontiguousarray(to_numpy(v), dtype=np.float64)
            self.m = int(u.shape[0])
            # keep the point arrays alive: finufft plans reference them
            self._X = np.ascontiguousarray(two_pi * u * pixel_size, dtype=rdtype)
            self._Y = np.ascontiguousarray(-two_pi * v * pixel_size, dtype=rdtype)
            self._cdtype = np.complex64 if precision == "single" else np.complex128
            opts["nthreads"] = nthreads
            self._fwd = finufft.Plan(2, (self.ny, self.nx), isign=1, dtype=cdtype, **opts)
            self._adj = finufft.Plan(1, (self.ny, self.nx), isign=-1, dtype=cdtype, **opts)
            self._fwd.setpts(self._Y, self._X)
            self._adj.setpts(self._Y, self._X)

    def forward(self, image):
        if not self.gpu:
            import numpy as np

            out = self._fwd.execute(np.asarray(image, dtype=self._cdtype, order="C"))
            return out if out.dtype == np.complex128 else out.astype(np.complex128)
        xp = self.xp
        out = self._fwd.execute(xp.astype(xp.asarray(image), self._cdtype))
        return xp.astype(out, xp.complex128)

    def adjoint(self, g):
        if not self.gpu:
            import numpy as np

            out = self._adj.execute(np.asarray(g, dtype=self._cdtype, order="C"))
            return np.ascontiguousarray(out.real, dtype=np.float64)
        xp = self.xp
        out = self._adj.execute(xp.astype(xp.asarray(g), self._cdtype))
        return xp.astype(xp.real(out), xp.float64)


def make_transform(u, v, shape, pixel_size: float, xp, method: str = "auto", eps: float = 1e-9,
                   upsampfac: float | None = None, precision: str = "double"):
    """The transform for frequencies (u, v) (cycles/rad) on an n×n grid of ``pixel_size`` rad.

    ``eps``, ``upsampfac`` and ``precision`` go to :class:`NufftTransform` (the matrix DFT is exact).

    ``method``: ``"nufft"`` (finufft / cufinufft), ``"dft"`` (exact matrix DFT) or ``"auto"``:
    finufft for numpy, cufinufft for cupy when installed (else the matrix DFT, which is fast
    on a GPU), the matrix DFT for any other array-API namespace (array_api_strict).
    """
    if method not in TRANSFORMS:
        raise ConfigError(f"unknown transform {method!r}; use one of {', '.join(TRANSFORMS)}")
    name = getattr(xp, "__name__", "")
    is_numpy = "numpy" in name
    is_cupy = "cupy" in name
    if method == "auto":
        if is_numpy:
            method = "nufft"
        elif is_cupy:
            method = "nufft" if _cufinufft_available() else "dft"
        else:
            method = "dft"
    if method == "nufft":
        if not (is_numpy or is_cupy):
            raise ConfigError(f"the NUFFT transform needs numpy or cupy arrays, not {name}")
        if is_cupy and not _cufinufft_available():
            raise ConfigError("cufinufft is not installed: use the dft transform on the GPU")
        return NufftTransform(u, v, shape, pixel_size, xp, eps=eps, upsampfac=upsampfac, precision=precision)
    return MatrixDFT(u, v, shape, pixel_size, xp)
