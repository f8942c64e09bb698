"""Progress of long runs: a tqdm bar with the time left on a terminal, log lines otherwise.

The terminal is faked by replacing :func:`dinokit._progress.on_terminal`; pytest captures
standard error, so a real TTY never appears here.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from dinokit import _progress
from dinokit._progress import ProgressBar, format_seconds
from dinokit.cli import main
from dinokit.duplicates import find_duplicates
from tests.embed._helpers import flat_folder
from tests.search._synthetic import random_embeddings

EMBED = ["--model", "vit_test", "--weights", "none", "--workers", "0", "--batch-size", "2"]
# tqdm's bar: "<desc>: 100%|####| 5/5 [00:01<00:00, 4.2image/s]" (elapsed<left, rate).
BAR = re.compile(r"100%\|.*\| (\d+)/\1 \[\d\d:\d\d<\d\d:\d\d, ")


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_progress, "on_terminal", lambda: True)


@pytest.fixture
def log_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_progress, "on_terminal", lambda: False)


def test_log_lines_count_rate_and_time_left(
    log_file: None, caplog: pytest.LogCaptureFixture
) -> None:
    bar = ProgressBar(10, desc="work", unit="item", log_every_s=0)
    with caplog.at_level(logging.INFO):
        bar.update(4, postfix={"loss": "0.5"})
        bar.update(6)
    bar.close()
    first, last = [r.getMessage() for r in caplog.records]
    assert re.fullmatch(r"work 4/10 items, loss 0\.5, [\d.]+ items/s, \d\d:\d\d left", first)
    assert last.startswith("work 10/10 items") and last.endswith("done")


def test_log_lines_wait_for_their_interval(
    log_file: None, caplog: pytest.LogCaptureFixture
) -> None:
    bar = ProgressBar(3, desc="work", unit="item", log_every_s=3600)
    with caplog.at_level(logging.INFO):
        bar.update(1)
        bar.update(1)
        bar.update(1)  # the end is always logged
    assert [r.getMessage()[:13] for r in caplog.records] == ["work 3/3 item"]


def test_format_seconds() -> None:
    assert (format_seconds(5), format_seconds(125), format_seconds(3723)) == (
        "00:05",
        "02:05",
        "1:02:03",
    )


def test_embed_draws_a_bar_on_a_terminal(
    terminal: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "img"
    flat_folder(root, 5)
    assert main(["embed", str(root), *EMBED, "--out", str(tmp_path / "e.npy")]) == 0
    err = capsys.readouterr().err
    assert "embed: " in err and "image/s" in err
    match = BAR.search(err)
    assert match is not None and match.group(1) == "5"


@pytest.mark.parametrize("flag", [[], ["--no-progress"]])
def test_embed_logs_lines_without_a_terminal(
    log_file: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    flag: list[str],
) -> None:
    root = tmp_path / "img"
    flat_folder(root, 5)
    with caplog.at_level(logging.INFO):
        assert main(["embed", str(root), *EMBED, *flag, "--out", str(tmp_path / "e.npy")]) == 0
    assert "100%" not in capsys.readouterr().err
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("embed ")]
    assert lines and lines[-1].startswith("embed 5/5 images, ") and lines[-1].endswith("done")


def test_no_progress_flag_wins_over_a_terminal(
    terminal: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "img"
    flat_folder(root, 3)
    assert (
        main(["embed", str(root), *EMBED, "--no-progress", "--out", str(tmp_path / "e.npy")]) == 0
    )
    assert "100%" not in capsys.readouterr().err


def test_duplicates_bar_and_log_lines(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    emb = random_embeddings(300)
    monkeypatch.setattr(_progress, "on_terminal", lambda: True)
    find_duplicates(emb, hash_files=False)
    match = BAR.search(capsys.readouterr().err)
    assert match is not None and match.group(1) == "300"

    monkeypatch.setattr(_progress, "on_terminal", lambda: False)
    with caplog.at_level(logging.INFO):
        find_duplicates(emb, hash_files=False)
    assert "100%" not in capsys.readouterr().err
    assert any(r.getMessage().startswith("neighbours 300/300 images") for r in caplog.records)
