"""evaluate(): known kNN answers from embeddings, and models on generated labelled folders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dinokit.api import evaluate
from dinokit.cli import main
from dinokit.embeddings import Embeddings
from dinokit.models import save_backbone
from tests.data._helpers import write_jpeg

S = math.sqrt(1 - 0.99**2)


def _known() -> tuple[Embeddings, Embeddings]:
    # One "cat" at cosine 1 from the first query, three "dog"s at cosine 0.99.
    # Query 1 (a dog): k=1 -> cat (wrong); k=4 -> dogs 3 * exp(-0.01 / 0.07) = 2.60 > 1: right.
    # Query 2 (a dog) on the third axis: nearest is the third dog (0.141) for any k.
    train = Embeddings(
        paths=["c.jpg", "d1.jpg", "d2.jpg", "d3.jpg"],
        labels=["cat", "dog", "dog", "dog"],
        vectors=np.array([[1, 0, 0], [0.99, S, 0], [0.99, -S, 0], [0.99, 0, S]], dtype=np.float32),
        metadata={"preprocess": "resize", "feature": "cls", "branch": "teacher"},
    )
    val = Embeddings(
        paths=["q1.jpg", "q2.jpg"],
        labels=["dog", "dog"],
        vectors=np.array([[1, 0, 0], [0, 0, 1]], dtype=np.float32),
    )
    return train, val


def test_hand_computed_knn_from_embeddings(tmp_path) -> None:
    train, val = _known()
    train_file = train.save(tmp_path / "train.parquet")
    (row,) = evaluate(train_embeddings=train_file, val_embeddings=val, k=(1, 4), linear=True)
    assert row.knn == {1: 0.5, 4: 1.0}
    assert row.preprocess == "resize" and row.n_train == 4 and row.n_val == 2
    assert row.linear is not None and 0.0 <= row.linear <= 1.0
    assert 1.0 <= row.quality["effective_rank"] <= 3.0


def test_dimension_mismatch_is_a_clear_error() -> None:
    train, _ = _known()
    other = Embeddings(["x.jpg"], ["dog"], np.ones((1, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="train embeddings have 3 dimensions and val 5"):
        evaluate(train_embeddings=train, val_embeddings=other)


def test_without_labels_only_the_quality_score() -> None:
    train, _ = _known()
    unlabelled = Embeddings(train.paths, [None] * 4, train.vectors)
    (row,) = evaluate(train_embeddings=unlabelled)
    assert row.knn == {} and row.linear is None and row.n_val == 0
    assert row.quality["effective_rank"] > 1.0


def _labelled_folder(root, per_class: int, seed: int):
    for c, name in enumerate(["a", "b"]):
        for i in range(per_class):
            write_jpeg(root / name / f"{i}.jpg", 40, 30, seed=seed + 100 * c + i)
    return root


def test_models_and_preprocessing_side_by_side(tmp_path) -> None:
    train = _labelled_folder(tmp_path / "train", 4, seed=0)
    val = _labelled_folder(tmp_path / "val", 2, seed=50)
    rows = evaluate(
        "vit_test",
        train=train,
        val=val,
        weights="none",
        preprocess=["center-crop", "resize"],
        k=(1, 20),
        workers=0,
    )
    assert [(r.model, r.preprocess) for r in rows] == [
        ("vit_test", "center-crop"),
        ("vit_test", "resize"),
        ("raw pixels (32 px)", "center-crop"),
    ]
    for row in rows[:2]:
        assert row.n_train == 8 and row.n_val == 4
        assert set(row.knn) == {1, 20} and all(0.0 <= v <= 1.0 for v in row.knn.values())
        assert row.linear is None and row.feature == "cls" and row.branch == "teacher"


def test_nothing_to_evaluate() -> None:
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate()
    with pytest.raises(ValueError, match="needs --train"):
        evaluate("vit_test")


def _colour_folder(root: Path, per_class: int, seed: int) -> Path:
    """Classes that differ by colour only: noisy red vs noisy blue images of varied shapes."""
    rng = np.random.default_rng(seed)
    for name, colour in (("red", (200, 40, 40)), ("blue", (40, 40, 200))):
        for i in range(per_class):
            height, width = (30, 44) if i % 2 else (50, 36)
            noise = rng.integers(-40, 41, (height, width, 3))
            pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_raw_pixel_row_is_last_and_separates_colours(tmp_path) -> None:
    # fp32 throughout (vit_test on CPU, weights "none"; pixel vectors are float32).
    train = _colour_folder(tmp_path / "train", 6, seed=0)
    val = _colour_folder(tmp_path / "val", 3, seed=1)
    (train / "red" / "broken.jpg").write_bytes(b"")  # unreadable: skipped
    write_jpeg(train / "loose.jpg", 40, 30)  # outside class folders: left out
    rows = evaluate(
        "vit_test", train=train, val=val, weights="none", k=(1, 5), linear=True, workers=0
    )
    assert [r.model for r in rows] == ["vit_test", "raw pixels (32 px)"]
    baseline = rows[-1]
    assert baseline.n_train == 12 and baseline.n_val == 6
    assert baseline.knn == {1: 1.0, 5: 1.0} and baseline.linear == 1.0
    assert baseline.feature == "pixels" and baseline.quality["effective_rank"] > 1.0


def test_baselines_off_and_the_cli_flag(tmp_path, capsys) -> None:
    train = _colour_folder(tmp_path / "train", 2, seed=0)
    val = _colour_folder(tmp_path / "val", 1, seed=1)
    known, _ = _known()
    rows = evaluate(train_embeddings=known, train=train, val=val, k=(1,))
    assert [r.model for r in rows][-1] == "raw pixels (32 px)" and len(rows) == 2
    assert len(evaluate(train_embeddings=known, train=train, val=val, baselines=False)) == 1

    file = str(known.save(tmp_path / "known.parquet"))
    args = ["evaluate", "--train-embeddings", file, "--train", str(train), "--val", str(val)]
    assert main([*args, "--k", "1", "--json"]) == 0
    names = [row["model"] for row in json.loads(capsys.readouterr().out)]
    assert names[-1] == "raw pixels (32 px)"
    assert main([*args, "--k", "1"]) == 0
    assert "raw pixels (32 px)" in capsys.readouterr().out
    assert main([*args, "--k", "1", "--json", "--no-baselines"]) == 0
    assert "raw pixels" not in capsys.readouterr().out


def test_trained_weights_get_a_random_init_row_before_the_pixels(tmp_path, vit_test) -> None:
    # fp32 (vit_test on CPU). A weights file of vit_test whose weights differ from the seeded
    # random initialisation: its row, then "random init (vit_test)", then raw pixels.
    train = _colour_folder(tmp_path / "train", 4, seed=0)
    val = _colour_folder(tmp_path / "val", 2, seed=1)
    with torch.no_grad():
        for parameter in vit_test.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    weights = save_backbone(vit_test, tmp_path / "trained.safetensors")
    options = dict(train=train, val=val, k=(1, 3), workers=0, precision="fp32")
    rows = evaluate([weights, weights], **options)
    assert [r.model for r in rows] == [
        str(weights),
        str(weights),
        "random init (vit_test)",
        "raw pixels (32 px)",
    ]
    # The row is the architecture with --weights none (the same seeded initialisation).
    (untrained,) = evaluate("vit_test", weights="none", baselines=False, **options)
    random_row = rows[2]
    assert random_row.knn == untrained.knn and random_row.n_train == untrained.n_train == 8
    assert random_row.quality == pytest.approx(untrained.quality)
    assert rows[0].quality != pytest.approx(untrained.quality)  # the trained weights differ
    # A model that is itself random gets no second row, and no baselines means none at all.
    named = evaluate("vit_test", weights="none", **options)
    assert [r.model for r in named] == ["vit_test", "raw pixels (32 px)"]
    assert [r.model for r in evaluate(weights, baselines=False, **options)] == [str(weights)]
