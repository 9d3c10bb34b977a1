"""The native reducer's entry point in the worker image (the native backend's container job)::

    python -m oiflow.reduce.backends.native_job RAW_DIR OUT_DIR [--config JSON] [--engine E --image I --image-id ID]

Reduces the night with :func:`oiflow.reduce.reduce_night` into OUT_DIR and writes
``OUT_DIR/result.json`` ({"products": [names], "failures": [[item, reason]]}). Exit status 0 when
the night was processed (even with failed observations: they are in result.json), 3 when the
night as a whole could not be (e.g. no OBJECT exposure), 2 for bad arguments.
Kept apart from :mod:`oiflow.reduce.backends.native` so that ``-m`` does not import it twice.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ...config import ReduceConfig
from ...errors import ReductionError
from ...provenance import write_json_atomic
from .native import RESULT_FILE, _reduce_night


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m oiflow.reduce.backends.native_job",
                                 description="oiflow's native reducer on one night directory (worker image entry point)")
    ap.add_argument("raw_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--config", default="{}", help="ReduceConfig as JSON")
    ap.add_argument("--engine", default=None)
    ap.add_argument("--image", default=None)
    ap.add_argument("--image-id", default=None)
    args = ap.parse_args(argv)
    config = ReduceConfig.model_validate(json.loads(args.config))
    execution = {"engine": args.engine or "local", "image": args.image, "image_id": args.image_id}
    try:
        res = _reduce_night()(args.raw_dir, args.out_dir, config, execution=execution)
    except ReductionError as exc:  # the night as a whole (e.g. no OBJECT exposure)
        print(f"native reducer: {exc}", file=sys.stderr)
        return 3
    out = args.out_dir.resolve()
    products = [str(Path(p).resolve().relative_to(out)) for p in res.products]
    write_json_atomic({"products": products, "failures": [list(f) for f in res.failures]}, out / RESULT_FILE)
    print(f"native reducer: {len(products)} products, {len(res.failures)} failures "
          f"(threads: OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
