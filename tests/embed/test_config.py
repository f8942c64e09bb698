"""EmbedConfig: the one definition of embed's options, and the flags built from it."""

from __future__ import annotations

import dataclasses

import pytest

from dinokit.cli import build_parser
from dinokit.config_io import flag_values
from dinokit.embed import EmbedConfig

REQUIRED = ["img", "--model", "vit_test", "--out", "e.parquet"]


def _config(*argv: str) -> EmbedConfig:
    args = build_parser().parse_args(["embed", *argv])
    return EmbedConfig(**flag_values(args, EmbedConfig))


def test_no_flags_give_the_config_defaults() -> None:
    assert _config(*REQUIRED) == EmbedConfig(inputs=["img"], model="vit_test", out="e.parquet")


def test_each_flag_sets_its_field() -> None:
    config = _config(
        "a/", "b.txt", "--model", "m", "--out", "e.npy", "--weights", "none", "--branch",
        "student", "--preprocess", "native", "--size", "96", "--feature", "last4",
        "--no-normalize", "--batch-size", "8", "--workers", "3", "--precision", "bf16",
        "--device", "cpu", "--overwrite", "--no-progress",
    )  # fmt: skip
    expected = EmbedConfig(
        inputs=["a/", "b.txt"], model="m", out="e.npy", weights="none", branch="student",
        preprocess="native", size=96, feature="last4", normalize=False, batch_size=8,
        workers=3, precision="bf16", device="cpu", overwrite=True, progress=False,
    )  # fmt: skip
    assert config == expected
    assert _config(*REQUIRED, "--patch-tokens").patch_tokens


def test_help_shows_every_option_with_its_help_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["embed", "--help"])
    text = "".join(capsys.readouterr().out.split())  # argparse wraps lines, even in words
    for field in dataclasses.fields(EmbedConfig):
        if "help" in field.metadata:
            help_text = field.metadata["help"].replace("%(default)s", str(field.default))
            assert "".join(help_text.split()) in text, field.name
    assert "imagesperforward(64)" in text and "last4blocks(cls)" in text
    assert "--no-normalize" in text and "--no-progress" in text and "--chunk-rows" not in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--feature", "max"], "invalid choice: 'max'"),
        (["--precision", "fp8"], "invalid choice: 'fp8'"),
        (["--batch-size", "x"], "invalid int value"),
    ],
)
def test_the_parser_refuses_bad_values(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["embed", *REQUIRED, *argv])
    assert message in capsys.readouterr().err


def test_model_and_out_are_required_on_the_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["embed", "img"])
    assert "--model, --out" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"feature": "max"}, r"unknown feature 'max'; choose one of cls, mean, cls\+mean, last4"),
        ({"preprocess": "crop"}, "unknown preprocess 'crop'"),
        ({"precision": "fp8"}, "unknown precision 'fp8'"),
        ({"branch": "both"}, "unknown branch 'both'; choose one of teacher, student"),
        ({"batch_size": 0}, "batch_size and chunk_rows must be >= 1"),
        ({"workers": -1}, "workers >= 0"),
        ({"out": "e.txt"}, r"unknown embeddings format '\.txt'"),
        ({"out": "e.npy", "patch_tokens": True}, r"\.parquet files only"),
    ],
)
def test_python_values_are_checked_as_the_flags_are(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        EmbedConfig(inputs=["img"], model="vit_test", **options)  # type: ignore[arg-type]
