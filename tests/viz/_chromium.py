"""Headless Chromium driven over the DevTools protocol on a pipe (no extra package).

``--remote-debugging-pipe`` makes Chromium read protocol commands from fd 3 and write
replies and events to fd 4, as NUL-terminated JSON. That gives the page's console messages,
uncaught exceptions and failed loads (``Log.entryAdded``), JavaScript evaluation and
screenshots, with nothing but the standard library.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The Chromium executable: ``$DINOKIT_CHROMIUM`` or the first one on ``PATH``."""
    configured = os.environ.get("DINOKIT_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageRun:
    """What a page did: the problems it reported, an evaluated value, a screenshot."""

    problems: list[str] = field(default_factory=list)
    value: Any = None
    screenshot: bytes = b""


class _Pipe:
    def __init__(self, write_fd: int, read_fd: int) -> None:
        self.write_fd, self.read_fd = write_fd, read_fd
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from Chromium")
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if ready:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    raise EOFError("Chromium closed the debugging pipe")
                self.buffer += chunk
        message, _, self.buffer = self.buffer.partition(b"\0")
        parsed: dict[str, Any] = json.loads(message)
        return parsed

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None
    ) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 30
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30) -> None:
        if any(event.get("method") == method for event in self.events):
            return
        deadline = time.monotonic() + timeout
        while True:
            event = self._receive(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return


def _problems(events: list[dict[str, Any]]) -> list[str]:
    found = []
    for event in events:
        params = event.get("params", {})
        if event.get("method") == "Runtime.exceptionThrown":
            found.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif event.get("method") == "Runtime.consoleAPICalled" and params.get("type") in (
            "error",
            "warning",
            "assert",
        ):
            args = " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            found.append(f"console.{params['type']}: {args}")
        elif event.get("method") == "Log.entryAdded" and params["entry"]["level"] in (
            "error",
            "warning",
        ):
            entry = params["entry"]
            found.append(
                f"{entry['source']} {entry['level']}: {entry['text']} {entry.get('url', '')}"
            )
    return found


def open_page(
    chromium: str,
    page: Path | str,
    *,
    expression: str,
    settle: str = "",
    width: int = 1280,
    files: dict[str, Path] | None = None,
) -> PageRun:
    """Load ``page`` in headless Chromium and report what happened.

    Args:
        chromium: The executable.
        page: An HTML file, or a URL.
        expression: JavaScript evaluated after the load event; its JSON value is returned.
        settle: JavaScript run first that returns a promise to await (e.g. images loading).
        width: Viewport width in CSS pixels.
        files: ``{CSS selector of an <input type=file>: file}`` chosen after the load event,
            as a user picking a file would (the input's change event fires).

    Returns:
        Console errors/warnings, exceptions and failed loads; the value; a full-page PNG.
    """
    command_read, command_write = os.pipe()
    reply_read, reply_write = os.pipe()

    def to_fds_3_and_4() -> None:  # runs in the child before exec
        a, b = os.dup(command_read), os.dup(reply_write)
        os.dup2(a, 3)
        os.dup2(b, 4)

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        process = subprocess.Popen(
            [
                chromium, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                "--remote-debugging-pipe", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                f"--window-size={width},900", "about:blank",
            ],
            close_fds=False,
            preexec_fn=to_fds_3_and_4,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(command_read)
        os.close(reply_write)
        pipe = _Pipe(command_write, reply_read)
        try:
            targets = pipe.call("Target.getTargets")["targetInfos"]
            target = next(t["targetId"] for t in targets if t["type"] == "page")
            session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
                "sessionId"
            ]
            for domain in ("Runtime", "Log", "Page"):
                pipe.call(f"{domain}.enable", session=session)
            url = page if isinstance(page, str) else page.resolve().as_uri()
            pipe.call("Page.navigate", {"url": url}, session=session)
            pipe.wait_for("Page.loadEventFired")
            for selector, file in (files or {}).items():
                root = pipe.call("DOM.getDocument", session=session)["root"]["nodeId"]
                node = pipe.call(
                    "DOM.querySelector", {"nodeId": root, "selector": selector}, session=session
                )["nodeId"]
                pipe.call(
                    "DOM.setFileInputFiles",
                    {"nodeId": node, "files": [str(file.resolve())]},
                    session=session,
                )
            if settle:
                pipe.call(
                    "Runtime.evaluate",
                    {"expression": settle, "awaitPromise": True, "returnByValue": True},
                    session=session,
                )
            value = pipe.call(
                "Runtime.evaluate", {"expression": expression, "returnByValue": True},
                session=session,
            )["result"].get("value")  # fmt: skip
            shot = pipe.call(
                "Page.captureScreenshot",
                {"format": "png", "captureBeyondViewport": True},
                session=session,
            )
            run = PageRun(value=value, screenshot=base64.b64decode(shot["data"]))
            with contextlib.suppress(EOFError, TimeoutError, OSError):
                pipe.call("Browser.close")
        finally:
            os.close(command_write)
            os.close(reply_read)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    run.problems = _problems(pipe.events)
    return run
