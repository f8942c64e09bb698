"""embed(): labelled folders, skipped files, formats, grown folders, resume, precision."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

import dinokit
from dinokit.embed import EmbedConfig, Embedder, Embeddings, run_embed
from tests.data._helpers import write_jpeg
from tests.embed._helpers import flat_folder, labelled_folder

# fp32: runs are compared with each other to 1e-6; bf16 has its own test at the end.
OPTS: dict[str, Any] = {
    "model": "vit_test",
    "weights": "none",
    "workers": 0,
    "batch_size": 4,
    "precision": "fp32",
}


def _run(inputs: list[Path], out: Path | None, **options: Any) -> Any:
    config = EmbedConfig(inputs=list(inputs), out=out, **{**OPTS, **options})
    return run_embed(config)[0]


def test_labelled_folder_rows_and_metadata(tmp_path: Path) -> None:
    root = labelled_folder(tmp_path / "img")
    out = tmp_path / "emb.parquet"
    emb = dinokit.embed(root, out=out, **OPTS)
    assert emb.paths == [
        "a/0.jpg",
        "a/1.jpg",
        "a/2.jpg",
        "b/0.jpg",
        "b/1.jpg",
        "b/2.jpg",
        "loose.jpg",
    ]
    assert emb.labels == ["a"] * 3 + ["b"] * 3 + [None]
    assert emb.vectors.shape == (7, 64)
    np.testing.assert_allclose(np.linalg.norm(emb.vectors, axis=1), 1.0, atol=1e-5)
    meta = emb.metadata
    assert meta["roots"] == [str(root.absolute())]
    assert (meta["preprocess"], meta["size"], meta["feature"], meta["branch"]) == (
        "center-crop",
        64,
        "cls",
        "teacher",
    )
    assert meta["normalize"] is True and meta["dim"] == 64 and meta["skipped"] == []
    assert meta["model"]["model"] == "vit_test" and len(meta["fingerprint"]) == 16
    assert emb.absolute_path(6) == root.absolute() / "loose.jpg"
    schema = pq.read_schema(out)
    assert schema.field("embedding").type.list_size == 64
    assert str(schema.field("embedding").type.value_type) == "float"
    assert not (tmp_path / ".emb.parquet.parts").exists()


def test_in_memory_equals_the_file(tmp_path: Path) -> None:
    root = labelled_folder(tmp_path / "img")
    memory = dinokit.embed(root, **OPTS)
    written = dinokit.embed(root, out=tmp_path / "e.parquet", **OPTS)
    assert memory.paths == written.paths and memory.labels == written.labels
    np.testing.assert_array_equal(memory.vectors, written.vectors)
    assert memory.metadata == written.metadata
    assert memory.vectors.flags.writeable and written.vectors.flags.writeable


def test_unreadable_files_are_skipped_and_listed(tmp_path: Path) -> None:
    root = tmp_path / "img"
    flat_folder(root, 3)
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.png").write_text("not an image")
    good = write_jpeg(tmp_path / "x.jpg")
    truncated = root / "cut.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    out = tmp_path / "e.parquet"
    summary = _run([root], out)
    assert summary.total == 3 and len(summary.skipped) == 3
    assert "3 skipped: see" in summary.line()
    lines = (tmp_path / "e.skipped.tsv").read_text().splitlines()
    assert lines[0] == "path\treason" and len(lines) == 4
    assert any("empty.jpg" in line and "empty file" in line for line in lines)
    meta = Embeddings.load(out).metadata
    assert {Path(s["path"]).name for s in meta["skipped"]} == {"empty.jpg", "text.png", "cut.jpg"}


def test_empty_input_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        dinokit.embed(tmp_path / "empty", **OPTS)


def test_list_files_and_single_images(tmp_path: Path) -> None:
    images = flat_folder(tmp_path / "img", 3)
    listing = tmp_path / "list.txt"
    listing.write_text(f"img/{images[0].name}\nimg/missing.jpg\n")
    emb = dinokit.embed([listing, images[2]], **OPTS)
    assert emb.paths == ["img/img000.jpg", "img002.jpg"]
    assert [Path(r).name for r in emb.metadata["roots"]] == [tmp_path.name, "img"]
    assert "not found" in emb.metadata["skipped"][0]["reason"]


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_npy_and_lightly_csv(tmp_path: Path, suffix: str) -> None:
    root = labelled_folder(tmp_path / "img")
    reference = dinokit.embed(root, **OPTS)
    emb = dinokit.embed(root, out=tmp_path / f"e{suffix}", **OPTS)
    assert emb.paths == reference.paths
    # lightly's CSV has integer labels only: unlabelled rows read back as class 0.
    assert emb.labels[:6] == reference.labels[:6]
    np.testing.assert_allclose(emb.vectors, reference.vectors, atol=1e-6)
    if suffix == ".csv":
        header = (tmp_path / "e.csv").read_text().splitlines()[0].split(",")
        assert header[0] == "filenames" and header[1] == "embedding_0"
        assert header[-2] == "embedding_63" and header[-1] == "labels"
    else:
        assert (tmp_path / "e.paths.tsv").is_file()


@pytest.mark.parametrize("suffix", [".parquet", ".npy", ".csv"])
def test_grown_folder_embeds_only_new_images(tmp_path: Path, suffix: str) -> None:
    root = tmp_path / "img"
    flat_folder(root, 4)
    out = tmp_path / f"e{suffix}"
    first = _run([root], out)
    assert (first.total, first.new) == (4, 4)
    before = Embeddings.load(out)
    again = _run([root], out)
    assert again.up_to_date and "already up to date" in again.line()
    flat_folder(root, 2, start=4)
    (root / "img000.jpg").unlink()
    grown = _run([root], out)
    assert (grown.total, grown.new, grown.reused, grown.dropped) == (5, 2, 3, 1)
    after = Embeddings.load(out)
    assert after.paths == [*before.paths[1:], "img004.jpg", "img005.jpg"]
    np.testing.assert_array_equal(after.vectors[:3], before.vectors[1:])
    fresh = dinokit.embed(root, **OPTS)
    np.testing.assert_allclose(after.vectors[3:], fresh.vectors[3:], atol=1e-6)


def test_other_options_are_refused_without_overwrite(tmp_path: Path) -> None:
    root = tmp_path / "img"
    flat_folder(root, 2)
    out = tmp_path / "e.parquet"
    _run([root], out)
    with pytest.raises(FileExistsError, match=r"different feature.*--overwrite"):
        _run([root], out, feature="mean")
    other = tmp_path / "other"
    flat_folder(other, 2)
    with pytest.raises(FileExistsError, match="other inputs"):
        _run([other], out)
    summary = _run([root], out, feature="mean", overwrite=True)
    assert summary.new == 2 and Embeddings.load(out).metadata["feature"] == "mean"


def test_an_interrupted_run_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "img"
    flat_folder(root, 9)
    out = tmp_path / "e.parquet"
    original = Embedder.iter_batches

    def stop_after_two(self: Embedder, images: Any) -> Iterator[Any]:
        for i, batch in enumerate(original(self, images)):
            if i == 2:
                raise KeyboardInterrupt
            yield batch

    monkeypatch.setattr(Embedder, "iter_batches", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        _run([root], out, batch_size=2, chunk_rows=2)
    assert not out.exists()
    assert len(list((tmp_path / ".e.parquet.parts").glob("*.parquet"))) == 2
    with pytest.raises(FileExistsError, match="interrupted run"):
        _run([root], out, batch_size=2, feature="mean")
    monkeypatch.setattr(Embedder, "iter_batches", original)
    summary = _run([root], out, batch_size=2, chunk_rows=2)
    assert (summary.total, summary.new, summary.reused) == (9, 5, 4)
    resumed = Embeddings.load(out)
    reference = dinokit.embed(root, **OPTS)
    assert resumed.paths == reference.paths
    np.testing.assert_allclose(resumed.vectors, reference.vectors, atol=1e-6)
    assert not (tmp_path / ".e.parquet.parts").exists()


def test_patch_tokens_go_to_parquet(tmp_path: Path) -> None:
    root = tmp_path / "img"
    flat_folder(root, 2)
    out = tmp_path / "e.parquet"
    _run([root], out, patch_tokens=True, preprocess="native")
    table = pq.read_table(out)
    grid = table.column("grid").to_pylist()[0]
    assert len(table.column("patch_tokens").to_pylist()[0]) == grid[0] * grid[1] * 64
    assert json.loads(table.schema.metadata[b"dinokit"])["patch_tokens"] is True
    with pytest.raises(ValueError, match=r"\.parquet files only"):
        _run([root], tmp_path / "e.npy", patch_tokens=True)


def test_bf16_vectors_match_fp32(tmp_path: Path) -> None:
    """bf16 on purpose (emulated on CPUs without it): within DESIGN's cosine >= 0.999 of fp32."""
    paths = flat_folder(tmp_path, 3)
    fp32, _ = Embedder("vit_test", weights="none", precision="fp32").embed_files(paths)
    bf16, _ = Embedder("vit_test", weights="none", precision="bf16").embed_files(paths)
    cosine = np.sum(fp32 * bf16, axis=1)
    assert cosine.min() >= 0.999, cosine
    assert not np.array_equal(fp32, bf16)  # bf16 did run
    emb = dinokit.embed(tmp_path, out=tmp_path / "e.parquet", **{**OPTS, "precision": "bf16"})
    assert Embeddings.load(tmp_path / "e.parquet").metadata["precision"] == "bf16"
    assert np.sum(emb.vectors * fp32, axis=1).min() >= 0.999
