"""``dinokit train`` end to end: flags, ``--config`` YAML, ``--resume``, exit codes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from dinokit.cli import main
from dinokit.training import TrainConfig
from tests.training.test_run import fast_training, image_folder, last_checkpoint, step_records

__all__ = ["fast_training", "image_folder"]  # shared fixtures

#: Everything a seconds-long run needs, as a --config file.
SMALL = {
    "model": "vit_test",
    "weights": "none",
    "epochs": 1,
    "batch_size": 4,
    "out_dim": 32,
    "hidden_dim": 64,
    "bottleneck_dim": 32,
    "global_size": 32,
    "local_size": 16,
    "local_crops": 2,
    "workers": 0,
    "device": "cpu",
    "precision": "fp32",
    "log_every": 1,
}


def write_config(path: Path, values: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="module")
def cli_run(image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``dinokit train IMAGES --config small.yaml --epochs 2 --seed 3 ...``: 2 steps/epoch."""
    root = tmp_path_factory.mktemp("cli")
    config = write_config(root / "small.yaml", SMALL)
    out = root / "run"
    argv = ["train", str(image_folder), "--out", str(out), "--config", str(config)]
    code = main([*argv, "--epochs", "2", "--seed", "3", "--drop-path", "0", "--no-progress"])
    assert code == 0
    return out


def test_train_writes_the_run(cli_run: Path) -> None:
    for name in ("config.yaml", "metrics.jsonl", "checkpoints/last.pt"):
        assert (cli_run / name).is_file(), name
    for name in ("teacher.safetensors", "student.safetensors"):
        assert (cli_run / name).stat().st_size > 0, name
    checkpoint = last_checkpoint(cli_run)
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (2, 4)
    assert [r["step"] for r in step_records(cli_run)] == [1, 2, 3, 4]


def test_yaml_values_are_used_and_flags_override_them(cli_run: Path) -> None:
    saved = yaml.safe_load((cli_run / "config.yaml").read_text())
    assert saved["epochs"] == 2 and saved["seed"] == 3 and saved["drop_path"] == 0  # flags
    for key, value in SMALL.items():
        if key != "epochs":
            assert saved[key] == value, key  # from the YAML file
    assert saved["progress"] is False and saved["resume"] is False
    assert len(saved["data"]) == 1 and Path(saved["data"][0]).name == "train"


def test_existing_run_without_resume_exits_2(
    cli_run: Path, image_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        code = main(["train", str(image_folder), "--out", str(cli_run), "--model", "vit_test"])
    assert code == 2
    assert "already holds a run" in caplog.text and "--resume" in caplog.text


def test_unknown_yaml_key_exits_2_naming_it(
    image_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path / "typo.yaml", {**SMALL, "epohcs": 3})
    out = tmp_path / "run"
    with caplog.at_level(logging.ERROR):
        code = main(["train", str(image_folder), "--out", str(out), "--config", str(config)])
    assert code == 2
    assert "epohcs" in caplog.text and "unknown keys" in caplog.text
    assert not out.exists()


def test_resume_reads_the_saved_config_and_extends_the_run(
    image_folder: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "small.yaml", SMALL)
    out = tmp_path / "run"
    base = ["train", "--out", str(out)]
    first = [str(image_folder), "--config", str(config), "--epochs", "2", "--max-steps", "1"]
    assert main([*base, *first]) == 0
    assert last_checkpoint(out)["global_step"] == 1
    # No data, model or sizes given: all of them come from the run's config.yaml; the
    # saved max_steps only stopped the first invocation.
    assert main([*base, "--resume"]) == 0
    assert last_checkpoint(out)["epoch"] == 2
    assert main([*base, "--resume", "--epochs", "3", "--no-progress"]) == 0
    checkpoint = last_checkpoint(out)
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (3, 6)
    assert [r["step"] for r in step_records(out)] == [1, 2, 3, 4, 5, 6]
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["epochs"] == 3 and saved["out_dim"] == 32 and saved["resume"] is False


def test_head_and_centring_flags_reach_the_config(tmp_path: Path) -> None:
    from dinokit.cli import build_parser
    from dinokit.cli.train_cmd import build_config

    def config_of(*flags: str) -> TrainConfig:
        args = build_parser().parse_args(["train", "imgs", "--out", str(tmp_path / "r"), *flags])
        return build_config(args)

    default = config_of()
    # Unset: auto (the reference's off, or what a loaded head / recorded recipe says).
    assert default.use_bn_in_head is None and default.centering == "center"
    assert default.norm_last_layer is None and default.momentum is None
    chosen = config_of("--use-bn-in-head", "--centering", "sinkhorn", "--no-norm-last-layer")
    assert chosen.use_bn_in_head is True and chosen.centering == "sinkhorn"
    assert chosen.norm_last_layer is False
    assert config_of("--no-use-bn-in-head").use_bn_in_head is False
