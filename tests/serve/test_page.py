"""The web page in headless Chromium against a live server: choose an image, its neighbours
appear as thumbnails with scores, clicking one searches from it; clusters and duplicate groups
are listed; nothing fails to load, no script error, and the screenshot shows the results."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

uvicorn = pytest.importorskip("uvicorn", reason="dinokit[serve] is not installed")

from dinokit.serve import ServeConfig, create_app  # noqa: E402
from tests._processes import free_port  # noqa: E402
from tests.serve._helpers import COLOURS, Served, make_collection  # noqa: E402
from tests.viz._chromium import find_chromium, open_page  # noqa: E402

CHROMIUM = find_chromium()

# Waits for the first results, clicks the second hit, waits for its results; keeps both.
_FLOW = """(async () => {
  const until = async (test) => {
    for (let i = 0; i < 400; i++) { if (test()) return; await new Promise(r => setTimeout(r, 50)); }
    throw new Error('timed out');
  };
  const results = document.querySelector('#results');
  const loaded = () => Promise.all([...document.images].map(i => { i.loading = 'eager';
    return i.complete ? null : new Promise(r => { i.onload = r; i.onerror = r; }); }));
  const seen = () => ({ query: results.dataset.query,
    hits: [...results.querySelectorAll('.hit')].map(h => Number(h.dataset.id)),
    scores: [...results.querySelectorAll('figcaption b')].map(b => Number(b.textContent)) });
  await until(() => results.dataset.state === 'done' && document.body.dataset.ready === 'yes');
  await loaded();
  const first = seen();
  const target = results.querySelectorAll('.hit')[1];
  const clicked = target.dataset.path;
  target.click();
  await until(() => results.dataset.state === 'done' && results.dataset.query === clicked);
  await loaded();
  window.flow = { first, clicked, second: seen() };
})()"""

_CHECK = """JSON.stringify({ ...window.flow,
  broken: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length,
  images: document.images.length,
  clusters: document.querySelectorAll('#cluster-list .group').length,
  groups: document.querySelectorAll('#group-list .group').length,
  status: document.querySelector('#status').textContent })"""


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, Served]]:
    served = make_collection(tmp_path)
    config = ServeConfig(served.embeddings, clusters=served.clusters, duplicates=served.duplicates,
                         precision="fp32", device="cpu", port=free_port())  # fmt: skip
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=config.port,
                                           log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{config.port}/", served
    server.should_exit = True
    thread.join(10)
    app.state.service.close()


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium not found: install Debian's chromium package (apt-get install chromium; "
    ".ci/run does) or set DINOKIT_CHROMIUM",
)
def test_upload_results_and_click_through_in_headless_chromium(
    tmp_path: Path, live: tuple[str, Served]
) -> None:
    assert CHROMIUM is not None
    url, served = live
    query = served.images / "red" / "red_0.jpg"
    run = open_page(CHROMIUM, url, expression=_CHECK, settle=_FLOW, files={"#file": query})
    assert run.problems == []
    seen = json.loads(run.value)
    first, second = seen["first"], seen["second"]
    assert first["query"] == "red_0.jpg" and len(first["hits"]) == 12  # every image, k=24
    assert first["scores"][0] == pytest.approx(1.0, abs=1e-3)  # the file itself, first
    assert first["scores"] == sorted(first["scores"], reverse=True)
    assert second["query"] == seen["clicked"] != "red_0.jpg"
    assert len(second["hits"]) == 11 and second["hits"] != first["hits"]  # itself left out
    assert seen["broken"] == 0 and seen["images"] == 1 + 11 + 12 + 2  # query, hits, browse
    assert seen["clusters"] == 3 and seen["groups"] == 1
    assert "most similar images" in seen["status"]
    # The screenshot shows the thumbnails: the search view is the colours of the collection.
    shot = tmp_path / "page.png"
    shot.write_bytes(run.screenshot)
    with Image.open(io.BytesIO(run.screenshot)) as image:
        assert image.width >= 1000
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    for colour in COLOURS.values():
        near = (np.abs(pixels - np.asarray(colour)).max(axis=2) < 40).sum()
        assert near > 5000, (colour, near)  # several thumbnails' worth of each colour
