from __future__ import annotations

import os
from pathlib import Path

import pytest

from dinokit.data import ImageList, list_images

from ._helpers import touch


def _rel(images: ImageList) -> list[str]:
    return [r.relpath for r in images.records]


def test_flat_folder_is_unlabelled_sorted_and_absolute(tmp_path: Path) -> None:
    for name in ["b.png", "a.jpg", "c.JPEG", "notes.txt", "model.pt"]:
        touch(tmp_path / "imgs" / name)
    images = list_images([tmp_path / "imgs"])
    assert _rel(images) == ["a.jpg", "b.png", "c.JPEG"]
    assert all(r.label is None for r in images)
    assert images.labels == []
    root = (tmp_path / "imgs").absolute()
    for record in images:
        assert record.path.is_absolute()
        assert record.root == root
        assert record.root / record.relpath == record.path


def test_labelled_folder_keeps_root_images_without_label(tmp_path: Path) -> None:
    root = tmp_path / "shop"
    touch(root / "cats" / "c1.jpg")
    touch(root / "cats" / "deep" / "c2.png")
    touch(root / "dogs" / "d1.webp")
    touch(root / "loose.jpg")
    touch(root / "empty_class" / "readme.md")
    images = list_images([root])
    by_rel = {r.relpath: r.label for r in images}
    assert by_rel == {
        "cats/c1.jpg": "cats",
        "cats/deep/c2.png": "cats",
        "dogs/d1.webp": "dogs",
        "loose.jpg": None,
    }
    assert images.labels == ["cats", "dogs"]


def test_only_nested_folder_counts_as_labelled(tmp_path: Path) -> None:
    touch(tmp_path / "a" / "deeper" / "x.jpg")
    assert [r.label for r in list_images(tmp_path)] == ["a"]


def test_order_is_deterministic_by_path_components(tmp_path: Path) -> None:
    for rel in ["b/2.jpg", "a.jpg", "a/1.jpg", "b/1.jpg", "a/sub/0.jpg"]:
        touch(tmp_path / rel)
    assert _rel(list_images([tmp_path])) == [
        "a/1.jpg",
        "a/sub/0.jpg",
        "a.jpg",
        "b/1.jpg",
        "b/2.jpg",
    ]


def test_hidden_and_non_image_files_ignored(tmp_path: Path) -> None:
    touch(tmp_path / "ok.TIFF")
    touch(tmp_path / ".hidden.jpg")
    touch(tmp_path / ".thumbs" / "t.jpg")
    touch(tmp_path / "__MACOSX_like" / "._skip.jpg")
    touch(tmp_path / "doc.pdf")
    for ext in ["bmp", "gif", "tif", "ppm", "pgm", "pbm"]:
        touch(tmp_path / f"x.{ext}")
    rel = _rel(list_images([tmp_path]))
    assert "ok.TIFF" in rel and len(rel) == 7
    assert not any(part.startswith(".") for r in rel for part in r.split("/"))


def test_list_file_resolves_comments_and_skips(tmp_path: Path) -> None:
    touch(tmp_path / "lists" / "here.jpg")
    touch(tmp_path / "lists" / "sub" / "there.png")
    elsewhere = touch(tmp_path / "other" / "far.jpg")
    touch(tmp_path / "lists" / "notes.md")
    (tmp_path / "lists" / "folder").mkdir()
    lst = tmp_path / "lists" / "images.txt"
    lst.write_text(
        f"# my images\nhere.jpg\n\n  sub/there.png  \n{elsewhere}\nmissing.jpg\nfolder\nnotes.md\n"
    )
    images = list_images([lst])
    assert _rel(images) == ["here.jpg", "sub/there.png", "../other/far.jpg"]
    assert all(r.root == lst.parent.absolute() and r.label is None for r in images)
    assert images.records[2].path == elsewhere.absolute()
    reasons = {Path(s.path).name: s.reason for s in images.skipped}
    assert set(reasons) == {"missing.jpg", "folder", "notes.md"}
    assert "images.txt:6" in reasons["missing.jpg"] and "not found" in reasons["missing.jpg"]


def test_lst_extension_and_single_image_input(tmp_path: Path) -> None:
    image = touch(tmp_path / "one.jpg")
    lst = tmp_path / "x.lst"
    lst.write_text(f"{image}\n")
    assert len(list_images([lst])) == 1
    single = list_images(str(image))
    assert single.records[0].relpath == "one.jpg"
    assert single.records[0].root == tmp_path.absolute()


def test_duplicates_across_inputs_listed_once(tmp_path: Path) -> None:
    a = touch(tmp_path / "d" / "a.jpg")
    touch(tmp_path / "d" / "b.jpg")
    lst = tmp_path / "d" / "l.txt"
    lst.write_text("a.jpg\nb.jpg\n")
    images = list_images([tmp_path / "d", a, lst, str(tmp_path / "d" / ".." / "d")])
    assert _rel(images) == ["a.jpg", "b.jpg"]


def test_symlink_alias_and_loop(tmp_path: Path) -> None:
    touch(tmp_path / "d" / "sub" / "a.jpg")
    os.symlink(tmp_path / "d", tmp_path / "d" / "sub" / "loop")
    os.symlink(tmp_path / "d", tmp_path / "alias")
    images = list_images([tmp_path / "d", tmp_path / "alias"])
    assert _rel(images) == ["sub/a.jpg"]


def test_empty_result_raises_clear_value_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    touch(tmp_path / "empty" / "readme.txt")
    with pytest.raises(ValueError, match=r"no images found in .*empty.*folder containing"):
        list_images([tmp_path / "empty"])
    lst = tmp_path / "l.txt"
    lst.write_text("gone.jpg\n")
    with pytest.raises(ValueError, match="1 listed entries skipped"):
        list_images([lst])
    with pytest.raises(ValueError, match="no inputs"):
        list_images([])


def test_missing_and_unsupported_inputs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_images([tmp_path / "nowhere"])
    touch(tmp_path / "weights.pt")
    with pytest.raises(ValueError, match=r"weights\.pt"):
        list_images([tmp_path / "weights.pt"])
