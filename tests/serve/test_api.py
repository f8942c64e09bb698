"""The JSON API through FastAPI's TestClient: searches, adds, browsing, and every refusal.

The collection is embedded with ``vit_test`` in fp32 on the CPU; uploads are embedded by the
server in the precision of the request (fp32 here), so an indexed file uploaded again scores
1 against itself within fp32 rounding.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="dinokit[serve] is not installed")
pytest.importorskip("httpx", reason="the API tests need httpx (dinokit[dev])")

from fastapi.testclient import TestClient

from dinokit.embeddings import Embeddings
from dinokit.serve import ServeConfig, create_app
from tests.serve._helpers import COLOURS, Served, jpeg_bytes, make_collection, picture


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    return make_collection(tmp_path_factory.mktemp("served"))


def _client(served: Served, **options: object) -> TestClient:
    config = ServeConfig(
        served.embeddings, clusters=served.clusters, duplicates=served.duplicates,
        precision="fp32", device="cpu", **options,  # type: ignore[arg-type]
    )  # fmt: skip
    return TestClient(create_app(config))


@pytest.fixture
def client(served: Served) -> Iterator[TestClient]:
    with _client(served) as c:
        yield c
        c.app.state.service.close()  # type: ignore[attr-defined]


def _upload(client: TestClient, data: bytes, *, name: str = "q.jpg", kind: str = "image/jpeg",
            k: int = 3) -> tuple[int, dict]:  # fmt: skip
    response = client.post(f"/api/search/upload?k={k}", files={"file": (name, data, kind)})
    return response.status_code, response.json()


def test_upload_of_an_indexed_file_finds_itself_first(client: TestClient, served: Served) -> None:
    emb = Embeddings.load(served.embeddings)
    for row in (0, 5, 10):
        data = (served.images / emb.paths[row]).read_bytes()
        status, body = _upload(client, data, k=4)
        assert status == 200, body
        assert body["results"][0]["id"] == row and body["results"][0]["path"] == emb.paths[row]
        assert body["results"][0]["score"] == pytest.approx(1.0, abs=1e-5)
        scores = [hit["score"] for hit in body["results"]]
        assert scores == sorted(scores, reverse=True) and len(scores) == 4
        # Same vector as dinokit embed wrote: the search by that vector gives the same order.
        by_vector = client.post("/api/search", json={"vector": emb.vectors[row].tolist(), "k": 4})
        assert [h["id"] for h in by_vector.json()["results"]] == [h["id"] for h in body["results"]]


def test_search_by_id_path_and_neighbours_leave_the_image_out(client: TestClient) -> None:
    by_id = client.post("/api/search", json={"id": 3, "k": 5}).json()
    assert 3 not in [h["id"] for h in by_id["results"]] and len(by_id["results"]) == 5
    by_path = client.post("/api/search", json={"path": by_id["query"], "k": 5}).json()
    neighbours = client.get("/api/images/3/neighbours?k=5").json()
    assert by_path["results"] == by_id["results"] == neighbours["results"]
    assert [h["rank"] for h in neighbours["results"]] == [1, 2, 3, 4, 5]


def test_model_health_browse_and_docs(client: TestClient, served: Served) -> None:
    model = client.get("/api/model").json()
    assert model["model"]["model"] == "vit_test" and model["available"] is True
    assert model["dim"] == 64 and "roots" not in model  # server paths stay private
    health = client.get("/api/health").json()
    assert health["images"] == 12 and health["model"] and health["clusters"]
    clusters = client.get("/api/clusters?preview=2").json()["clusters"]
    assert sorted(c["size"] for c in clusters) == [4, 4, 4]
    members = client.get(f"/api/clusters/{clusters[0]['cluster']}?limit=10").json()["images"]
    assert len(members) == 4 and len({m["label"] for m in members}) == 1
    groups = client.get("/api/duplicates").json()
    assert groups["total"] == 1 and [m["score"] for m in groups["groups"][0]["members"]] == [
        0.99, 0.98,
    ]  # fmt: skip
    thumb = client.get("/api/images/0/thumbnail?size=32")
    assert thumb.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumb.content)) as image:
        assert max(image.size) == 32
    original = client.get("/api/images/0/file")
    assert (
        original.content
        == (served.images / client.get("/api/images/0").json()["path"]).read_bytes()
    )
    spec = client.get("/openapi.json").json()
    assert {"/api/search/upload", "/api/search", "/api/images", "/api/images/{image_id}/neighbours",
            "/api/health", "/api/model"} <= set(spec["paths"])  # fmt: skip
    docs = client.get("/docs").text
    assert "/api/search/upload" in docs and "VectorSearch" in docs
    assert "<script" not in docs and "src=" not in docs  # nothing loaded, from anywhere
    page = client.get("/")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert 'src="/page.js"' in page.text


def _truncated(served: Served) -> bytes:
    data = (served.images / "red" / "red_0.jpg").read_bytes()
    return data[: len(data) // 2]


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_bad_uploads_get_a_4xx_with_one_line_and_the_server_keeps_serving(
    client: TestClient, served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = (served.images / "red" / "red_0.jpg").read_bytes()
    cases = {
        "not an image": (b"hello, not an image", "image/jpeg", 400, "not an image"),
        "truncated": (_truncated(served), "image/jpeg", 400, "truncated"),
        "empty": (b"", "image/jpeg", 400, "empty"),
        "wrong content type": (good, "text/plain", 415, "not an image"),
    }
    for case, (data, kind, status, reason) in cases.items():
        code, body = _upload(client, data, kind=kind)
        assert code == status, (case, body)
        assert reason in body["detail"] and "\n" not in body["detail"], case
    # A decompression bomb: PIL's guard, lowered so a small PNG trips it.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    code, body = _upload(client, _png(100, 100), name="bomb.png", kind="image/png")
    assert code == 400 and "decompression-bomb" in body["detail"]
    monkeypatch.undo()
    # Not multipart at all, and a body over the limit (refused by its length header).
    response = client.post(
        "/api/search/upload", content=good, headers={"content-type": "image/jpeg"}
    )
    assert response.status_code == 415 and "multipart/form-data" in response.json()["detail"]
    for k in (0, 101):
        code, body = _upload(client, good, k=k)
        assert code == 422 and "k: must be between 1 and 100" in body["detail"]
    assert client.post("/api/search", json={"vector": [1.0, 2.0], "k": 3}).status_code == 422
    assert client.post("/api/search", json={"id": 1, "path": "x", "k": 3}).status_code == 422
    assert client.get("/api/images/abc").status_code == 422
    for missing in (client.get("/api/images/12"), client.get("/api/images/-1/neighbours"),
                    client.post("/api/search", json={"path": "nope.jpg"})):  # fmt: skip
        assert missing.status_code == 404, missing.json()
    assert client.get("/api/clusters/7").status_code == 404
    # Still serving.
    assert _upload(client, good)[0] == 200


def test_oversized_upload_is_refused_before_it_is_read(served: Served) -> None:
    with _client(served, max_upload_mb=0.01) as client:
        big = jpeg_bytes(picture(COLOURS["red"], 1, size=(800, 800)))
        assert len(big) > 0.01 * (1 << 20) + (64 << 10)
        code, body = _upload(client, big)
        assert code == 413 and "over the limit" in body["detail"]
        small_enough_header = jpeg_bytes(picture(COLOURS["red"], 1, size=(200, 200)))
        assert 0.01 * (1 << 20) < len(small_enough_header) < 0.01 * (1 << 20) + (64 << 10)
        code, body = _upload(client, small_enough_header)  # passes the header check
        assert code == 413 and "over the limit" in body["detail"]


def test_no_file_outside_the_indexed_roots_is_served(tmp_path: Path, served: Served) -> None:
    emb = Embeddings.load(served.embeddings)
    secret = served.images.parent / "secret.jpg"
    secret.write_bytes(jpeg_bytes(picture((0, 0, 0), 5)))
    (served.images / "link.jpg").symlink_to(secret)
    crafted = Embeddings(
        paths=[*emb.paths, "../secret.jpg", "link.jpg"],
        labels=[*emb.labels, None, None],
        vectors=np.concatenate([emb.vectors, emb.vectors[:2]]),
        metadata=emb.metadata,
        roots=np.zeros(len(emb) + 2, dtype=np.int16),
    )
    crafted_file = crafted.save(tmp_path / "crafted.parquet")
    config = ServeConfig(crafted_file, precision="fp32", device="cpu")
    with TestClient(create_app(config)) as client:
        for row in (len(emb), len(emb) + 1):
            assert client.get(f"/api/images/{row}/file").status_code == 403
            assert client.get(f"/api/images/{row}/thumbnail").status_code == 403
        for path in ("../secret.jpg", "/etc/passwd", "..%2F..%2Fetc%2Fpasswd"):
            assert client.get(f"/api/images/{path}/file").status_code in (404, 422)
        assert client.get("/api/images/0/file").status_code == 200
        client.app.state.service.close()  # type: ignore[attr-defined]


def test_bearer_token(served: Served) -> None:
    with _client(served, token="s3cret") as client:
        assert client.get("/api/model").status_code == 401
        assert client.get("/api/images/0/thumbnail").status_code == 401
        assert (
            client.get("/api/model", headers={"Authorization": "Bearer wrong"}).status_code == 401
        )
        assert (
            client.get("/api/model", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        )
        client.cookies.set("dinokit_token", "s3cret")  # what the page stores for <img> requests
        assert client.get("/api/images/0/thumbnail").status_code == 200
        assert client.get("/api/health").status_code == 200  # liveness stays open
        assert client.get("/").status_code == 200  # the page itself holds no data
        client.app.state.service.close()  # type: ignore[attr-defined]


def test_added_images_are_searchable_and_kept_next_to_the_file(tmp_path: Path) -> None:
    served = make_collection(tmp_path, per_class=2)
    new = [jpeg_bytes(picture(COLOURS["green"], 100 + i)) for i in range(2)]
    with _client(served) as client:
        files = [
            ("files", (f"../../evil name {i}.jpg", data, "image/jpeg"))
            for i, data in enumerate(new)
        ]
        body = client.post("/api/images", files=files, data={"labels": ["green", "green"]}).json()
        ids = [image["id"] for image in body["images"]]
        assert ids == [6, 7] and all(image["added"] for image in body["images"])
        assert [image["path"] for image in body["images"]] == ["evil_name_0.jpg", "evil_name_1.jpg"]
        # Re-adding the same file keeps its id; a bad file in an add adds nothing.
        again = client.post("/api/images", files=files[:1]).json()
        assert [image["id"] for image in again["images"]] == [6]
        bad = client.post(
            "/api/images", files=[files[0], ("files", ("x.jpg", b"nope", "image/jpeg"))]
        )
        assert bad.status_code == 400
        assert client.get("/api/health").json()["images"] == 8
        status, found = _upload(client, new[1], k=1)
        assert status == 200 and found["results"][0]["id"] == 7
        assert client.get("/api/images/7/file").content == new[1]
        client.app.state.service.close()  # type: ignore[attr-defined]
    store = served.embeddings.with_name("emb.parquet.added")
    assert sorted(p.name for p in (store / "images").iterdir()) == [
        "evil_name_0.jpg",
        "evil_name_1.jpg",
    ]
    assert [p.name for p in store.glob("part-*.parquet")] == ["part-000001.parquet"]
    with _client(served) as client:  # reloaded from the file and the store
        assert client.get("/api/images/7").json()["label"] == "green"
        assert _upload(client, new[0], k=1)[1]["results"][0]["id"] == 6
        client.app.state.service.close()  # type: ignore[attr-defined]


def test_concurrent_uploads_share_forward_passes(served: Served) -> None:
    with _client(served, max_wait_ms=200) as client:  # a wide window: the machine may be busy
        _concurrent_uploads(client, served)
        client.app.state.service.close()  # type: ignore[attr-defined]


def _concurrent_uploads(client: TestClient, served: Served) -> None:
    from concurrent.futures import ThreadPoolExecutor

    data = [(served.images / name / f"{name}_{i}.jpg").read_bytes()
            for name in COLOURS for i in range(4)]  # fmt: skip
    before = client.get("/api/health").json()
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda d: _upload(client, d, k=1), data))
    assert all(code == 200 and body["results"][0]["score"] > 0.9999 for code, body in answers)
    after = client.get("/api/health").json()
    embedded, batches = after["embedded"] - before["embedded"], after["batches"] - before["batches"]
    assert embedded == 12 and batches < 12, (embedded, batches)
