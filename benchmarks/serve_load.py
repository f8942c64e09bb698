"""Load test of ``dinokit serve`` on the loopback address, against ``dinokit embed``.

Prints, measured in one run with the same images, model and precision:

(a) upload searches under 16 concurrent clients, in ``--rounds`` consecutive rounds of
    ``--requests`` each: searches/s, p50 and p99 latency, errors (any answer but 200), and the
    server's resident memory after the warm-up and after each round (flat: it stops growing
    after the first round, whatever the number of requests);
(b) the same with a mix of bad uploads (not an image, truncated, empty, wrong content type,
    over the size limit): errors are answers other than the expected 200 / 400 / 415 / 413;
(c) ``dinokit embed``'s images/s on the same images, and the ratio of (a)'s searches/s to it
    (target >= 0.8: what batching concurrent requests through one forward pass is for).

    python benchmarks/serve_load.py [--data ../shared/data/imagenette-mini] [--images 64]
        [--model vit_test] [--requests 2000] [--rounds 4] [--clients 16] [--precision auto]

The server runs as its own process (``python -m dinokit serve``); the clients are threads of
this one, each on its own keep-alive connection, sending pre-built multipart bodies. The model
is built with seeded random weights (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dinokit.data import list_images
from dinokit.embed import EmbedConfig, run_embed

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "imagenette-mini"
MAX_UPLOAD_MB = 1.0


@dataclass(frozen=True)
class Request:
    """A pre-built upload and the status it must get."""

    body: bytes
    content_type: str
    expected: int


@dataclass
class Outcome:
    """What one or more load runs measured."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    good: int = 0
    total: int = 0
    server_cpu: float = 0.0
    client_cpu: float = 0.0


def multipart(data: bytes, name: str, kind: str) -> tuple[bytes, str]:
    """A multipart/form-data body with one ``file`` part, and its Content-Type header."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: {kind}\r\n\r\n"
    ).encode()
    return (
        head + data + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


def good_requests(files: list[Path]) -> list[Request]:
    """An upload of each image file."""
    out = []
    for path in files:
        body, kind = multipart(path.read_bytes(), path.name, "image/jpeg")
        out.append(Request(body, kind, 200))
    return out


def bad_requests(files: list[Path]) -> list[Request]:
    """One upload of each kind of bad input, with the status it must get."""
    data = files[0].read_bytes()
    rng = np.random.default_rng(0)
    cases = [
        (b"this is not an image", "image/jpeg", 400),
        (data[: len(data) // 3], "image/jpeg", 400),  # truncated
        (b"", "image/jpeg", 400),  # empty
        (data, "text/plain", 415),  # wrong content type
        (rng.bytes(int(1.5 * MAX_UPLOAD_MB * (1 << 20))), "image/jpeg", 413),  # oversized
    ]
    return [Request(*multipart(d, "bad.jpg", kind), expected) for d, kind, expected in cases]


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def send(conn: http.client.HTTPConnection, request: Request, k: int) -> int:
    """POST one upload; the answer's status (the body is read and dropped)."""
    headers = {"Content-Type": request.content_type, "Content-Length": str(len(request.body))}
    # A refused upload can be answered (and the connection closed) before its body is sent.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        conn.request("POST", f"/api/search/upload?k={k}", body=request.body, headers=headers)
    response = conn.getresponse()
    response.read()
    if response.getheader("connection", "").lower() == "close":
        conn.close()
    return response.status


def load(port: int, plan: list[Request], clients: int, k: int, server: int) -> Outcome:
    """Send ``plan`` from ``clients`` threads (each takes the next request when free) to the
    server of process id ``server``."""
    outcome = Outcome()
    cpu_before = (cpu_seconds(server), cpu_seconds(os.getpid()))
    lock = threading.Lock()
    cursor = iter(range(len(plan)))

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                i = next(cursor, None)
            if i is None:
                break
            request = plan[i]
            began = time.perf_counter()
            try:
                status = send(conn, request, k)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                status, detail = -1, f"{type(exc).__name__}: {exc}"
            else:
                detail = f"status {status}, expected {request.expected}"
            elapsed = time.perf_counter() - began
            with lock:
                outcome.total += 1
                if request.expected == 200 and status == 200:
                    outcome.latencies.append(elapsed)
                    outcome.good += 1
                if status != request.expected:
                    outcome.errors.append(detail)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcome.seconds = time.perf_counter() - began
    outcome.server_cpu = cpu_seconds(server) - cpu_before[0]
    outcome.client_cpu = cpu_seconds(os.getpid()) - cpu_before[1]
    return outcome


def combined(outcomes: list[Outcome]) -> Outcome:
    """Consecutive load runs as one."""
    out = Outcome()
    for o in outcomes:
        out.seconds += o.seconds
        out.latencies += o.latencies
        out.errors += o.errors
        out.good += o.good
        out.total += o.total
        out.server_cpu += o.server_cpu
        out.client_cpu += o.client_cpu
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(embeddings: Path, port: int, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    source = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join([source, env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "dinokit", "-q", "serve", str(embeddings), "--port", str(port),
               "--precision", args.precision, "--max-upload-mb", str(MAX_UPLOAD_MB)]  # fmt: skip
    process = subprocess.Popen(command, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the server exited")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api/health")
            if conn.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the server did not start")


def server_health(port: int) -> dict[str, Any]:
    """The server's ``/api/health`` answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/api/health")
    answer: dict[str, Any] = json.loads(conn.getresponse().read())
    conn.close()
    return answer


def embed_rates(files: list[Path], out: Path, args: argparse.Namespace) -> list[float]:
    """``dinokit embed`` images/s end to end on ``files``: ``--embed-runs`` timed runs after a
    warm-up run (the machine may be shared: the best of them is the one compared)."""
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"{p}\n" for p in files))
    config = dict(model=args.model, weights="none", precision=args.precision,
                  batch_size=args.batch_size)  # fmt: skip
    run_embed(EmbedConfig(inputs=[listing], out=out, **config))  # warm-up; the served file
    rates = []
    for i in range(args.embed_runs):  # each to a new file: an existing one would be reused
        began = time.perf_counter()
        run_embed(EmbedConfig(inputs=[listing], out=out.with_name(f"run{i}.parquet"), **config))
        rates.append(len(files) / (time.perf_counter() - began))
    return rates


def report(name: str, outcome: Outcome, rss: list[float]) -> None:
    """Print a load run's numbers; ``rss``: the server's MiB before it and after each round."""
    ms = np.asarray(outcome.latencies) * 1000
    print(f"\n{name}")
    print(f"  requests                {outcome.total} ({outcome.good} good searches)")
    print(f"  searches/s              {outcome.good / outcome.seconds:.1f}")
    print(f"  latency p50 / p99       {np.percentile(ms, 50):.1f} / {np.percentile(ms, 99):.1f} ms")
    print(f"  errors                  {len(outcome.errors)} {sorted(set(outcome.errors))[:3]}")
    per = 1000 / outcome.total
    print(f"  CPU per request         server {outcome.server_cpu * per:.1f} ms, "
          f"clients {outcome.client_cpu * per:.1f} ms")  # fmt: skip
    curve = " -> ".join(f"{r:.0f}" for r in rss)
    print(f"  server RSS              {curve} MiB ({rss[-1] - rss[0]:+.0f}; "
          f"{rss[-1] - rss[min(1, len(rss) - 1)]:+.0f} after the first round)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=64, help="images indexed and queried")
    parser.add_argument("--model", default="vit_test")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch-size", type=int, default=64, help="dinokit embed's batch")
    parser.add_argument("--requests", type=int, default=2000, help="searches per load round")
    parser.add_argument("--rounds", type=int, default=4, help="consecutive rounds of (a)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--embed-runs", type=int, default=3, help="timed dinokit embed runs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    files = [Path(r.root) / r.relpath for r in list_images(args.data).records][: args.images]
    with tempfile.TemporaryDirectory() as tmp:
        embeddings = Path(tmp) / "emb.parquet"
        rates = embed_rates(files, embeddings, args)
        port = free_port()
        server = start_server(embeddings, port, args)
        try:
            good, bad = good_requests(files), bad_requests(files)
            load(
                port, [good[i % len(good)] for i in range(64)], args.clients, args.k, server.pid
            )  # warm-up
            curve = [rss_mib(server.pid)]
            plan = [good[i % len(good)] for i in range(args.requests)]
            rounds = []
            for _ in range(args.rounds):
                rounds.append(load(port, plan, args.clients, args.k, server.pid))
                curve.append(rss_mib(server.pid))
            clean = combined(rounds)
            mixed_plan = [bad[i // 4 % len(bad)] if i % 4 == 3 else good[i % len(good)]
                          for i in range(args.requests)]  # fmt: skip
            mixed = load(port, mixed_plan, args.clients, args.k, server.pid)
            after = rss_mib(server.pid)
            health = server_health(port)
        finally:
            server.terminate()
            server.wait(timeout=30)
    setting = f"{args.clients} clients, k={args.k}, {os.cpu_count()} CPUs"
    print(f"model {args.model}, precision {args.precision}, {len(files)} images, {setting}")
    report(f"(a) upload searches, {args.rounds} rounds of {args.requests}", clean, curve)
    report("(b) with 1 in 4 uploads bad", mixed, [curve[-1], after])
    print(f"  forward passes          {health['batches']} for {health['embedded']} images")
    served, best = clean.good / clean.seconds, max(rates)
    runs = ", ".join(f"{r:.1f}" for r in rates)
    print(f"\n(c) dinokit embed          {best:.1f} images/s (best of {runs})")
    print(f"    searches / embed       {served / best:.2f} (target >= 0.8)")


if __name__ == "__main__":
    main()
