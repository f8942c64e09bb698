"""The store of added images: parts in order, leftovers of a killed write, another model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dinokit.serve.store import AddedImagesError, AddedStore, safe_stem


def test_parts_load_in_order_and_leftover_temporary_files_are_dropped(tmp_path: Path) -> None:
    emb = tmp_path / "emb.parquet"
    store = AddedStore(emb, fingerprint="abc", dim=3)
    assert store.load()[0] == []
    first = np.eye(3, dtype=np.float32)[:2]
    store.append(["a.jpg", "b.jpg"], ["x", None], first)
    store.append(["c.jpg"], [None], np.ones((1, 3), dtype=np.float32))
    (store.folder / ".part-000003.parquet.123.tmp").write_bytes(b"half a part")  # killed mid-write
    paths, labels, vectors = AddedStore(emb, fingerprint="abc", dim=3).load()
    assert paths == ["a.jpg", "b.jpg", "c.jpg"] and labels == ["x", None, None]
    np.testing.assert_array_equal(vectors, np.concatenate([first, np.ones((1, 3))]))
    assert not list(store.folder.glob(".*.tmp"))
    reopened = AddedStore(emb, fingerprint="abc", dim=3)
    reopened.load()
    assert reopened.append(["d.jpg"], [None], np.ones((1, 3), dtype=np.float32)).name == (
        "part-000003.parquet"
    )


def test_rows_of_another_model_are_refused_with_what_to_do(tmp_path: Path) -> None:
    emb = tmp_path / "emb.parquet"
    AddedStore(emb, fingerprint="abc", dim=3).append(["a.jpg"], [None], np.ones((1, 3), "float32"))
    with pytest.raises(AddedImagesError, match=r"another model .* move .*emb\.parquet\.added"):
        AddedStore(emb, fingerprint="def", dim=3).load()


def test_saved_names_are_safe_and_the_same_bytes_keep_their_name(tmp_path: Path) -> None:
    assert safe_stem("../../etc/pass wd.jpg") == "pass_wd"
    assert safe_stem("..") == "image" and safe_stem("C:\\x\\ümlaut.png") == "mlaut"
    store = AddedStore(tmp_path / "emb.parquet", fingerprint=None, dim=2)
    assert store.save_image(b"one", "a.png", "PNG") == "a.png"
    assert store.save_image(b"one", "a.jpg", "PNG") == "a.png"  # suffix from the format
    other = store.save_image(b"two", "a.png", "PNG")
    assert other.startswith("a-") and other.endswith(".png")
    assert (store.images / other).read_bytes() == b"two"
