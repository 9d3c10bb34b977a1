"""Batched Levenberg–Marquardt: one fit of (x, y, flux ratio, diameter) from every grid node, all
nodes iterating together as arrays (4×4 normal equations per node), nodes that converge or meet
another dropped from the active set."""

from __future__ import annotations

import numpy as np

from ...backend import get_xp, to_numpy
from .device import BinaryContext, _Device
from .kernel import _jacobian_blocks, _residuals, _terms


def _normal_equations(t: dict, f, r, dev: _Device):
    """JᵀJ (n, 4, 4) and Jᵀr (n, 4) in double precision from the terms (F, n) and the residuals
    (M, n): sums over the data axis of products of the single-precision Jacobian columns, block
    by block (the Jacobian is never assembled)."""
    xp = dev.xp
    r32 = xp.astype(r, xp.float32)
    A = [[0.0] * 4 for _ in range(4)]
    g = [0.0] * 4
    start = 0
    for cols in _jacobian_blocks(t, f, dev):
        m = cols[0].shape[0]
        rb = r32[start:start + m, :]
        for i in range(4):
            g[i] = g[i] + xp.sum(cols[i] * rb, axis=0)
            for j in range(i, 4):
                A[i][j] = A[i][j] + xp.sum(cols[i] * cols[j], axis=0)
        start += m
    rows = [xp.stack([A[min(i, j)][max(i, j)] for j in range(4)], axis=1) for i in range(4)]
    return xp.astype(xp.stack(rows, axis=1), xp.float64), xp.astype(xp.stack(g, axis=1), xp.float64)


def _project(p, xp):
    """Keep the flux ratio and the diameter non-negative (|·|, as CANDID)."""
    return xp.stack([p[:, 0], p[:, 1], xp.abs(p[:, 2]), xp.abs(p[:, 3])], axis=1)


def solve_nodes(p0, ctx: BinaryContext, xp=None, n_iter: int = 30, tol: float = 1e-4, merge: float = 0.02):
    """Levenberg–Marquardt from every row of ``p0`` at once; returns host arrays (p, χ²).

    A node stops when an accepted step improves its χ² by less than ``tol`` (relative) or its
    damping exceeds 1e4. Nodes that have run into the same place (x, y within ``merge`` mas and
    flux within 1 %) are merged, the one with the higher χ² taking the other's result; the
    arrays are compacted to the nodes still moving, so late iterations cost little."""
    xp = xp or get_xp("numpy")
    dev = _Device(ctx, xp)
    p_all = _project(xp.asarray(np.asarray(p0, float)), xp)
    n = p_all.shape[0]
    t = _terms(p_all, dev, True)
    r = _residuals(t, p_all[:, 2], dev)
    chi2_all = xp.sum(r * r, axis=0)
    A, g = _normal_equations(t, p_all[:, 2], r, dev)
    p, chi2 = p_all, chi2_all
    lam = xp.full((n,), 1e-3, dtype=xp.float64)
    ids = np.arange(n)  # node index of each active row (host)
    follow = np.arange(n)  # merged nodes point to the node that carries on for them
    eye = xp.eye(4, dtype=xp.float64)[None, ...]
    for it in range(n_iter):
        step = xp.linalg.solve(A + lam[:, None, None] * (A * eye + 1e-12 * eye), g[:, :, None])[:, :, 0]
        trial = _project(p - step, xp)
        t_t = _terms(trial, dev, True)
        r_t = _residuals(t_t, trial[:, 2], dev)
        chi2_t = xp.sum(r_t * r_t, axis=0)
        ok = xp.isfinite(chi2_t) & (chi2_t < chi2)
        gain = xp.where(ok, (chi2 - chi2_t) / chi2, xp.zeros_like(chi2))
        p = xp.where(ok[:, None], trial, p)
        chi2 = xp.where(ok, chi2_t, chi2)
        lam = xp.where(ok, xp.maximum(lam / 5.0, xp.full_like(lam, 1e-7)), lam * 4.0)
        ok_h = to_numpy(ok).astype(bool)
        if ok_h.all():
            A, g = _normal_equations(t_t, trial[:, 2], r_t, dev)
        elif ok_h.any():  # the normal equations of the accepted steps only
            sel = xp.asarray(np.flatnonzero(ok_h))
            sub = {k: xp.take(v, sel, axis=1) for k, v in t_t.items()}
            A_s, g_s = _normal_equations(sub, xp.take(trial[:, 2], sel, axis=0), xp.take(r_t, sel, axis=1), dev)
            pos = xp.asarray(np.cumsum(ok_h) - 1)
            okx = xp.asarray(ok_h)
            A = xp.where(okx[:, None, None], xp.take(A_s, pos, axis=0), A)
            g = xp.where(okx[:, None], xp.take(g_s, pos, axis=0), g)
        done = to_numpy((ok & (gain < tol)) | (lam > 1e4)).copy()
        if merge > 0 and it >= 4 and ids.size > 1:
            ph, ch = to_numpy(p), to_numpy(chi2)
            dist = np.hypot(ph[:, None, 0] - ph[None, :, 0], ph[:, None, 1] - ph[None, :, 1])
            same = (dist < merge) & (np.abs(ph[:, None, 2] - ph[None, :, 2]) <= 0.01 * np.abs(ph[None, :, 2]))
            worse = same & ((ch[:, None] > ch[None, :]) | ((ch[:, None] == ch[None, :])
                                                           & (ids[:, None] > ids[None, :])))
            for i in np.flatnonzero(worse.any(axis=1) & ~done):
                j = np.flatnonzero(worse[i])[0]
                follow[ids[i]] = ids[j]
                done[i] = True
        if done.any():
            p_all, chi2_all = _scatter(p_all, chi2_all, ids, p, chi2, xp)
            keep = np.flatnonzero(~done)
            if keep.size == 0:
                break
            k = xp.asarray(keep)
            p, chi2, lam = xp.take(p, k, axis=0), xp.take(chi2, k, axis=0), xp.take(lam, k, axis=0)
            A, g = xp.take(A, k, axis=0), xp.take(g, k, axis=0)
            ids = ids[keep]
    else:
        p_all, chi2_all = _scatter(p_all, chi2_all, ids, p, chi2, xp)
    p_host, chi2_host = to_numpy(p_all).copy(), to_numpy(chi2_all).copy()
    for i in range(n):  # resolve chains of merges
        j = i
        while follow[j] != j:
            j = follow[j]
        p_host[i], chi2_host[i] = p_host[j], chi2_host[j]
    return p_host, chi2_host


def _scatter(p_all, chi2_all, ids, p, chi2, xp):
    """Write the rows of the active subset (node indices ``ids``) back into the full arrays,
    with take + where only (no item assignment, so any array-API library works)."""
    n = p_all.shape[0]
    mask = np.zeros(n, bool)
    mask[ids] = True
    pos = np.zeros(n, np.int64)
    pos[ids] = np.arange(ids.size)
    m, q = xp.asarray(mask), xp.asarray(pos)
    return (xp.where(m[:, None], xp.take(p, q, axis=0), p_all),
            xp.where(m, xp.take(chi2, q, axis=0), chi2_all))


def _solve_chunk(p0, ctx, backend):
    """Dask/worker entry point: (p0, context, backend name) → (p, χ²)."""
    return solve_nodes(p0, ctx, get_xp(backend))
