"""native backend: oiflow's own P2VM reducer (``oiflow.reduce.reduce_night``).

* runner ``local`` without an image: in-process (no subprocess at all);
* runner ``docker`` / ``apptainer`` (or ``local`` with ``image`` set): in the worker image, as
  ``python -m oiflow.reduce.backends.native RAW_DIR OUT_DIR CONFIG_JSON``, which calls the same
  function and writes ``result.json`` (products, failures) beside the products.

Either way the products are those of ``reduce_night``; the container run is meant to give
byte-identical products (apart from dates) to the in-process run (checked once the native
reducer is merged: phase 2).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from ...config import ReduceConfig
from ...errors import EngineError, ReductionError
from ...provenance import write_json_atomic
from ..runners import Job, LocalRunner, Runner
from .base import Backend, BackendResult, Requirements, failure_reason, job_limits, move_into, run_logged

DEFAULT_IMAGE = "localhost/oiflow-worker:latest"


def _reduce_night():
    try:
        from .. import reduce_night
    except ImportError as exc:  # the native reducer lives in oiflow.reduce (another module's job)
        raise ReductionError(f"the native reducer (oiflow.reduce.reduce_night) is not available: {exc}") from None
    return reduce_night


class NativeBackend(Backend):
    name = "native"
    default_image = DEFAULT_IMAGE

    def requirements(self) -> Requirements:
        return Requirements(image=DEFAULT_IMAGE, command=("python", "-m", "oiflow.reduce.backends.native"),
                            produces="L1 OIFITS per observation (oiflow.reduce.reduce_night)")

    def reduce_night(self, raw_dir, out_dir, config: ReduceConfig, runner: Runner) -> BackendResult:
        raw_dir, out_dir = Path(raw_dir).resolve(), Path(out_dir).resolve()
        if isinstance(runner, LocalRunner) and config.image is None:
            res = _reduce_night()(raw_dir, out_dir, config)
            return BackendResult(products=list(res.products), failures=list(res.failures))
        return self._in_container(raw_dir, out_dir, config, runner)

    def _in_container(self, raw_dir, out_dir, config, runner) -> BackendResult:
        result = BackendResult()
        work = out_dir / ".native-run"
        with tempfile.TemporaryDirectory(prefix=".native-config.", dir=out_dir.parent if out_dir.parent.exists()
                                         else None) as cfg_dir:
            cfg = Path(cfg_dir) / "reduce.json"
            write_json_atomic(config.model_dump(mode="json"), cfg)
            python = "python" if not isinstance(runner, LocalRunner) else sys.executable
            job = Job(command=[python, "-m", "oiflow.reduce.backends.native", str(raw_dir), "{output}", str(cfg)],
                      image=self.image(config), inputs=[raw_dir, Path(cfg_dir)], output=work,
                      name=f"native reducer ({raw_dir.name})", network=config.engine.network, **job_limits(config))
            log_path = out_dir / "native.log"
            out_dir.mkdir(parents=True, exist_ok=True)
            try:
                run_logged(runner, job, log_path, result)
            except EngineError as exc:
                result.failures.append((raw_dir.name, failure_reason("native reducer", exc, log_path)))
                return result
        summary = json.loads((work / "result.json").read_text())
        for name in summary["products"]:
            result.products.append(move_into(work / name, out_dir))
        result.failures += [tuple(f) for f in summary["failures"]]
        return result


def main(argv: list[str]) -> int:
    """Entry point inside the worker image: RAW_DIR OUT_DIR CONFIG_JSON."""
    raw_dir, out_dir, cfg = argv
    config = ReduceConfig.model_validate(json.loads(Path(cfg).read_text()))
    res = _reduce_night()(Path(raw_dir), Path(out_dir), config)
    products = [str(Path(p).resolve().relative_to(Path(out_dir).resolve())) for p in res.products]
    write_json_atomic({"products": products, "failures": [list(f) for f in res.failures]},
                      Path(out_dir) / "result.json")
    print(f"native reducer: {len(products)} products, {len(res.failures)} failures")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
