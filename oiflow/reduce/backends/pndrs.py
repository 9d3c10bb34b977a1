"""pndrs backend: PIONIER's reduction software (Yorick), run in its own image.

Contract: a night directory of raw ``PIONI*.fits`` in; pndrs's ``*_oidata*.fits`` out, with
pndrs's log; a failure of pndrs fails the night with its log named.

pndrs writes beside its input (products in ``<parent>/<night>_v<version>_abcd/`` and
``…_calib/``, a ``pnlog.fits`` cache in the night directory), but inputs are mounted read-only.
So the job links the raw files into ``{output}/<night>/`` and runs ``pndrsReduce`` there
(``-calibrate`` as well when ``calibrate=True``); the link directory is removed afterwards.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ...config import ReduceConfig
from ...errors import EngineError
from ...provenance import Provenance, stage_history, write_hdulist_atomic
from ...verdict import OK
from ..runners import Job, Runner
from .base import Backend, BackendResult, Requirements, failure_reason, job_limits, run_logged

DEFAULT_IMAGE = "localhost/oiflow-pndrs:latest"


class PndrsBackend(Backend):
    name = "pndrs"
    default_image = DEFAULT_IMAGE

    def __init__(self, calibrate: bool = False, program: str = "pndrsReduce"):
        self.calibrate = calibrate
        self.program = program

    def requirements(self) -> Requirements:
        return Requirements(image=DEFAULT_IMAGE, command=(self.program,),
                            produces="*_oidata.fits per raw PIONIER file (+ *_oidataCalibrated*.fits with -calibrate)")

    def command(self, raw_dir: Path) -> list[str]:
        night = shlex.quote(raw_dir.name)
        args = " -calibrate" if self.calibrate else ""
        script = (
            f'set -u; mkdir -p "$OIFLOW_OUTPUT"/{night} '
            f'&& for f in {shlex.quote(str(raw_dir))}/PIONI*.fits; do ln -s "$f" "$OIFLOW_OUTPUT"/{night}/; done '
            f'&& cd "$OIFLOW_OUTPUT"/{night} && {shlex.quote(self.program)}{args}; '
            f'rc=$?; rm -rf "$OIFLOW_OUTPUT"/{night}; exit $rc'
        )
        return ["sh", "-c", script]

    def reduce_night(self, raw_dir, out_dir, config: ReduceConfig, runner: Runner) -> BackendResult:
        raw_dir, out_dir = Path(raw_dir).resolve(), Path(out_dir).resolve()
        result = BackendResult()
        raws = sorted(raw_dir.glob("PIONI*.fits"))
        if not raws:
            result.failures.append((raw_dir.name, "no raw PIONIER file (PIONI*.fits) in the night directory"))
            return result
        work = out_dir / "pndrs"
        job = Job(command=self.command(raw_dir), image=self.image(config), inputs=[raw_dir], output=work,
                  name=f"{self.program} ({raw_dir.name})", network=config.engine.network, **job_limits(config))
        log_path = out_dir / "pndrs.log"
        try:
            res = run_logged(runner, job, log_path, result)
        except EngineError as exc:
            result.failures.append((raw_dir.name, failure_reason(self.program, exc, log_path)))
            return result
        for product in sorted(work.rglob("*_oidata*.fits")):
            dest = out_dir / product.name
            raw = raw_dir / (product.name.split("_oidata")[0] + ".fits")
            inputs = [raw] if raw.exists() else []
            if "Calibrated" in product.name:
                result.calibrated.append(product)
                continue
            result.products.append(self._publish(product, dest, inputs, config, res.provenance()))
        reduced = {p.name.split("_oidata")[0] for p in result.products}
        for raw in raws:
            if raw.stem not in reduced:
                result.failures.append((raw.name, f"pndrs wrote no {raw.stem}_oidata.fits [log: {log_path}]"))
        return result

    def _publish(self, product: Path, dest: Path, inputs, config, run: dict) -> Path:
        from astropy.io import fits

        prov = Provenance.for_inputs(1, "reduce", inputs, {"backend": "pndrs", **config.model_dump(mode="json")},
                                     stages=stage_history([], "reduce", OK, "pndrs"))
        with fits.open(product) as hdul:
            hdul = fits.HDUList([h.copy() for h in hdul])
        prov.apply_to_header(hdul[0].header)
        hdul[0].header["HIERARCH OIFLOW ENGINE"] = run["engine"]
        if run.get("image"):
            hdul[0].header["HIERARCH OIFLOW IMAGE"] = str(run["image"])[:60]
        hdul[0].header["HIERARCH OIFLOW LOGSHA"] = run["log_sha256"]
        return write_hdulist_atomic(hdul, dest)
