"""CPU accounting of a run for the flow benchmarks: this process (the flow), its threads, and
its descendants (the Prefect server, the Dask workers)."""

from __future__ import annotations

import threading

#: threads of this process that are Dask's: the event loops of the scheduler, nannies and client
DASK_THREADS = ("IO loop", "Dask-", "AsyncProcess", "QueueFeederThread", "TCP-Executor")


class CpuMeter:
    """CPU seconds (user + system), sampled every 0.25 s (a process or thread that ends loses at
    most its last 0.25 s): ``flow_process`` (this one) split into ``flow_main_thread`` (planning,
    scheduling, the catalogue), ``dask_in_flow_process`` (the Dask scheduler, nannies and client:
    :data:`DASK_THREADS`) and the rest (``prefect_client_and_other_threads``; the meter's own
    thread left out); ``prefect_server``;
    ``workers``; ``other`` descendants."""

    def __init__(self):
        import psutil

        self._me = psutil.Process()
        self._last: dict[int, tuple[str, float]] = {}
        self._threads: dict[int, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True, name="cpu-meter")
        self._thread.start()

    def _kind(self, proc) -> str:
        if proc.pid == self._me.pid:
            return "flow_process"
        cmd = " ".join(proc.cmdline())
        return "prefect_server" if "uvicorn" in cmd else "workers" if "spawn_main" in cmd else "other"

    def _poll(self) -> None:
        while not self._stop.wait(0.25):
            self.sample()

    def sample(self) -> tuple[dict, dict]:
        with self._lock:
            for proc in [self._me, *self._me.children(recursive=True)]:
                try:
                    t = proc.cpu_times()
                    kind = self._last[proc.pid][0] if proc.pid in self._last else self._kind(proc)
                    self._last[proc.pid] = (kind, t.user + t.system)
                except Exception:  # exited meanwhile
                    pass
            names = {t.native_id: t.name for t in threading.enumerate()}
            main = threading.main_thread().native_id
            for th in self._me.threads():
                if th.id == main:
                    kind = "flow_main_thread"
                elif th.id == self._thread.native_id:
                    kind = "cpu_meter"
                elif any(names.get(th.id, "").startswith(p) for p in DASK_THREADS):
                    kind = "dask_in_flow_process"
                elif th.id in self._threads:
                    kind = self._threads[th.id][0]
                else:
                    kind = "prefect_client_and_other_threads"
                self._threads[th.id] = (kind, th.user_time + th.system_time)
            return dict(self._last), dict(self._threads)

    def since(self, before: tuple[dict, dict]) -> dict[str, float]:
        procs_before, threads_before = before
        procs, threads = self.sample()
        out: dict[str, float] = {}
        for pid, (kind, cpu) in procs.items():
            out[kind] = out.get(kind, 0.0) + cpu - procs_before.get(pid, (kind, 0.0))[1]
        split: dict[str, float] = {}
        for tid, (kind, cpu) in threads.items():
            split[kind] = split.get(kind, 0.0) + cpu - threads_before.get(tid, (kind, 0.0))[1]
        meter = split.pop("cpu_meter", 0.0)  # this meter's own work (reading /proc) is not the run's
        out["flow_process"] = flow = out.get("flow_process", 0.0) - meter
        split["prefect_client_and_other_threads"] = (flow - split.get("flow_main_thread", 0.0)
                                                     - split.get("dask_in_flow_process", 0.0))  # ended threads too
        out.update(split)
        out["total"] = sum(out.get(k, 0.0) for k in ("flow_process", "prefect_server", "workers", "other"))
        return {k: round(v, 3) for k, v in out.items()}

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
