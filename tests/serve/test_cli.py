"""``dinokit serve`` as a command: its options, a missing file, a missing web stack."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from dinokit.cli import main
from dinokit.serve import ServeConfig, require_web


def test_missing_embeddings_file_is_one_line_and_exit_2(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("fastapi", reason="dinokit[serve] is not installed")
    assert main(["serve", str(tmp_path / "none.parquet"), "--port", "0"]) == 2
    assert "none.parquet: no such embeddings file; create it with dinokit embed" in caplog.text


def test_without_the_web_stack_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    hidden = {"uvicorn", "python_multipart", "multipart"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in hidden else real(name, *a)
    )
    with pytest.raises(
        RuntimeError, match=r"needs uvicorn, python-multipart: pip install 'dinokit\[serve\]'"
    ):
        require_web()


def test_config_defaults_token_from_the_environment_and_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DINOKIT_SERVE_TOKEN", "from-env")
    config = ServeConfig(Path("x.parquet"))
    assert config.token == "from-env" and config.host == "127.0.0.1" and config.loopback
    assert ServeConfig(Path("x.parquet"), token="given").token == "given"
    assert not ServeConfig(Path("x.parquet"), host="0.0.0.0").loopback
    assert ServeConfig(Path("x.parquet"), host="::1").loopback
    with pytest.raises(ValueError, match="port"):
        ServeConfig(Path("x.parquet"), port=70000)
