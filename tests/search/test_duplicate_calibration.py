"""Calibrating the near-duplicate threshold on a generated collection (tiny test backbone)."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dinokit.cli import main
from dinokit.data import open_image
from dinokit.duplicates import (
    COPY_KINDS,
    calibrate_threshold,
    choose_threshold,
    find_duplicates,
    make_copy,
    nearest,
)
from dinokit.embed import Embedder, Embeddings, RecordedModelError, embed
from tests.data._helpers import write_jpeg

from ._synthetic import unit


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    """Eight random JPEGs plus a byte-identical copy of the first, embedded with vit_test in
    fp32 (the precision the calibration below runs in)."""
    images = tmp_path / "images"
    for i in range(8):
        write_jpeg(images / f"{i}.jpg", 64, 48, seed=i)
    shutil.copy(images / "0.jpg", images / "0_copy.jpg")
    out = tmp_path / "emb.parquet"
    embed(images, model="vit_test", weights="none", workers=0, precision="fp32", out=out)
    return out


def test_separable_scores_give_the_midpoint() -> None:
    copies = [0.99, 0.995, 0.999, 1.0]  # 5th percentile 0.99 + 0.15 * 0.005 = 0.99075
    distinct = [0.5, 0.7, 0.9]  # 99th percentile 0.7 + 0.98 * 0.2 = 0.896
    threshold, separable = choose_threshold(copies, distinct)
    assert separable
    assert threshold == pytest.approx((0.99075 + 0.896) / 2)
    assert 0.896 < threshold < 0.99075


def test_overlapping_scores_give_the_fewest_errors() -> None:
    copies = np.array([0.90, 0.95, 0.97, 0.98, 0.99])
    distinct = np.array([0.80, 0.85, 0.92, 0.96])
    # Errors (copies below + distinct at or above) on each interval of the pooled values:
    # (.85,.90] 0+2/4, (.90,.92] 1/5+2/4, (.92,.95] 1/5+1/4, (.95,.96] 2/5+1/4,
    # (.96,.97] 2/5+0 = 0.4 (the least), (.97,.98] 3/5, (.98,.99] 4/5.
    threshold, separable = choose_threshold(copies, distinct)
    assert not separable
    assert threshold == pytest.approx(0.965)
    grid = np.linspace(0.79, 1.0, 2101)
    errors = [np.mean(copies < t) + np.mean(distinct >= t) for t in grid]
    assert min(errors) == pytest.approx(0.4)


def test_equal_errors_take_the_highest_interval() -> None:
    # 0.5 errors on (.85,.90], (.92,.95] and (.96,.97]: the highest gives fewer false groups.
    threshold, separable = choose_threshold([0.90, 0.95, 0.97, 0.99], [0.80, 0.85, 0.92, 0.96])
    assert (threshold, separable) == (pytest.approx(0.965), False)


def test_jpeg_copies_read_back_as_their_files(tmp_path: Path) -> None:
    image = open_image(write_jpeg(tmp_path / "a.jpg", 640, 480, seed=3))
    by_name = {kind.name: kind for kind in COPY_KINDS}
    # 1/4 downscale at q50: 160 x 120, drafted at 1/2 (80 x 60 keeps a 32 px short side).
    image.resize((160, 120), Image.Resampling.LANCZOS).save(tmp_path / "q50.jpg", quality=50)
    copy = make_copy(image, by_name["quarter_q50"], draft_size=32)
    expected = open_image(tmp_path / "q50.jpg", draft_size=32)
    assert copy.size == expected.size == (80, 60)
    np.testing.assert_array_equal(np.asarray(copy), np.asarray(expected))
    image.save(tmp_path / "q30.jpg", quality=30)
    copy = make_copy(image, by_name["jpeg_q30"])  # no draft size: full resolution
    np.testing.assert_array_equal(np.asarray(copy), np.asarray(open_image(tmp_path / "q30.jpg")))


def test_most_similar_other_looks_past_byte_identical_files(tmp_path: Path) -> None:
    # Rows 0-11 are one file's bytes with nearly equal vectors: row 0's first 8 neighbours
    # are all excluded, so the search must widen to find its most similar distinct image.
    rng = np.random.default_rng(0)
    x = unit(rng.normal(size=(60, 8)))
    x[:12] = unit(x[0] + 0.01 * rng.normal(size=(12, 8)))
    files = [tmp_path / f"{i}.bin" for i in range(60)]
    for i, path in enumerate(files):
        path.write_bytes(b"same" if i < 12 else f"image {i}".encode())
    rows = np.array([0, 5, 30])
    scores, found = nearest.most_similar_others(x, rows, lambda row: files[row])
    sims = x[rows] @ x.T
    sims[:, :12] = np.where(np.isin(rows, range(12))[:, None], -np.inf, sims[:, :12])
    sims[np.arange(3), rows] = -np.inf
    np.testing.assert_array_equal(found, sims.argmax(axis=1))
    np.testing.assert_allclose(scores, sims.max(axis=1), rtol=1e-5)
    assert nearest.FIRST_NEIGHBOURS < 12 and found[0] >= 12


def test_scores_equal_a_direct_computation(collection: Path, tmp_path: Path) -> None:
    emb = Embeddings.load(collection)
    calibration = calibrate_threshold(emb, sample=len(emb), seed=1, precision="fp32")
    assert calibration.sampled == len(emb) == 9
    assert sorted(calibration.rows.tolist()) == list(range(9))
    assert (calibration.missing, calibration.unreadable) == (0, 0)

    # Copies made by hand, saved as files and embedded like any other image.
    i = 2
    row = int(calibration.rows[i])
    original = open_image(emb.absolute_path(row))
    original.save(tmp_path / "q30.jpg", quality=30)
    w, h = original.size
    original.resize((w // 2, h // 2), Image.Resampling.LANCZOS).save(tmp_path / "half.png")
    vectors, _ = Embedder("vit_test", weights="none", precision="fp32").embed_files(
        [tmp_path / "q30.jpg", tmp_path / "half.png"]
    )
    expected = vectors @ emb.vectors[row]
    assert calibration.copy_scores["jpeg_q30"][i] == pytest.approx(expected[0], abs=1e-5)
    assert calibration.copy_scores["half"][i] == pytest.approx(expected[1], abs=1e-5)

    # Distinct: the most similar other image, leaving out itself and the byte-identical copy.
    sims = emb.vectors @ emb.vectors.T
    np.fill_diagonal(sims, -np.inf)
    a, b = emb.index_of("0.jpg"), emb.index_of("0_copy.jpg")
    sims[a, b] = sims[b, a] = -np.inf
    order = np.argsort(calibration.rows)
    np.testing.assert_allclose(calibration.distinct_scores[order], sims.max(axis=1), atol=1e-6)
    assert calibration.nearest[order][a] != b

    # The threshold and the statistics follow from the scores.
    setting = np.concatenate([calibration.copy_scores[k.name] for k in COPY_KINDS if k.calibrates])
    threshold, separable = choose_threshold(setting, calibration.distinct_scores)
    assert (calibration.threshold, calibration.separable) == (threshold, separable)
    assert calibration.missed == pytest.approx(np.mean(setting < threshold))
    crop = calibration.copies[-1]
    assert (crop.kind, crop.calibrates, crop.n) == ("crop90", False, 9)
    assert crop.min <= crop.p5 <= crop.median
    record = json.loads(json.dumps(calibration.to_dict()))
    assert record["threshold"] == threshold and len(record["copies"]) == len(COPY_KINDS)


def test_missing_and_unreadable_files_are_skipped_and_counted(collection: Path) -> None:
    emb = Embeddings.load(collection)
    gone = [emb.index_of("3.jpg"), emb.index_of("5.jpg")]
    for row in gone:
        emb.absolute_path(row).unlink()
    broken = emb.index_of("6.jpg")
    emb.absolute_path(broken).write_bytes(b"not a jpeg")
    calibration = calibrate_threshold(emb, sample=len(emb))
    assert (calibration.sampled, calibration.missing, calibration.unreadable) == (6, 2, 1)
    assert not {*gone, broken} & set(calibration.rows.tolist())
    assert all(len(s) == 6 for s in calibration.copy_scores.values())


def test_a_model_that_cannot_be_loaded_is_a_clear_error(collection: Path, tmp_path: Path) -> None:
    emb = Embeddings.load(collection)
    emb.metadata["model"] = {**emb.metadata["model"], "model": str(tmp_path / "gone_run")}
    with pytest.raises(RecordedModelError, match="cannot load the model") as info:
        calibrate_threshold(emb, sample=4)
    assert "gone_run" in str(info.value) and "\n" not in str(info.value)


def test_cli_calibrates_then_finds_groups(collection: Path, tmp_path: Path, capsys) -> None:
    assert main(["duplicates", str(collection), "--calibrate", "4"]) == 0
    text = capsys.readouterr().out
    assert "calibration on 4 sampled images (seed 0)" in text
    for kind in COPY_KINDS:
        assert kind.description in text
    assert "each image vs its most similar other image: n 4" in text
    assert re.search(
        r"separate \(copies' 5th pct [\d.]+, distinct images' 99th pct [\d.]+\): threshold", text
    )
    # The byte-identical pair is a group whatever the threshold.
    assert "groups," in text and "0_copy.jpg" in text

    out = tmp_path / "groups.json"
    assert main(["duplicates", str(collection), "--calibrate", "--json", "--out", str(out)]) == 0
    document = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == document
    calibration = document["calibration"]
    assert calibration["sampled"] == 9 and document["threshold"] == calibration["threshold"]
    groups = find_duplicates(collection, threshold=document["threshold"])
    assert document["groups"] == [g.to_dict() for g in groups]


def test_cli_threshold_with_calibrate_is_an_error(collection: Path, caplog) -> None:
    caplog.set_level(logging.ERROR)
    cmd = ["duplicates", str(collection), "--threshold", "0.99", "--calibrate", "4"]
    assert main(cmd) == 2
    (message,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "--threshold and --calibrate" in message and "\n" not in message


def test_cli_model_that_cannot_be_loaded(collection: Path, tmp_path: Path, caplog) -> None:
    emb = Embeddings.load(collection)
    emb.metadata["model"] = {**emb.metadata["model"], "model": str(tmp_path / "gone_run")}
    moved = emb.save(tmp_path / "moved.parquet")
    assert main(["duplicates", str(moved), "--calibrate", "4"]) == 2
    assert "cannot load the model" in caplog.text and "gone_run" in caplog.text
