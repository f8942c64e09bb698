"""End-to-end tests of ``dinokit.training.train``: what a run folder holds and how it reloads.

Every run uses the tiny ``vit_test`` backbone on a handful of 32 px drawn images, so a whole
training run takes about a second on a CPU. The helpers at the top are shared by the other
training test modules.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import dinokit
from dinokit.dino import DINOLoss
from dinokit.sample_data import make_sample_images
from dinokit.training import NonFiniteLossError, TrainConfig, train
from dinokit.training import run as run_module
from dinokit.training.build import build_networks
from dinokit.training.checkpoint import load_checkpoint
from dinokit.training.config import ResolvedConfig
from dinokit.training.metrics import plot_curves
from dinokit.training.model import MultiCropNetwork
from dinokit.training.resolve import resolve_config
from dinokit.training.start import StartingPoint, load_start

#: Images in the shared folder (10 classes x 1) and the batch size of most tests.
N_IMAGES = 10
BATCH = 2
PRECS = ("fp32", "bf16")
STEPS_PER_EPOCH = N_IMAGES // BATCH


def make_image_folder(folder: Path, *, per_class: int = 1) -> Path:
    """A labelled folder of ``10 * per_class`` drawn 32 px images; returns its train split."""
    make_sample_images(folder, per_class=per_class, val_per_class=0, size=32)
    return folder / "train"


def tiny_config(data: Path | str, out: Path | str, **overrides: Any) -> TrainConfig:
    """A seconds-long run: ``vit_test`` from scratch, small head, 32/16 px crops, CPU fp32."""
    values: dict[str, Any] = {
        "data": [str(data)],
        "out": str(out),
        "model": "vit_test",
        "weights": "none",
        "epochs": 2,
        "batch_size": BATCH,
        "out_dim": 64,
        "hidden_dim": 64,
        "bottleneck_dim": 32,
        "global_size": 32,
        "local_size": 16,
        "local_crops": 2,
        "workers": 0,
        "progress": False,
        "device": "cpu",
        "precision": "fp32",
        "log_every": 1,
    }
    values.update(overrides)
    return TrainConfig(**values)


def resolve(
    config: TrainConfig, *, n_images: int | None = None, world_size: int = 1
) -> ResolvedConfig:
    """The config a run of ``config`` would use (the weights are read, nothing trains)."""
    return resolve_config(config, load_start(config), n_images=n_images, world_size=world_size)


@dataclass
class Built:
    """A run's resolved config, starting point and networks, as ``train`` builds them."""

    config: ResolvedConfig
    start: StartingPoint
    student: MultiCropNetwork
    teacher: MultiCropNetwork


def build(config: TrainConfig, *, n_images: int | None = None) -> Built:
    """The networks a run of ``config`` starts with (nothing trains)."""
    start = load_start(config)
    resolved = resolve_config(config, start, n_images=n_images)
    return Built(resolved, start, *build_networks(resolved, start))


def last_checkpoint(run: Path | str) -> dict[str, Any]:
    """The run's ``checkpoints/last.pt``."""
    return load_checkpoint(Path(run) / "checkpoints" / "last.pt")


def step_records(run: Path | str) -> list[dict[str, Any]]:
    """The ``kind: step`` records of the run's ``metrics.jsonl``."""
    lines = (Path(run) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("kind") == "step"]


@pytest.fixture(scope="module", autouse=True)
def fast_training() -> Iterator[None]:
    """One torch thread (tiny ops only lose to thread hand-offs, badly so on a busy machine)
    and no ``curves.png`` (a second per run; :func:`finished_run` draws it for real)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_module, "plot_curves", lambda *args, **kwargs: None)
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 readable 32 px images (one per class folder), shared by every training test."""
    return make_image_folder(tmp_path_factory.mktemp("images"))


# --- one finished run, inspected by several tests ------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch run over 8 images plus one corrupt file (batches of 3: 3 steps per epoch).

    ``local_size`` is left to be resolved, and ``precision``/``device`` stay ``auto``.
    """
    root = tmp_path_factory.mktemp("finished")
    data = make_image_folder(root / "images")
    for extra in sorted(data.glob("*/0000.jpg"))[8:]:
        extra.unlink()
    (data / "checker" / "corrupt.jpg").write_bytes(b"this is not a JPEG file")
    config = tiny_config(
        data, root / "run", batch_size=3, local_size=None, precision="auto", device="auto"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_module, "plot_curves", plot_curves)
        return train(config)


def test_config_yaml_is_resolved_and_reloads(finished_run: Path) -> None:
    saved = yaml.safe_load((finished_run / "config.yaml").read_text())
    for key in (
        "lr",
        "warmup_epochs",
        "layer_decay",
        "head_warmup_epochs",
        "out_dim",
        "global_size",
        "local_size",
    ):
        assert saved[key] is not None, key
    # From scratch on small images (32 px crops): the measured lr, no layer decay, 10% lr
    # warm-up; the local crops were set.
    assert saved["lr"] == 4e-3 and saved["layer_decay"] == 1.0
    assert saved["warmup_epochs"] == pytest.approx(0.2) and saved["head_warmup_epochs"] == 0
    assert (saved["out_dim"], saved["global_size"], saved["local_size"]) == (64, 32, 16)
    assert saved["resume"] is False
    reloaded = TrainConfig.from_dict(saved)
    assert reloaded.global_scale == (0.4, 1.0) and isinstance(reloaded.local_scale, tuple)
    meta = last_checkpoint(finished_run)["dinokit"]["train_config"]
    assert yaml.safe_load(yaml.safe_dump(meta)) | {"resume": False} == saved


def test_metrics_checkpoint_and_curves(finished_run: Path) -> None:
    records = step_records(finished_run)
    assert [r["step"] for r in records] == list(range(1, 7))
    for record in records:
        for key in ("loss", "lr", "teacher_temp", "teacher_entropy", "kl"):
            assert math.isfinite(record[key]), (key, record)
        assert 0 <= record["teacher_entropy"] <= math.log(64) + 1e-4
    checkpoint = last_checkpoint(finished_run)
    assert (checkpoint["epoch"], checkpoint["step_in_epoch"], checkpoint["global_step"]) == (
        2,
        0,
        6,
    )
    assert (finished_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(finished_run.rglob("*.tmp")), "temporary files left behind"


def test_exports_reload_like_the_trained_networks(finished_run: Path) -> None:
    checkpoint = last_checkpoint(finished_run)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for branch in ("teacher", "student"):
        reference = dinokit.create_backbone("vit_test", weights="none").eval()
        reference.vit.load_state_dict(checkpoint[branch]["backbone"])
        with torch.no_grad():
            expected = reference(x)
            from_file = dinokit.load(finished_run / f"{branch}.safetensors")
            from_folder = dinokit.load(finished_run, branch=branch)
            torch.testing.assert_close(from_file(x), expected, atol=0, rtol=0)
            torch.testing.assert_close(from_folder(x), expected, atol=0, rtol=0)
    with torch.no_grad():
        teacher = dinokit.load(finished_run)(x)  # the teacher by default
        torch.testing.assert_close(teacher, dinokit.load(finished_run, branch="teacher")(x))
        assert not torch.equal(teacher, dinokit.load(finished_run, branch="student")(x))


def test_unreadable_image_is_listed_and_skipped(finished_run: Path) -> None:
    lines = (finished_run / "skipped.txt").read_text().splitlines()
    assert len(lines) == 1
    path, reason = lines[0].split("\t")
    assert Path(path).name == "corrupt.jpg" and reason


def test_existing_run_needs_resume(finished_run: Path) -> None:
    before = (finished_run / "checkpoints" / "last.pt").stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny_config(finished_run.parent / "images" / "train", finished_run))
    assert (finished_run / "checkpoints" / "last.pt").stat().st_mtime_ns == before


def test_resume_without_checkpoint(image_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(tiny_config(image_folder, tmp_path / "new", resume=True))
    assert not (tmp_path / "new").exists()


# --- a diverging run --------------------------------------------------------------------


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    image_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_forward = DINOLoss.forward
    calls = []

    def diverging(self: DINOLoss, *args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(1)
        loss = real_forward(self, *args, **kwargs)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(DINOLoss, "forward", diverging)
    run = tmp_path / "run"
    with pytest.raises(
        NonFiniteLossError, match=r"loss is nan at epoch 1, step 3: .*last checkpoint is kept"
    ):
        train(tiny_config(image_folder, run, save_every=2))
    assert len(calls) == 3
    checkpoint = last_checkpoint(run)
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (0, 2)
    for tensor in checkpoint["student"]["backbone"].values():
        assert torch.isfinite(tensor).all()
    assert [r["step"] for r in step_records(run)] == [1, 2]
    backbone = dinokit.load(run)  # no export was written: the checkpoint's teacher is read
    assert not (run / "teacher.safetensors").exists()
    for key, value in backbone.vit.state_dict().items():
        assert torch.equal(value, checkpoint["teacher"]["backbone"][key]), key


def test_python_api_train_function(image_folder: Path, tmp_path: Path) -> None:
    """``dinokit.train(folder, out=..., **options)`` is the CLI's run, from Python."""
    import dataclasses

    import dinokit

    options = dataclasses.asdict(tiny_config(image_folder, tmp_path / "unused", epochs=1))
    for key in ("data", "out"):
        options.pop(key)
    run = dinokit.train(image_folder, out=tmp_path / "api-run", **options)
    assert (run / "teacher.safetensors").is_file()
    assert dinokit.load(run).embed_dim == 64
    with pytest.raises(ValueError, match="unknown keys"):
        dinokit.train(image_folder, out=tmp_path / "bad", no_such_option=1)


def test_model_trained_below_native_size_records_its_size(
    image_folder: Path, tmp_path: Path
) -> None:
    """vit_test is native 64 px; trained on 32 px crops, its exports say 32 (and the kNN
    monitor evaluates at 32), so users embed at the size the model learned."""
    import dinokit

    run = train(tiny_config(image_folder, tmp_path / "small", epochs=1))
    assert dinokit.get_config("vit_test").preprocessing.size == 64
    assert dinokit.load(run).config.preprocessing.size == 32


def test_a_run_folder_as_model_continues_with_its_head(image_folder: Path, tmp_path: Path) -> None:
    """``--model runs/x`` starts from that run's teacher backbone *and* head (last.pt)."""
    import torch

    first = train(tiny_config(image_folder, tmp_path / "first", epochs=1))
    nets = build(tiny_config(image_folder, tmp_path / "second", model=str(first), weights=None))
    saved = last_checkpoint(first)["teacher"]
    assert nets.config.head_warmup_epochs == 0  # the head came with the weights
    for key, value in nets.student.head.state_dict().items():
        assert torch.equal(value, saved["head"][key]), key
    for key, value in nets.student.backbone.vit.state_dict().items():
        assert torch.equal(value, saved["backbone"][key]), key


def test_knn_records_hold_accuracy_and_label_free_scores(
    image_folder: Path, tmp_path: Path
) -> None:
    config = tiny_config(
        image_folder,
        tmp_path / "run",
        epochs=1,
        eval_train=str(image_folder),
        eval_val=str(image_folder),
    )
    train(config)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    knn = [r for r in map(json.loads, lines) if r.get("kind") == "knn"]
    assert [r["epoch"] for r in knn] == [0, 1]  # before training, then after each epoch
    for record in knn:
        assert 0.0 <= record["knn_top1"] <= 1.0
        assert 1.0 <= record["effective_rank"] <= 64  # at most the width of vit_test
        assert math.isfinite(record["uniformity"])


def test_sinkhorn_centering_trains(image_folder: Path, tmp_path: Path) -> None:
    run = train(tiny_config(image_folder, tmp_path / "run", epochs=1, centering="sinkhorn"))
    records = step_records(run)
    assert records and all(math.isfinite(r["loss"]) for r in records)
    assert yaml.safe_load((run / "config.yaml").read_text())["centering"] == "sinkhorn"


def test_koleo_is_logged_and_changes_training(image_folder: Path, tmp_path: Path) -> None:
    plain = train(tiny_config(image_folder, tmp_path / "plain", epochs=1, koleo=0.0))
    spread = train(tiny_config(image_folder, tmp_path / "koleo", epochs=1, koleo=0.1))
    records = step_records(spread)
    assert records and all(math.isfinite(r["koleo"]) for r in records)
    assert all("koleo" not in r for r in step_records(plain))
    # Same seed and data: the first step's DINO loss is equal, the weights then differ.
    assert records[0]["loss"] == pytest.approx(step_records(plain)[0]["loss"], rel=1e-6)
    a = last_checkpoint(plain)["student"]["backbone"]
    b = last_checkpoint(spread)["student"]["backbone"]
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert yaml.safe_load((spread / "config.yaml").read_text())["koleo"] == 0.1


def test_bf16_training_tracks_fp32(image_folder: Path, tmp_path: Path) -> None:
    """bf16 autocast on purpose (emulated on CPUs without it): the same seeded run's losses
    stay within 1% of fp32's, and the run records the precision it used."""
    runs = {p: train(tiny_config(image_folder, tmp_path / p, epochs=1, precision=p)) for p in PRECS}
    fp32, bf16 = (step_records(runs[p]) for p in PRECS)
    assert len(fp32) == len(bf16) > 1
    for a, b in zip(fp32, bf16, strict=True):
        assert math.isfinite(b["loss"]) and b["loss"] == pytest.approx(a["loss"], rel=1e-2)
    assert [r["loss"] for r in fp32] != [r["loss"] for r in bf16]  # bf16 did run
    assert yaml.safe_load((runs["bf16"] / "config.yaml").read_text())["precision"] == "bf16"


def test_negative_koleo_is_refused(image_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="koleo must be >= 0"):
        tiny_config(image_folder, tmp_path / "run", koleo=-0.1).validate()
