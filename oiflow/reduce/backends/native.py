"""native backend: oiflow's own P2VM reducer (:func:`oiflow.reduce.reduce_night`).

* runner ``local`` without an image: in-process (no subprocess at all);
* runner ``docker`` / ``apptainer`` (or ``local`` with ``image`` set): in the worker image, as
  ``python -m oiflow.reduce.backends.native_job RAW_DIR {output} --config JSON --engine … --image …``,
  which calls the same function with the raw directory mounted read-only and the runner's staged
  output directory as its output, and writes ``result.json`` (products, failures) there. The
  products are then moved into the output directory; the job's log is kept as ``native.log``.

The products are the same either way: byte for byte, apart from the file date (``DATE``), the
checksums that cover it (``CHECKSUM``; the ``DATASUM`` values are equal, only their comments carry
the write time) and the cards that record how the product was made (``HIERARCH OIFLOW ENGINE``:
``in-process``/``docker``/``apptainer``/``local``; ``… IMAGE``, ``… IMAGEID``). For that:

* the settings recorded in the products (and their hash) leave out where the reducer ran
  (runner, image, engine, instruments: :data:`oiflow.reduce.pipeline.EXECUTION_FIELDS`);
* the worker image is built from a wheelhouse pinned to the host environment's versions
  (``containers/build.sh``): the same numpy/OpenBLAS wheels;
* the reducer's arithmetic does not depend on the number of BLAS threads (its bootstrap sums
  are not BLAS products: :func:`oiflow.reduce.estimators._boot_sums`). The job runs with one
  BLAS thread (:data:`THREAD_ENV`: one job per night, parallelism across jobs), so comparing it
  with the in-process run, which uses every core, also checks that independence
  (``tests/containers/test_native_container.py``, ``tests/test_native_job.py``).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from ...config import ReduceConfig
from ...errors import EngineError
from ..runners import Job, LocalRunner, Runner
from .base import Backend, BackendResult, Requirements, failure_reason, job_limits, move_into, run_logged

DEFAULT_IMAGE = "localhost/oiflow-worker:latest"
RESULT_FILE = "result.json"  # written by oiflow.reduce.backends.native_job

#: the environment of the reducer's job (container or subprocess): one BLAS/OpenMP thread
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _reduce_night():
    from .. import reduce_night

    return reduce_night


class NativeBackend(Backend):
    name = "native"
    default_image = DEFAULT_IMAGE

    def requirements(self) -> Requirements:
        return Requirements(image=DEFAULT_IMAGE, command=("python", "-m", "oiflow.reduce.backends.native_job"),
                            produces="L1 OIFITS per observation (oiflow.reduce.reduce_night)")

    def reduce_night(self, raw_dir, out_dir, config: ReduceConfig, runner: Runner) -> BackendResult:
        raw_dir, out_dir = Path(raw_dir).resolve(), Path(out_dir).resolve()
        if isinstance(runner, LocalRunner) and config.image is None:
            res = _reduce_night()(raw_dir, out_dir, config, execution={"engine": "in-process"})
            return BackendResult(products=list(res.products), failures=list(res.failures))
        return self._in_container(raw_dir, out_dir, config, runner)

    def command(self, raw_dir: Path, config: ReduceConfig, execution: dict, python: str = "python") -> list[str]:
        cmd = [python, "-m", "oiflow.reduce.backends.native_job", str(raw_dir), "{output}",
               "--config", json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))]
        for key, value in execution.items():
            if value:
                cmd += [f"--{key.replace('_', '-')}", str(value)]
        return cmd

    def _in_container(self, raw_dir: Path, out_dir: Path, config: ReduceConfig, runner: Runner) -> BackendResult:
        result = BackendResult()
        out_dir.mkdir(parents=True, exist_ok=True)
        log_path = out_dir / "native.log"
        work = out_dir / ".native-run"  # the runner's output: staged beside it, renamed here on success
        image = self.image(config)
        try:
            execution = {"engine": runner.name, "image": None if isinstance(runner, LocalRunner) else image,
                         "image_id": runner.image_id(image)}
        except EngineError as exc:
            result.failures.append((raw_dir.name, f"native reducer: {exc}"))
            return result
        python = sys.executable if isinstance(runner, LocalRunner) else "python"
        job = Job(command=self.command(raw_dir, config, execution, python), image=image, inputs=[raw_dir],
                  output=work, env=THREAD_ENV, name=f"native reducer ({raw_dir.name})",
                  network=config.engine.network, **job_limits(config))
        try:
            run_logged(runner, job, log_path, result)
        except EngineError as exc:
            result.failures.append((raw_dir.name, failure_reason("native reducer", exc, log_path)))
            return result
        try:
            summary = json.loads((work / RESULT_FILE).read_text())
            for name in summary["products"]:
                result.products.append(move_into(work / name, out_dir))
            result.failures += [tuple(f) for f in summary["failures"]]
        except (OSError, ValueError, KeyError) as exc:
            result.failures.append((raw_dir.name, f"native reducer: unreadable {RESULT_FILE} ({exc}) "
                                                  f"[log: {log_path}]"))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return result
