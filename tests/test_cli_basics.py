"""``dinokit models``, ``dinokit env`` and ``python -m dinokit --help``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import timm
import torch
import torchvision

import dinokit
from dinokit.cli import main
from dinokit.models.summary import count_parameters, describe_backbones
from tests.models.checkpoints import Caches


def test_models_table_lists_every_backbone(
    capsys: pytest.CaptureFixture[str], offline_caches: Caches
) -> None:
    cached = offline_caches.hub_checkpoints / "dino_deitsmall16_pretrain.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"placeholder")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert {"name", "params(M)", "local", "copy"} <= set(lines[0].split())
    first_words = {line.split()[0] for line in lines[2:] if line.strip()}
    assert set(dinokit.list_backbones()) <= first_words
    row = next(line for line in lines if line.startswith("dino_vits16 "))
    assert "21.67" in row
    assert row.endswith(str(cached))
    row = next(line for line in lines if line.startswith("dino_vitb16 "))
    assert str(offline_caches.torch_home) not in row
    assert "timm:<name>" in out


def test_models_json(capsys: pytest.CaptureFixture[str], offline_caches: Caches) -> None:
    cached = offline_caches.hub_checkpoints / "dinov2_vits14_reg4_pretrain.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"placeholder")
    assert main(["models", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert list(rows) == dinokit.list_backbones()
    assert rows["vit_test"]["params_m"] < 1
    assert rows["vit_test"]["weights_file"] is None
    assert rows["dino_vits16"]["params_m"] == pytest.approx(21.67, abs=0.01)
    assert rows["dinov2_vitg14"]["params_m"] > 1000
    assert rows["dinov2_vits14_reg"]["local_path"] == str(cached)
    assert rows["dinov2_vits14"]["local_path"] is None
    assert rows["dino_vits16"]["architecture"] == "ViT-S/16"


def test_count_parameters() -> None:
    assert count_parameters("dino_vits16") == pytest.approx(21.7e6, rel=0.005)
    assert count_parameters("vit_test") < 1_000_000
    assert describe_backbones(["vit_test"])[0]["params_m"] < 1


def test_env_json(capsys: pytest.CaptureFixture[str], offline_caches: Caches) -> None:
    assert main(["env", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["torch"] == torch.__version__
    assert report["timm"] == timm.__version__
    assert report["torchvision"].split("+")[0] == torchvision.__version__.split("+")[0]
    assert isinstance(report["cpu_flags"], list)
    assert all(isinstance(flag, str) for flag in report["cpu_flags"])
    assert report["weights_search_path"] == [
        str(offline_caches.hub_checkpoints),
        str(offline_caches.hf_cache),
    ]
    assert report["offline"] is True


def test_env_shows_what_auto_precision_picks(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DINOKIT_AUTO_PRECISION", "fp16")
    assert main(["env", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["auto_precision"][0] == "cpu=fp16"
    assert report["auto_precision_override"] == "fp16"
    monkeypatch.delenv("DINOKIT_AUTO_PRECISION")
    assert main(["env", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["auto_precision"][0] == f"cpu={'bf16' if report['cpu_bf16'] else 'fp32'}"
    assert report["auto_precision_override"] is None


def test_env_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("python")
    assert "weights_search_path" in out and "cpu_flags" in out


# ``python -m dinokit --help`` (run as ``__main__`` like ``-m``) with every socket connection
# turned into a failure.
_HELP_WITHOUT_NETWORK = """
import runpy, socket, sys
def no_network(*args, **kwargs):
    sys.stderr.write("network access while building the parser")
    raise SystemExit(3)
socket.socket.connect = no_network
socket.create_connection = no_network
sys.argv = ["dinokit", "--help"]
runpy.run_module("dinokit", run_name="__main__", alter_sys=True)
"""


def test_help_runs_without_network() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _HELP_WITHOUT_NETWORK],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: dinokit" in result.stdout
    assert "models" in result.stdout and "env" in result.stdout


def test_version_and_missing_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert dinokit.__version__ in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
