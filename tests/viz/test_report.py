"""The HTML report: sections and counts, escaping, files, and how it renders in Chromium."""

from __future__ import annotations

import argparse
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from dinokit.cli import main
from dinokit.embeddings import Embeddings
from dinokit.search import neighbours
from dinokit.viz.report import write_report
from tests.viz._chromium import find_chromium, open_page
from tests.viz._viz_data import make_embeddings, write_assignments


class Page(HTMLParser):
    """The parts of a report page the tests look at."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.groups: list[dict[str, str]] = []  # attributes of each .group, with its images
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self.scripts = 0
        self.cells: list[str] = []
        self._cell = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "section":
            self.sections.append(a["id"])
        elif tag == "div" and a.get("class") == "group":
            self.groups.append({**a, "section": self.sections[-1], "images": "0"})
        elif tag == "img":
            self.images.append(a)
            if self.groups and self.groups[-1]["section"] == self.sections[-1]:
                self.groups[-1]["images"] = str(int(self.groups[-1]["images"]) + 1)
        elif tag in ("link", "a"):
            self.links.append(a.get("href", ""))
        elif tag == "script":
            self.scripts += 1
        self._cell = tag == "td"

    def handle_data(self, data: str) -> None:
        if self._cell:
            self.cells.append(data)
            self._cell = False

    def summary(self) -> dict[str, str]:
        return dict(zip(self.cells[0::2], self.cells[1::2], strict=False))


@pytest.fixture
def collection(tmp_path: Path) -> tuple[Embeddings, Path, Path, Path]:
    """30 labelled images, their embeddings file, 3 clusters and 2 duplicate groups."""
    emb = make_embeddings(tmp_path / "images", classes=["cats", "dogs", "owls"], per_class=10)
    emb_file = emb.save(tmp_path / "emb.parquet")
    clusters = tmp_path / "clusters"
    write_assignments(clusters / "assignments.csv", emb, [i // 10 for i in range(len(emb))])
    groups = tmp_path / "groups.csv"
    groups.write_text(
        "group,path,score\n0,cats/img_0000.jpg,0.99\n0,cats/img_0001.jpg,0.99\n"
        "0,cats/img_0002.jpg,0.98\n1,dogs/img_0003.jpg,0.97\n1,dogs/img_0004.jpg,0.97\n"
    )
    return emb, emb_file, clusters, groups


def test_report_sections_counts_and_files(
    tmp_path: Path, collection: tuple[Embeddings, Path, Path, Path]
) -> None:
    _, emb_file, clusters, groups = collection
    out = tmp_path / "site" / "report.html"
    result = write_report(
        emb_file, out, clusters=clusters, duplicates=groups, per_cluster=4, queries=5,
        neighbours=3,
    )  # fmt: skip
    page = Page(out.read_text(encoding="utf-8"))
    assert page.sections == ["summary", "map", "clusters", "neighbours", "duplicates"]
    assert result.sections == page.sections
    summary = page.summary()
    assert summary["Images"] == "30"
    assert summary["Vector width"] == "16"
    assert summary["Skipped files"] == "1"
    assert summary["Clusters"] == "3 (30 images assigned)"
    assert summary["Duplicate groups"] == "2 (5 images)"
    by_section: dict[str, list[dict[str, str]]] = {}
    for group in page.groups:
        by_section.setdefault(group["section"], []).append(group)
    assert [(g["data-cluster"], g["data-size"], g["images"]) for g in by_section["clusters"]] == [
        ("0", "10", "4"), ("1", "10", "4"), ("2", "10", "4"),
    ]  # fmt: skip
    assert len(by_section["neighbours"]) == 5
    assert all(g["images"] == "4" for g in by_section["neighbours"])  # query + 3
    assert [(g["data-group"], g["images"]) for g in by_section["duplicates"]] == [
        ("0", "3"), ("1", "2"),
    ]  # fmt: skip
    # Every image is a relative file of the report (no network, no absolute path).
    files = out.parent / "report_files"
    assert result.files == files
    for image in page.images:
        assert image["src"].startswith("report_files/"), image["src"]
        assert (out.parent / image["src"]).is_file()
    thumbs = [i for i in page.images if "/t/" in i["src"]]
    assert all(i["loading"] == "lazy" and int(i["width"]) <= 96 for i in thumbs)
    assert len({i["src"] for i in thumbs}) == result.thumbnails
    assert page.scripts == 0
    assert all(link.startswith("#") for link in page.links)


def test_report_neighbours_share_a_class(
    tmp_path: Path, collection: tuple[Embeddings, Path, Path, Path]
) -> None:
    emb, _, _, _ = collection
    out = tmp_path / "r.html"
    write_report(emb, out, queries=6, neighbours=5)
    page = Page(out.read_text(encoding="utf-8"))
    for group in (g for g in page.groups if g["section"] == "neighbours"):
        query = int(group["data-query"])
        alts = [i["alt"] for i in page.images if "/t/" in i["src"]]
        assert emb.paths[query] in alts
    queries = np.array([0, 15])
    _, idx = neighbours(emb.vectors[queries], emb.vectors, 5, exclude=queries)
    assert {emb.labels[i] for i in idx[0]} == {"cats"}
    assert {emb.labels[i] for i in idx[1]} == {"dogs"}
    text = out.read_text(encoding="utf-8")
    assert "No clusters given" in text and "No duplicate groups given" in text


def test_report_escapes_paths_and_labels(tmp_path: Path) -> None:
    nasty = '<script>alert("x")<\\script>&\''
    emb = make_embeddings(tmp_path / "images", classes=[nasty, "plain"], per_class=3)
    out = tmp_path / "r.html"
    write_report(emb, out, queries=6, neighbours=2)
    text = out.read_text(encoding="utf-8")
    assert "<script" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;\\script&gt;&amp;&#x27;" in text
    page = Page(text)
    assert page.scripts == 0
    assert any(i["alt"].startswith(nasty) for i in page.images)  # parsed back intact


def test_report_inline_is_one_file(
    tmp_path: Path, collection: tuple[Embeddings, Path, Path, Path]
) -> None:
    emb, _, clusters, _ = collection
    out = tmp_path / "one.html"
    result = write_report(emb, out, clusters=clusters, inline=True, queries=2)
    assert result.files is None
    assert not (tmp_path / "one_files").exists()
    page = Page(out.read_text(encoding="utf-8"))
    assert page.images and all(i["src"].startswith("data:image/") for i in page.images)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_report_marks_unreadable_images(tmp_path: Path) -> None:
    emb = make_embeddings(tmp_path / "images", classes=["a"], per_class=4)
    emb.absolute_path(2).write_bytes(b"not a jpeg")
    out = tmp_path / "r.html"
    result = write_report(emb, out, queries=4, neighbours=3)
    assert result.unreadable == 1
    assert result.thumbnails == 3
    assert 'class="missing"' in out.read_text(encoding="utf-8")


def test_report_refuses_to_overwrite(
    tmp_path: Path, collection: tuple[Embeddings, Path, Path, Path]
) -> None:
    emb, _, _, _ = collection
    out = tmp_path / "r.html"
    write_report(emb, out, queries=2)
    stamp = out.stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_report(emb, out, queries=2)
    out.unlink()
    with pytest.raises(FileExistsError, match="r_files"):
        write_report(emb, out, queries=2)
    write_report(emb, out, queries=3, overwrite=True)
    assert out.stat().st_mtime_ns != stamp
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_report_reader_errors_name_the_file(
    tmp_path: Path, collection: tuple[Embeddings, Path, Path, Path]
) -> None:
    emb, _, _, _ = collection
    bad = tmp_path / "bad.csv"
    bad.write_text("file,cluster\nx,1\n")
    with pytest.raises(ValueError, match=r"bad\.csv: not a cluster assignments file"):
        write_report(emb, tmp_path / "r.html", clusters=bad)
    with pytest.raises(FileNotFoundError, match=r"assignments\.csv"):
        write_report(emb, tmp_path / "r.html", clusters=tmp_path)
    assert not (tmp_path / "r.html").exists()


def test_report_command(
    tmp_path: Path,
    collection: tuple[Embeddings, Path, Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, emb_file, clusters, groups = collection
    out = tmp_path / "report.html"
    args = ["report", str(emb_file), "--out", str(out), "--clusters", str(clusters)]
    assert main([*args, "--duplicates", str(groups), "--queries", "3"]) == 0
    assert "30 images" in capsys.readouterr().out
    assert main(args) == 2  # exists, no --overwrite
    assert main([*args, "--overwrite", "--inline"]) == 0


CHROMIUM = find_chromium()
# Every image decoded, the sections laid out with a height, their headings, and the groups.
_CHECK = """JSON.stringify({
  sections: [...document.querySelectorAll('section')].map(s => [s.id, s.offsetHeight > 0]),
  headings: [...document.querySelectorAll('h2')].map(h => h.textContent),
  images: document.images.length,
  broken: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length,
  clusters: document.querySelectorAll('#clusters .group').length,
})"""
_LOAD_ALL = """Promise.all([...document.images].map(i => { i.loading = 'eager';
  return i.complete ? null : new Promise(r => { i.onload = r; i.onerror = r; }); }))"""


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium not found: install Debian's chromium package (apt-get install chromium; "
    ".ci/run does) or set DINOKIT_CHROMIUM",
)
def test_report_renders_in_headless_chromium(
    tmp_path: Path, collection: tuple[Embeddings, Path, Path, Path]
) -> None:
    assert CHROMIUM is not None
    _, emb_file, clusters, groups = collection
    out = tmp_path / "report.html"
    write_report(emb_file, out, clusters=clusters, duplicates=groups, queries=4)
    run = open_page(CHROMIUM, out, expression=_CHECK, settle=_LOAD_ALL)
    assert run.problems == []
    seen = json.loads(run.value)
    assert seen["sections"] == [
        ["summary", True], ["map", True], ["clusters", True], ["neighbours", True],
        ["duplicates", True],
    ]  # fmt: skip
    assert seen["headings"] == ["Summary", "Map", "Clusters", "Nearest neighbours", "Duplicates"]
    assert seen["images"] > 30 and seen["broken"] == 0
    assert seen["clusters"] == 3
    assert run.screenshot.startswith(b"\x89PNG")
    shot = tmp_path / "report.png"
    shot.write_bytes(run.screenshot)
    from PIL import Image

    with Image.open(shot) as image:
        assert image.width >= 1000 and image.height > 1500  # the whole page, not one screen

    # The same check catches a broken page: a missing thumbnail and a script error.
    (out.parent / "report_files" / "t" / "0.jpg").unlink()
    broken = tmp_path / "broken.html"
    broken.write_text(out.read_text(encoding="utf-8").replace("</main>", "<script>x(</script>"))
    problems = open_page(CHROMIUM, broken, expression="1", settle=_LOAD_ALL).problems
    assert any("ERR_FILE_NOT_FOUND" in p and "0.jpg" in p for p in problems), problems
    assert any("Content Security Policy" in p for p in problems), problems


def _commands() -> set[str]:
    from dinokit.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


@pytest.mark.skipif(
    not {"cluster", "duplicates"} <= _commands(), reason="cluster/duplicates commands absent"
)
def test_report_reads_cluster_and_duplicates_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emb = make_embeddings(tmp_path / "images", classes=["a", "b", "c"], per_class=8)
    emb_file = emb.save(tmp_path / "emb.parquet")
    clusters, groups = tmp_path / "clusters", tmp_path / "groups.csv"
    assert main(["cluster", str(emb_file), "-k", "3", "--out", str(clusters), "--no-sheets"]) == 0
    assert main(["duplicates", str(emb_file), "--threshold", "0.9", "--out", str(groups)]) == 0
    out = tmp_path / "report.html"
    args = ["report", str(emb_file), "--out", str(out), "--clusters", str(clusters)]
    assert main([*args, "--duplicates", str(groups)]) == 0
    page = Page(out.read_text(encoding="utf-8"))
    sizes = sorted(int(g["data-size"]) for g in page.groups if g["section"] == "clusters")
    assert sizes == [8, 8, 8]  # one cluster per class
    duplicate_groups = [g for g in page.groups if g["section"] == "duplicates"]
    assert duplicate_groups and sum(int(g["data-size"]) for g in duplicate_groups) <= 24
    assert page.summary()["Clusters"] == "3 (24 images assigned)"


def test_report_caps_what_each_section_shows(tmp_path: Path) -> None:
    emb = make_embeddings(tmp_path / "images", classes=[f"c{i}" for i in range(30)], per_class=10,
                          size=8)  # fmt: skip
    cluster_of = [min(i // 8, 29) for i in range(len(emb))]  # 29 clusters of 8, one of 68
    write_assignments(tmp_path / "cl" / "assignments.csv", emb, cluster_of)
    rows = "".join(f"{g},{emb.paths[g * 7 + j]},0.99\n" for g in range(40) for j in range(4))
    (tmp_path / "groups.csv").write_text("group,path,score\n" + rows)
    out = tmp_path / "r.html"
    result = write_report(
        emb, out, clusters=tmp_path / "cl", duplicates=tmp_path / "groups.csv", queries=5,
        neighbours=4, per_cluster=6, max_clusters=10, max_groups=5, per_group=3,
    )  # fmt: skip
    page = Page(out.read_text(encoding="utf-8"))
    shown = [g for g in page.groups if g["section"] == "clusters"]
    assert [int(g["data-cluster"]) for g in shown] == [*range(9), 29]  # the largest 10
    assert all(g["images"] == "6" for g in shown)
    duplicates = [g for g in page.groups if g["section"] == "duplicates"]
    assert len(duplicates) == 5 and all(g["images"] == "3" for g in duplicates)
    text = out.read_text(encoding="utf-8")
    assert "20 smaller clusters not shown." in text and "35 smaller groups not shown." in text
    assert result.thumbnails <= 10 * 6 + 5 * 5 + 5 * 3
