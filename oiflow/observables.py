"""Observable assembly: V², closure phases and triple products from complex visibilities.

The one home for baseline/triangle orientation (used by the simulator, the reducer, the fitter
and the imager's forward model). Conventions (see :mod:`oiflow`):

* baseline (i, j), i < j, has (u, v) = (r_j − r_i)/λ and visibility V_ij;
* triangle (i, j, k), i < j < k, is stored as STA_INDEX (i, j, k), (U1, V1) = baseline ij,
  (U2, V2) = baseline jk; the closing baseline ki has (U3, V3) = −(U1 + U2, V1 + V2);
* bispectrum B = V_ij · V_jk · V_ki = V_ij · V_jk · conj(V_ik) (real sky: V(−u) = conj V(u));
* T3PHI = arg B, wrapped to (−π, π].

All functions work on any array-API namespace (numpy, cupy, array_api_strict).
"""

from __future__ import annotations

import itertools
import math

from .backend import array_namespace


def baselines(n_tel: int) -> list[tuple[int, int]]:
    """Baselines (i, j) with i < j, in the standard order (12, 13, 14, 23, 24, 34 for 4T)."""
    return list(itertools.combinations(range(n_tel), 2))


def triangles(n_tel: int) -> list[tuple[int, int, int]]:
    """Closure triangles (i, j, k) with i < j < k (123, 124, 134, 234 for 4T)."""
    return list(itertools.combinations(range(n_tel), 3))


def triangle_baselines(n_tel: int) -> list[tuple[int, int, int]]:
    """For each triangle (i, j, k): indices into :func:`baselines` of ij, jk and ik."""
    index = {b: n for n, b in enumerate(baselines(n_tel))}
    return [(index[(i, j)], index[(j, k)], index[(i, k)]) for i, j, k in triangles(n_tel)]


def wrap_phase(phi, xp=None):
    """Wrap angles (radians) to (−π, π]."""
    xp = xp or array_namespace(phi)
    wrapped = phi - 2 * math.pi * xp.round(phi / (2 * math.pi))
    return xp.where(wrapped <= -math.pi, wrapped + 2 * math.pi, wrapped)


def vis2(vis, xp=None):
    """Squared visibility |V|²."""
    xp = xp or array_namespace(vis)
    return xp.real(vis) ** 2 + xp.imag(vis) ** 2


def bispectrum(v_ij, v_jk, v_ik, xp=None):
    """B = V_ij · V_jk · conj(V_ik) for triangle (i, j, k)."""
    xp = xp or array_namespace(v_ij)
    return v_ij * v_jk * xp.conj(v_ik)


def closure_phase(v_ij, v_jk, v_ik, xp=None):
    """arg(V_ij V_jk conj V_ik) in radians, in (−π, π]."""
    xp = xp or array_namespace(v_ij)
    b = bispectrum(v_ij, v_jk, v_ik, xp)
    return xp.atan2(xp.imag(b), xp.real(b))


def t3_uv(u1, v1, u2, v2):
    """The three (u, v) of a triangle stored as OIFITS (U1, V1, U2, V2): ij, jk and ki."""
    return (u1, v1), (u2, v2), (-(u1 + u2), -(v1 + v2))


def t3_from_visfunc(visfunc, u1, v1, u2, v2):
    """Bispectrum V(u1) · V(u2) · V(−u1−u2) from a function ``visfunc(u, v)`` of the sky."""
    (a, b), (c, d), (e, f) = t3_uv(u1, v1, u2, v2)
    return visfunc(a, b) * visfunc(c, d) * visfunc(e, f)
