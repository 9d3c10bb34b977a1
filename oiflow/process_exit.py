"""A process's end without Python's slow teardown of its objects.

When an interpreter exits, its ``atexit`` handlers run, and then it tears its modules down with
several passes of the cyclic garbage collector over every object it holds. In a process that
imported Prefect, Dask, scipy, astropy and matplotlib (the flow process of ``oiflow run``, a
Dask worker that ran units) those passes took 0.5–0.7 s on 2 cores after the work was done —
for the command line, after the summary was printed; for each worker, while its cluster waited
for it to exit. :func:`collect_then_freeze` does one collection (cyclic garbage with finalizers
— an object with ``__del__`` in a reference cycle — is finalized as usual), then freezes what survives
(:func:`gc.freeze`: the collector ignores it from then on), so the teardown frees objects by
reference count only: ~0.1 s. The ``atexit`` handlers still run, and files, sockets and child
processes are still closed and joined as before; the operating system reclaims the rest.
"""

from __future__ import annotations

import atexit
import gc

_registered = [False]


def collect_then_freeze() -> None:
    """Collect the cyclic garbage once, then keep the collector off every object alive now."""
    gc.collect()
    gc.freeze()


def freeze_at_exit() -> None:
    """Call :func:`collect_then_freeze` at this process's exit, after the ``atexit`` handlers
    registered later (Prefect's and Dask's, registered when they are first used); once per process."""
    if not _registered[0]:
        _registered[0] = True
        atexit.register(collect_then_freeze)
