"""Server mode end to end: `oiflow server start`, `oiflow serve`, `oiflow submit --watch`, and the
Prefect UI in headless Chromium showing the runs and the artifacts (a screenshot is kept in
tests/artifacts/). Slow: run with ``-m slow``; `.ci/run` does (it installs Debian's chromium).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from flowdata import make_archive

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home: Path, api: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PYTHONPATH=str(REPO), PREFECT_HOME=str(home))
    if api:
        env["PREFECT_API_URL"] = api
    return env


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "oiflow.cli", *args], cwd=REPO, env=env, start_new_session=True,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    import httpx

    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer: {log.read_text()[-3000:]}")


def _chromium(url: str, *extra: str) -> str:
    profile = tempfile.mkdtemp(prefix="oiflow-chromium-")
    try:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--window-size=1400,1000", "--virtual-time-budget=20000", *extra, url]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        return out.stdout
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _rendered(url: str, text: str, attempts: int = 3) -> str:
    """The DOM of ``url`` once it shows ``text`` (the last dump after ``attempts``): the SPA renders
    from its own API requests, which under load may not have been answered within Chromium's
    virtual-time budget (CI once dumped an artifact page whose content had not arrived yet)."""
    dom = ""
    for _ in range(attempts):
        dom = _chromium(url, "--dump-dom")
        if text in dom:
            break
    return dom


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_serve_submit_and_the_ui_shows_runs_and_artifacts(tmp_path):
    home = tmp_path / "prefect-home"
    port = _free_port()
    ui = f"http://127.0.0.1:{port}"
    api = f"{ui}/api"
    archive = tmp_path / "archive"
    make_archive(archive, n_nights=2, files_per_night=2)
    deployments = tmp_path / "deployments.yaml"
    deployments.write_text(yaml.safe_dump({"deployments": [
        {"name": "nightly", "flow": "reprocess_archive", "cron": "0 9 * * *",
         "parameters": {"root": str(archive), "config": {"input": {"level": 2}, "output": {"root": str(tmp_path / "nightly")}}}},
        {"name": "adhoc", "flow": "reprocess_archive",
         "parameters": {"root": str(archive), "config": {"input": {"level": 2}, "output": {"root": str(tmp_path / "x")},
                                                         "cluster": {"n_workers": 1}}}},
    ]}))
    server_log, serve_log = tmp_path / "server.log", tmp_path / "serve.log"
    server = _start(["server", "start", "--port", str(port)], _env(home), server_log)
    serve = None
    try:
        _wait_http(f"{api}/health", server, server_log)
        serve = _start(["serve", str(deployments)], _env(home, api), serve_log)

        import httpx

        t0 = time.time()
        while True:  # the deployments appear once `oiflow serve` has registered them
            r = httpx.post(f"{api}/deployments/filter", json={}, timeout=10)
            names = {d["name"] for d in r.json()} if r.status_code == 200 else set()
            if {"nightly", "adhoc"} <= names:
                deps = {d["name"]: d for d in r.json()}
                break
            assert serve.poll() is None, serve_log.read_text()[-3000:]
            assert time.time() - t0 < 300, "deployments not registered"
            time.sleep(1)
        crons = [s["schedule"].get("cron") for s in deps["nightly"]["schedules"]]
        assert crons == ["0 9 * * *"] and deps["adhoc"]["schedules"] == []

        products = tmp_path / "products"
        sub = subprocess.run([sys.executable, "-m", "oiflow.cli", "submit", "reprocess-archive-job/adhoc",
                              "--param", f"config.output.root={products}", "--watch", "--timeout", "600"],
                             cwd=REPO, env=_env(home, api), capture_output=True, text=True, timeout=700)
        assert sub.returncode == 0, sub.stdout + sub.stderr + serve_log.read_text()[-3000:]
        assert f"products: {products}" in sub.stdout and "Completed" in sub.stdout
        assert f"{ui}/runs/flow-run/" in sub.stdout
        assert sorted(p.name for p in products.rglob("*.fits")) == ["obs_00.fits", "obs_00.fits", "obs_01.fits",
                                                                     "obs_01.fits"]
        assert sub.stdout.count("HD_0") == 2  # the products table: HD_0 on each of the two nights
        assert not (tmp_path / "x").exists()  # the submitted parameter replaced the deployment's default

        # the UI: runs and artifacts, rendered by Chromium (the SPA needs JavaScript)
        ARTIFACTS.mkdir(exist_ok=True)
        runs_dom = _rendered(f"{ui}/runs", "reprocess-archive")
        assert "reprocess-archive" in runs_dom, runs_dom[-2000:]
        art_dom = _rendered(f"{ui}/artifacts", "oiflow-reprocess-archive-summary")
        assert "oiflow-reprocess-archive-summary" in art_dom, art_dom[-2000:]
        done = "oiflow reprocess-archive: 2 unit(s) processed, 0 up to date, 4 granule(s)"
        summary_dom = _rendered(f"{ui}/artifacts/key/oiflow-reprocess-archive-summary", done)
        assert done in summary_dom, summary_dom[-2000:]
        table_dom = _rendered(f"{ui}/artifacts/key/oiflow-reprocess-archive-products", f"products under {products}")
        assert f"products under {products}" in table_dom, table_dom[-2000:]
        # their content, through the API: the Markdown summary and the products table rows
        r = httpx.post(f"{api}/artifacts/filter", json={"artifacts": {"key": {"any_": [
            "oiflow-reprocess-archive-summary", "oiflow-reprocess-archive-products"]}}}, timeout=10)
        data = {a["key"]: a["data"] for a in r.json()}
        assert "## Products" in data["oiflow-reprocess-archive-summary"]
        rows = json.loads(data["oiflow-reprocess-archive-products"]) if isinstance(
            data["oiflow-reprocess-archive-products"], str) else data["oiflow-reprocess-archive-products"]
        assert sorted(Path(row["access_url"]).name for row in rows) == ["obs_00.fits", "obs_00.fits",
                                                                         "obs_01.fits", "obs_01.fits"]
        shot = ARTIFACTS / "prefect_ui_runs.png"
        shot.unlink(missing_ok=True)
        _chromium(f"{ui}/runs", f"--screenshot={shot}")
        assert shot.is_file() and shot.stat().st_size > 10_000
    finally:
        if serve is not None:
            _stop(serve)
        _stop(server)
