"""End-to-end commands on a generated folder embedded with the tiny test backbone."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dinokit.cli import main
from dinokit.embed import Embeddings, embed
from tests.data._helpers import write_jpeg


@pytest.fixture
def folder_embeddings(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    for c, name in enumerate(["a", "b"]):
        for i in range(4):
            write_jpeg(images / name / f"{i}.jpg", 48, 40, seed=10 * c + i)
    shutil.copy(images / "a" / "0.jpg", images / "b" / "copy.jpg")
    out = tmp_path / "emb.parquet"
    # At auto, as users run it: a query image is embedded in the same process at the same
    # precision, so it scores 1 with its own row whichever precision auto picks.
    emb = embed(images, model="vit_test", weights="none", workers=0, out=out)
    sims = emb.vectors @ emb.vectors.T
    copy, original = emb.index_of("b/copy.jpg"), emb.index_of("a/0.jpg")
    sims[copy, original] = sims[original, copy] = 0.0
    assert (sims - 2 * np.eye(len(emb)) < 0.999).all()
    return out


def test_search_by_image_and_by_path(folder_embeddings: Path, capsys) -> None:
    emb = Embeddings.load(folder_embeddings)
    query = emb.absolute_path(emb.index_of("a/1.jpg"))
    assert main(["search", str(folder_embeddings), "--query", str(query), "-k", "3", "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    top = result["neighbours"][0]
    # The query image is itself indexed: it comes first with cosine 1.
    assert top["path"] == "a/1.jpg" and top["score"] == pytest.approx(1.0, abs=1e-4)
    assert [n["rank"] for n in result["neighbours"]] == [1, 2, 3]

    assert main(["search", str(folder_embeddings), "--query-path", "a/0.jpg", "-k", "1"]) == 0
    text = capsys.readouterr().out
    assert "query: a/0.jpg" in text and "b/copy.jpg" in text  # its identical copy
    assert folder_embeddings.with_name("emb.parquet.faiss").exists()


def test_query_model_that_cannot_be_loaded(folder_embeddings: Path, tmp_path: Path, caplog) -> None:
    emb = Embeddings.load(folder_embeddings)
    emb.metadata["model"] = {**emb.metadata["model"], "model": str(tmp_path / "gone_run")}
    moved = emb.save(tmp_path / "moved.parquet")
    query = str(emb.absolute_path(0))
    assert main(["search", str(moved), "--query", query]) == 2
    assert "gone_run" in caplog.text


def test_duplicates_command_writes_groups(folder_embeddings: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "groups.csv"
    # A random-weights model maps all noise images close together: only the copy is above
    # this threshold (the most similar distinct pair is below 0.999).
    cmd = ["duplicates", str(folder_embeddings), "--threshold", "0.9999"]
    assert main([*cmd, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "1 groups, 2 images" in text
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["path"] for r in rows) == ["a/0.jpg", "b/copy.jpg"]
    assert {r["kind"] for r in rows} == {"identical"}
    assert main([*cmd, "--out", str(out)]) == 2  # no overwrite
    assert main([*cmd, "--out", str(out), "--overwrite"]) == 0


def test_cluster_command(folder_embeddings: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "clusters"
    assert main(["cluster", str(folder_embeddings), "-k", "2", "--out", str(out)]) == 0
    assert "closest to centroid" in capsys.readouterr().out
    with (out / "assignments.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 9 and {r["cluster"] for r in rows} <= {"0", "1"}
    assert len(list((out / "sheets").glob("cluster_*.jpg"))) == len({r["cluster"] for r in rows})
    assert main(["cluster", str(folder_embeddings), "-k", "2", "--out", str(out)]) == 2


def test_evaluate_command_from_embeddings(folder_embeddings: Path, capsys) -> None:
    file = str(folder_embeddings)
    args = ["evaluate", "--train-embeddings", file, "--val-embeddings", file, "--k", "1,3"]
    assert main([*args, "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    # Each image is its own nearest neighbour, except that a/0.jpg and its copy in b tie.
    assert row["knn"]["1"] in (8 / 9, 1.0)
    assert row["n_train"] == 9 and row["quality"]["effective_rank"] > 1.0
    assert main(args) == 0
    assert "kNN@3" in capsys.readouterr().out
