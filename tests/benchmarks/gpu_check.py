"""GPU check of imaging: the cupy path against numpy, and its speed against the CPU path measured
in the same run. Run through ``tests/benchmarks/gpu_check.sh`` (it installs what the device image
lacks); without cupy or a CUDA device every GPU row is skipped with the reason and the CPU rows
still run.

Checks (each a row with its value, its tolerance and pass / FAIL / skipped):

* ``transform``: 200,000 (u, v) points on 256², forward and adjoint. The GPU transform
  (cufinufft when installed, else the exact matrix DFT on cupy) against the exact DFT on the
  CPU (4,000 points) and against finufft with the imaging settings (all points):
  max |ΔV| ≤ 2e-6 (finufft's eps 1e-7 of the unit flux, twice) and the adjoints to 2e-6 of their
  largest value.
* ``same-algorithm reconstruction``: 64², μ fixed, 30 iterations, transform ``dft`` on both:
  the same iterations, images within 1e-6 of their maximum (only the order of sums differs).
* ``default reconstruction``: the same data with the default path (two levels, default
  MAXITER and stopping test, recentring; μ fixed, since the automatic one's discrete steps
  would turn rounding into different choices): χ²_red within 2 %, the images' normalised
  cross-correlation ≥ 0.999 and the same verdict (NUFFT on the CPU vs the GPU's transform: the
  optimiser's paths differ by rounding).
* ``bench transform``: forward + adjoint, 200k points on 256²: CPU finufft with one thread
  (what the imaging path uses) and with every core, against the GPU.
* ``bench reconstruction``: 256², 210,000 (u, v) points (150k V², 20k closure phases), μ fixed,
  150 iterations: CPU path against the GPU path, the whole ``reconstruct`` call (goal ≥ 10×).

Writes ``gpu_check.json`` and ``gpu_check.txt`` into the output folder (argument 1, default
``$OUT`` or ``./gpu_check_out``); exit status 1 when a check that ran failed.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE.parent), str(HERE)]

from oiflow.backend import get_xp, gpu_available  # noqa: E402
from oiflow.image.data import Selection, imaging_data  # noqa: E402
from oiflow.image.objective import NUFFT_OPTIONS  # noqa: E402
from oiflow.image.reconstruct import reconstruct  # noqa: E402
from oiflow.image.transform import MatrixDFT, NufftTransform, make_transform  # noqa: E402
from oiflow.units import MAS  # noqa: E402

#: problem sizes (GPU_CHECK_SIZE=small shrinks them to try the script's plumbing on a laptop)
SMALL = os.environ.get("GPU_CHECK_SIZE") == "small"
N_UV = 20_000 if SMALL else 200_000
N_LARGE = 64 if SMALL else 256
LARGE_ITER = 20 if SMALL else 150
rows: list[dict] = []


def row(name: str, status: str, **figures) -> None:
    rows.append({"check": name, "status": status, **figures})
    shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())
    print(f"[{status:7s}] {name}: {shown}", flush=True)


def best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def gpu_sync():
    import cupy as cp

    cp.cuda.Device().synchronize()


def environment() -> dict:
    env = {"python": platform.python_version(), "cpus": os.cpu_count(), "numpy": np.__version__,
           "size": "small" if SMALL else "full"}
    try:
        env["load"] = "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        env["load"] = "unknown"
    try:
        import finufft

        env["finufft"] = finufft.__version__
    except Exception as exc:
        env["finufft"] = f"absent ({type(exc).__name__})"
    ok, why = gpu_available()
    env["gpu"] = why if not ok else ""
    if ok:
        import cupy as cp

        env["gpu"] = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
        env["cupy"] = cp.__version__
        try:
            import cufinufft

            env["cufinufft"] = cufinufft.__version__
        except Exception as exc:
            env["cufinufft"] = f"absent ({type(exc).__name__}): the GPU transform is the matrix DFT"
    return env


def check_transform(ok: bool, why: str):
    from bench_image import _large_uv
    from image_helpers import spotted_star

    n, pix = N_LARGE, 0.1 * MAS
    u, v = _large_uv(N_UV)
    img = spotted_star(n, 0.1)
    img = img / img.sum()
    g = np.exp(1j * np.arange(u.size))
    xp = get_xp("numpy")
    cpu1 = NufftTransform(u, v, n, pix, xp, **NUFFT_OPTIONS)
    cpus = NufftTransform(u, v, n, pix, xp, nthreads=os.cpu_count() or 1, **NUFFT_OPTIONS)
    t1 = best(lambda: (cpu1.forward(img), cpu1.adjoint(g)))
    tn = best(lambda: (cpus.forward(img), cpus.adjoint(g)))
    if not ok:
        row("transform", "skipped", reason=why)
        row("bench transform", "skipped", reason=why, cpu_1thread_s=t1, cpu_allcores_s=tn)
        return
    import cupy as cp

    xg = get_xp("cupy")
    gpu = make_transform(cp.asarray(u), cp.asarray(v), n, pix, xg, **NUFFT_OPTIONS)
    ig, gg = cp.asarray(img), cp.asarray(g)
    sub = 4000
    exact = MatrixDFT(u[:sub], v[:sub], n, pix, xp)
    fwd = cp.asnumpy(gpu.forward(ig))
    adj = cp.asnumpy(gpu.adjoint(gg))
    err_exact = float(np.max(np.abs(fwd[:sub] - exact.forward(img))))
    err_cpu = float(np.max(np.abs(fwd - cpu1.forward(img))))
    adj_cpu = cpu1.adjoint(g)
    err_adj = float(np.max(np.abs(adj - adj_cpu)) / np.max(np.abs(adj_cpu)))
    good = err_exact <= 2e-6 and err_cpu <= 2e-6 and err_adj <= 2e-6
    row("transform", "pass" if good else "FAIL", gpu_transform=type(gpu).__name__, max_dV_vs_exact=err_exact,
        max_dV_vs_cpu_finufft=err_cpu, adjoint_rel_diff=err_adj, tolerance=2e-6)

    def run():
        gpu.forward(ig)
        gpu.adjoint(gg)
        gpu_sync()

    run()
    tg = best(run, 5)
    row("bench transform", "measured", points=u.size, npix=n, cpu_1thread_s=t1, cpu_allcores_s=tn, gpu_s=tg,
        speedup_vs_cpu_path=t1 / tg, speedup_vs_allcores=tn / tg)


def small_data():
    from image_helpers import simulate_on, spotted_star

    truth = spotted_star(64, 0.25)
    oi = simulate_on(HERE.parents[0] / "data/imaging/contests_oifitsjl/contest-2008-obj1-H.oifits", truth, 0.25)
    return imaging_data([oi], Selection()), truth


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


def check_reconstructions(ok: bool, why: str):
    data, _ = small_data()
    same = dict(npix=64, pixel_size_mas=0.25, mu=1e4, maxiter=30, levels=1, transform="dft")
    a = reconstruct(data, same, backend="numpy")
    if ok:
        b = reconstruct(data, same, backend="cupy")
        d = float(np.max(np.abs(b.image - a.image)) / a.image.max())
        good = d <= 1e-6 and b.niter == a.niter and b.backend == "cupy"
        row("same-algorithm reconstruction", "pass" if good else "FAIL", max_rel_image_diff=d, tolerance=1e-6,
            niter_cpu=a.niter, niter_gpu=b.niter, chi2_cpu=a.chi2, chi2_gpu=b.chi2)
    else:
        row("same-algorithm reconstruction", "skipped", reason=why, chi2_cpu=a.chi2, niter_cpu=a.niter)
    defaults = dict(npix=64, pixel_size_mas=0.25, mu=1e4)  # μ fixed: the automatic one's steps are discrete
    c = reconstruct(data, defaults, backend="numpy")
    if not ok:
        row("default reconstruction", "skipped", reason=why, chi2_cpu=c.chi2, cpu_s=c.elapsed, verdict_cpu=c.verdict.status)
        return
    g = reconstruct(data, defaults, backend="cupy")
    rel = abs(g.chi2 - c.chi2) / c.chi2
    corr = ncc(g.image, c.image)
    good = rel <= 0.02 and corr >= 0.999 and g.verdict.status == c.verdict.status
    row("default reconstruction", "pass" if good else "FAIL", chi2_cpu=c.chi2, chi2_gpu=g.chi2, chi2_rel_diff=rel,
        ncc=corr, tolerance="chi2 2%, ncc 0.999, same verdict", verdict_cpu=c.verdict.status,
        verdict_gpu=g.verdict.status, cpu_s=c.elapsed, gpu_s=g.elapsed, gpu_transform=g.transform)


def bench_reconstruction(ok: bool, why: str):
    from bench_image import _large_data

    if SMALL:
        data, _ = _large_data(m_v2=N_UV * 3 // 4, n_t3=N_UV // 10)
    else:
        data, _ = _large_data()
    s = dict(npix=256, pixel_size_mas=0.1, mu=1e4, maxiter=LARGE_ITER)
    npts = int(data.groups[0].u.size)
    cpu = reconstruct(data, s, backend="numpy")
    if not ok:
        row("bench reconstruction", "skipped", reason=why, points=npts, cpu_s=cpu.elapsed, cpu_niter=cpu.niter)
        return
    reconstruct(data, {**s, "maxiter": 2}, backend="cupy")  # kernels compiled, plans made
    gpu = reconstruct(data, s, backend="cupy")
    gpu_sync()
    # per evaluation: the two paths may stop after different numbers of evaluations
    ratio = (cpu.elapsed / cpu.nfev) / (gpu.elapsed / gpu.nfev)
    row("bench reconstruction", "measured", points=npts, npix=256, cpu_s=cpu.elapsed, gpu_s=gpu.elapsed,
        cpu_nfev=cpu.nfev, gpu_nfev=gpu.nfev, speedup_whole=cpu.elapsed / gpu.elapsed, speedup_per_evaluation=ratio,
        goal=10.0, gpu_transform=gpu.transform, chi2_cpu=cpu.chi2, chi2_gpu=gpu.chi2)


def main(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    env = environment()
    print("environment:", json.dumps(env), flush=True)
    ok, why = gpu_available()
    why = f"no GPU: {why}"
    check_transform(ok, why)
    check_reconstructions(ok, why)
    bench_reconstruction(ok, why)
    total = time.perf_counter() - t0
    failed = [r["check"] for r in rows if r["status"] == "FAIL"]
    (out / "gpu_check.json").write_text(json.dumps({"environment": env, "rows": rows, "seconds": total,
                                                    "failed": failed}, indent=1, default=str))
    lines = [f"environment: {json.dumps(env)}"] + [json.dumps(r, default=str) for r in rows]
    lines.append(f"total {total:.1f} s; failed: {', '.join(failed) or 'none'}")
    (out / "gpu_check.txt").write_text("\n".join(lines) + "\n")
    print(lines[-1], flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    default = os.environ.get("OUT") or "gpu_check_out"
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else default)))
