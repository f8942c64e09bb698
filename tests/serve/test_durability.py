"""Adds survive SIGKILL: a real server process on a free loopback port is killed after
answering two adds and restarted; the images are there and searchable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="the durability test needs httpx (dinokit[dev])")
pytest.importorskip("uvicorn", reason="dinokit[serve] is not installed")

import dinokit  # noqa: E402
from tests._processes import free_port  # noqa: E402
from tests.serve._helpers import COLOURS, jpeg_bytes, make_collection, picture  # noqa: E402


def _start(embeddings: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    source = str(Path(dinokit.__file__).parents[1])
    env["PYTHONPATH"] = os.pathsep.join([source, env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "dinokit", "serve", str(embeddings), "--port", str(port),
               "--precision", "fp32", "--device", "cpu"]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited: {log.read_text()}")
        try:
            return httpx.get(f"{url}/api/health", timeout=2).json()
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"the server did not answer: {log.read_text()}")


@pytest.mark.slow
def test_added_images_survive_sigkill(tmp_path: Path) -> None:
    served = make_collection(tmp_path, per_class=2)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    new = [jpeg_bytes(picture(COLOURS["blue"], 200 + i)) for i in range(2)]
    process = _start(served.embeddings, port, log)
    try:
        assert _wait_healthy(process, url, log)["images"] == 6
        for i, data in enumerate(new):
            files = {"files": (f"new{i}.jpg", data, "image/jpeg")}
            answer = httpx.post(f"{url}/api/images", files=files, timeout=60)
            assert answer.status_code == 200, answer.text
        process.send_signal(signal.SIGKILL)  # no shutdown code runs
        process.wait(timeout=30)
        process = _start(served.embeddings, port, log)
        health = _wait_healthy(process, url, log)
        assert health["images"] == 8 and health["added"] == 2
        assert httpx.get(f"{url}/api/images/7", timeout=10).json()["path"] == "new1.jpg"
        found = httpx.post(f"{url}/api/search/upload?k=1",
                           files={"file": ("q.jpg", new[1], "image/jpeg")}, timeout=60)  # fmt: skip
        assert found.json()["results"][0]["id"] == 7
    finally:
        process.kill()
        process.wait(timeout=30)
