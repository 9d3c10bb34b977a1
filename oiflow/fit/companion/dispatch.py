"""Where chunks of nodes or positions run: a thread pool in this process, or the workers of a
``dask.distributed`` client (the context scattered once to all of them)."""

from __future__ import annotations


def _map_threads(fn, items, threads: int):
    """[fn(x) for x in items], in a thread pool when there is more than one item and thread."""
    if threads <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
        return list(pool.map(fn, items))


def _backend_name(xp) -> str:
    name = getattr(xp, "__name__", "numpy")
    for b in ("cupy", "array_api_strict", "numpy"):
        if b in name:
            return b
    return "numpy"


def _on_workers(client, fn, chunks, ctx, *args) -> list:
    """``[fn(c, ctx, *args) for c in chunks]`` on the workers of the ``dask.distributed`` client,
    with ``ctx`` scattered once to all of them."""
    ctx_future = client.scatter(ctx, broadcast=True)
    k = len(chunks)
    return client.gather(client.map(fn, chunks, [ctx_future] * k, *[[a] * k for a in args], pure=False))
