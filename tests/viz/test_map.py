"""The 2-D map: layouts, colours and legend, thumbnails, the PNG and the command."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dinokit.cli import main
from dinokit.viz.inputs import MissingDependencyError
from dinokit.viz.map import color_groups, layout_2d, pca, plot_map, spread_sample
from tests.viz._viz_data import make_embeddings, write_assignments


def test_pca_matches_svd_and_is_chunk_independent() -> None:
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(300, 12)) * np.linspace(5, 0.1, 12)).astype(np.float32)
    coords = pca(x, 2)
    assert coords.shape == (300, 2) and coords.dtype == np.float32
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    reference = centred @ vt[:2].T
    for j in range(2):  # same axes up to sign
        corr = np.corrcoef(coords[:, j], reference[:, j])[0, 1]
        assert abs(corr) > 0.9999
    np.testing.assert_allclose(pca(x, 2, chunk=7), coords, rtol=1e-4, atol=1e-4)


def test_color_groups_caps_the_legend() -> None:
    names: list[str | None] = []
    for i in range(30):  # class i has 31 - i images: sizes all different
        names += [f"class{i:02d}"] * (31 - i)
    names += [None] * 5
    codes, legend = color_groups(names, max_entries=10, none_name="no label")
    assert len(legend) == 10
    assert [e.name for e in legend[:8]] == [f"class{i:02d}" for i in range(8)]
    assert [e.count for e in legend[:8]] == [31 - i for i in range(8)]
    assert legend[8].name == "22 others"
    assert legend[8].count == sum(31 - i for i in range(8, 30))
    assert (legend[9].name, legend[9].count) == ("no label", 5)
    assert sum(e.count for e in legend) == len(names)
    assert np.bincount(codes, minlength=10).tolist() == [e.count for e in legend]
    assert len({e.color for e in legend}) == 10
    few_codes, few = color_groups(["b", "a", "b"], max_entries=10)
    assert [(e.name, e.count) for e in few] == [("b", 2), ("a", 1)]
    assert few_codes.tolist() == [0, 1, 0]


def test_spread_sample_picks_distinct_far_points() -> None:
    rng = np.random.default_rng(0)
    coords = np.concatenate([rng.normal(size=(100, 2)) * 0.01 + c for c in ((0, 0), (5, 5))])
    picked = spread_sample(coords, 2)
    assert len(set(picked.tolist())) == 2
    assert {int(p) // 100 for p in picked} == {0, 1}  # one in each blob
    assert len(spread_sample(coords, 500)) == 200


def test_map_png_legend_and_thumbnails(tmp_path: Path) -> None:
    emb = make_embeddings(tmp_path / "images", classes=["cats", "dogs", None], per_class=8)
    emb_file = emb.save(tmp_path / "emb.parquet")
    out = tmp_path / "maps" / "map.png"
    result = plot_map(emb_file, out, thumbnails=5)
    assert result.path == out and out.is_file()
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 800
    assert result.color_by == "label"
    assert [(e.name, e.count) for e in result.legend] == [
        ("cats", 8), ("dogs", 8), ("no label", 8),
    ]  # fmt: skip
    assert result.coords.shape == (24, 2)
    assert len(result.thumbnails) == 5 and len(set(result.thumbnails)) == 5
    # The layout separates the classes: each point's nearest other point shares its label.
    d = ((result.coords[:, None] - result.coords[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nearest = d.argmin(axis=1)
    assert all(emb.labels[i] == emb.labels[j] for i, j in enumerate(nearest))
    assert sorted(p.name for p in out.parent.iterdir()) == ["map.png"]  # no temp files left


def test_map_coloured_by_cluster(tmp_path: Path) -> None:
    emb = make_embeddings(tmp_path / "images", classes=["a", "b"], per_class=6)
    clusters = tmp_path / "clusters"
    write_assignments(clusters / "assignments.csv", emb, [0] * 5 + [1] * 6 + [2])
    result = plot_map(emb, None, color="cluster", clusters=clusters)
    assert result.path is None
    assert [(e.name, e.count) for e in result.legend] == [
        ("cluster 1", 6), ("cluster 0", 5), ("cluster 2", 1),
    ]  # fmt: skip


def test_map_colour_errors(tmp_path: Path) -> None:
    unlabelled = make_embeddings(tmp_path / "images", classes=[None], per_class=4)
    assert plot_map(unlabelled, None).legend == []  # one colour
    with pytest.raises(ValueError, match="no labels; use --color cluster"):
        plot_map(unlabelled, None, color="label")
    with pytest.raises(ValueError, match="needs --clusters DIR"):
        plot_map(unlabelled, None, color="cluster")


@pytest.mark.parametrize(("method", "blocked"), [("umap", "umap"), ("tsne", "sklearn")])
def test_missing_optional_dependency_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, method: str, blocked: str
) -> None:
    for name in [m for m in sys.modules if m == blocked or m.startswith(blocked + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, blocked, None)  # makes the import fail
    vectors = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    with pytest.raises(MissingDependencyError) as info:
        layout_2d(vectors, method=method)
    message = str(info.value)
    assert f"--method {method} needs" in message
    assert "pip install 'dinokit[viz]'" in message and "--method pca" in message
    assert "\n" not in message


@pytest.mark.slow  # UMAP compiles its numba kernels on first use (minutes on 2 cores)
@pytest.mark.parametrize(("method", "module"), [("umap", "umap"), ("tsne", "sklearn")])
def test_optional_layouts_when_installed(method: str, module: str) -> None:
    pytest.importorskip(module, reason=f"{module} not installed (pip install 'dinokit[viz]')")
    rng = np.random.default_rng(0)
    vectors = np.concatenate([rng.normal(size=(30, 64)) + 4 * c for c in range(2)])
    coords = layout_2d(vectors.astype(np.float32), method=method)
    assert coords.shape == (60, 2) and np.isfinite(coords).all()
    with pytest.raises(ValueError, match="unknown map method"):
        layout_2d(vectors, method="mds")


def test_map_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    emb = make_embeddings(tmp_path / "images", classes=["a", "b", "c"], per_class=4)
    emb_file = emb.save(tmp_path / "emb.parquet")
    out = tmp_path / "map.png"
    assert main(["map", str(emb_file), "--out", str(out), "--thumbnails", "3"]) == 0
    assert "12 points, pca, 3 legend entries" in capsys.readouterr().out
    before = out.read_bytes()
    assert main(["map", str(emb_file), "--out", str(out)]) == 2
    assert "already exists; pass --overwrite" in caplog.text
    assert out.read_bytes() == before
    assert main(["map", str(emb_file), "--out", str(out), "--overwrite"]) == 0
    assert main(["map", str(tmp_path / "nope.parquet"), "--out", str(tmp_path / "x.png")]) == 2
    assert "nope.parquet" in caplog.records[-1].getMessage()


def test_python_api_is_exported(tmp_path: Path) -> None:
    import dinokit

    emb = make_embeddings(tmp_path / "images", classes=["a", "b"], per_class=3)
    assert dinokit.plot_map(emb, tmp_path / "m.png").path == tmp_path / "m.png"
    assert dinokit.write_report(emb, tmp_path / "r.html", queries=2).images == 6
