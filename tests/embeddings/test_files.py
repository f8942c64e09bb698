"""Embeddings and their files: every format round-trips, streamed reads equal whole ones,
and a bad file is one clear error naming it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dinokit.embeddings import (
    Embeddings,
    EmbeddingsFileError,
    WorkDir,
    make_table,
    read_metadata,
    read_tables,
    vectors_of,
)

FORMATS = [".parquet", ".npy", ".csv"]


def sample(n: int = 7, dim: int = 5) -> Embeddings:
    """Labelled and unlabelled rows over two roots; float32 values CSV keeps exactly."""
    rng = np.random.default_rng(0)
    return Embeddings(
        paths=[f"dir/img{i}.jpg" for i in range(n)],
        labels=[None if i == 3 else "ab"[i % 2] for i in range(n)],
        vectors=rng.normal(size=(n, dim)).astype(np.float32),
        metadata={"feature": "cls", "roots": ["/data/one", "/data/two"], "skipped": []},
        roots=np.asarray([i % 2 for i in range(n)], dtype=np.int16),
    )


@pytest.mark.parametrize("suffix", FORMATS)
def test_every_format_round_trips(tmp_path: Path, suffix: str) -> None:
    emb = sample()
    path = emb.save(tmp_path / f"e{suffix}")
    back = Embeddings.load(path)
    assert back.paths == emb.paths
    np.testing.assert_array_equal(back.vectors, emb.vectors)  # CSV writes repr(float)
    assert back.vectors.flags.writeable  # a new array, not a view of the file's buffers
    assert back.metadata == {**emb.metadata, "dim": 5}
    if suffix == ".csv":
        # lightly's CSV: integer labels, the unlabelled row reads back as class 0; no roots.
        assert back.labels == ["a", "b", "a", "a", "a", "b", "a"]
        assert back.roots is not None and not back.roots.any()
    else:
        assert back.labels == emb.labels
        assert emb.roots is not None and back.roots is not None
        np.testing.assert_array_equal(back.roots, emb.roots)
        assert back.absolute_path(1) == Path("/data/two/dir/img1.jpg")


@pytest.mark.parametrize("suffix", FORMATS)
def test_streamed_reads_equal_the_whole_file(tmp_path: Path, suffix: str) -> None:
    path = sample(n=11).save(tmp_path / f"e{suffix}")
    (whole,) = read_tables(path)
    chunks = list(read_tables(path, chunk_rows=4))
    assert [len(t) for t in chunks] == [4, 4, 3]
    joined = pa.concat_tables(chunks)
    assert joined.column("path").to_pylist() == whole.column("path").to_pylist()
    assert joined.column("label").to_pylist() == whole.column("label").to_pylist()
    assert joined.column("root").to_pylist() == whole.column("root").to_pylist()
    np.testing.assert_array_equal(vectors_of(joined), vectors_of(whole))


@pytest.mark.parametrize("suffix", [".parquet", ".npy"])
def test_empty_embeddings_keep_their_width(tmp_path: Path, suffix: str) -> None:
    empty = Embeddings(paths=[], labels=[], vectors=np.zeros((0, 6), dtype=np.float32))
    back = Embeddings.load(empty.save(tmp_path / f"e{suffix}"))
    assert len(back) == 0 and back.dim == 6


def test_save_refuses_an_existing_file_and_an_unknown_format(tmp_path: Path) -> None:
    path = sample().save(tmp_path / "e.parquet")
    with pytest.raises(FileExistsError, match="--overwrite"):
        sample().save(path)
    sample(n=2).save(path, overwrite=True)
    assert len(Embeddings.load(path)) == 2
    with pytest.raises(EmbeddingsFileError, match=r"unknown embeddings format '\.txt'"):
        sample().save(tmp_path / "e.txt")
    assert not (tmp_path / "e.txt").exists()


def test_a_parquet_file_without_labels_or_roots_reads_unlabelled(tmp_path: Path) -> None:
    table = make_table(["x.jpg", "y.jpg"], [None, None], np.eye(2, dtype=np.float32), [0, 0])
    pq.write_table(table.select(["path", "embedding"]), tmp_path / "bare.parquet")
    emb = Embeddings.load(tmp_path / "bare.parquet")
    assert emb.paths == ["x.jpg", "y.jpg"] and emb.labels == [None, None]
    assert emb.metadata == {}


def test_bad_files_are_one_clear_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"gone\.parquet: no such embeddings file"):
        Embeddings.load(tmp_path / "gone.parquet")
    with pytest.raises(EmbeddingsFileError, match="unknown embeddings format"):
        Embeddings.load(tmp_path / "e.json")
    damaged = tmp_path / "damaged.parquet"
    damaged.write_bytes(b"PAR1 not really")
    for read in (Embeddings.load, read_metadata):
        with pytest.raises(EmbeddingsFileError, match=r"damaged\.parquet: not a readable") as info:
            read(damaged)
        assert "dinokit embed --overwrite" in str(info.value) and "\n" not in str(info.value)
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), other)
    with pytest.raises(EmbeddingsFileError, match="no 'path' and 'embedding' columns"):
        Embeddings.load(other)
    npy = sample().save(tmp_path / "e.npy")
    tsv = tmp_path / "e.paths.tsv"
    tsv.write_text("\n".join(tsv.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(EmbeddingsFileError, match=r"7 vectors, 6 paths"):
        Embeddings.load(npy)
    tsv.unlink()
    with pytest.raises(EmbeddingsFileError, match=r"paths file e\.paths\.tsv is missing"):
        Embeddings.load(npy)
    (tmp_path / "x.csv").write_text("name,value\na,1\n")
    with pytest.raises(EmbeddingsFileError, match="not lightly's embeddings CSV"):
        Embeddings.load(tmp_path / "x.csv")


def test_metadata_is_read_without_the_rows(tmp_path: Path) -> None:
    for suffix in FORMATS:
        path = sample().save(tmp_path / f"e{suffix}")
        meta = read_metadata(path)
        assert meta is not None and meta["roots"] == ["/data/one", "/data/two"]
    raw = pq.read_schema(tmp_path / "e.parquet").metadata[b"dinokit"]
    assert json.loads(raw)["dim"] == 5 and b" " not in raw  # compact, sorted JSON
    bare = make_table(["x.jpg"], [None], np.ones((1, 2), dtype=np.float32), [0])
    pq.write_table(bare, tmp_path / "bare.parquet")
    assert read_metadata(tmp_path / "bare.parquet") is None


def test_parts_are_written_and_read_back_in_merge_order(tmp_path: Path) -> None:
    work = WorkDir.of(tmp_path / "e.parquet")
    assert work.path == tmp_path / ".e.parquet.parts" and work.read_state() is None
    work.reset({"recipe": {"feature": "cls"}})
    rows = {(1, 1, 0): "c", (1, 0, 1): "b", (1, 0, 0): "a", (2, 0, 0): "d"}
    for (attempt, rank, seq), name in rows.items():
        table = make_table([name], [None], np.full((1, 3), ord(name), np.float32), [0])
        work.write_part(attempt, rank, seq, table)
    names = [t.column("path").to_pylist()[0] for t in work.part_tables(["path", "root"])]
    assert names == ["a", "b", "c", "d"]  # attempt, then rank, then sequence
    assert work.next_attempt() == 3 and work.read_state() == {"recipe": {"feature": "cls"}}
    work.write_skipped(2, 1, [{"path": "y", "reason": "r"}])
    work.write_skipped(2, 0, [{"path": "x", "reason": "r"}])
    assert [s["path"] for s in work.read_skipped(2)] == ["x", "y"]
    work.remove()
    assert not work.path.exists() and work.parts() == []


def test_the_container_is_reached_from_every_documented_place() -> None:
    import dinokit
    import dinokit.embed

    assert dinokit.Embeddings is dinokit.embed.Embeddings is Embeddings
    assert dinokit.embed.EmbeddingsFileError is EmbeddingsFileError
