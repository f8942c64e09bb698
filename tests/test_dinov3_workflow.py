"""Every command with a DINOv3 backbone: fine-tuning from an official-layout file, then embed,
search, duplicates, cluster, evaluate, attention and each export format.

The tiny ``dinov3_test`` architecture (RoPE, 4 registers, LayerScale, SwiGLU) stands in for
the hub models; its weights are written in facebookresearch/dinov3's key layout.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import dinokit
from dinokit.cli import main
from dinokit.models.registry import get_config
from dinokit.models.weights.files import read_weights
from dinokit.sample_data import make_sample_images
from tests.models.checkpoints import images, write_dinov3_pth

_ONNX_MISSING = [
    m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None
]
# fp32 everywhere: the embeddings are compared with the backbone's own forward.
FP32 = ["--precision", "fp32", "--workers", "0"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Official-layout weights, a labelled train/val folder and a 1-epoch fine-tuning run."""
    root = tmp_path_factory.mktemp("dinov3")
    official = root / "dinov3_test_pretrain.pth"
    write_dinov3_pth(official, get_config("dinov3_test"), seed=0, local_cls_norm=True)
    make_sample_images(root / "data", per_class=2, val_per_class=1, size=32)
    run = root / "run"
    argv = [
        "train", str(root / "data" / "train"), "--out", str(run), "--model", "dinov3_test",
        "--weights", str(official), "--epochs", "1", "--batch-size", "4", "--out-dim", "64",
        "--global-size", "32", "--local-size", "16", "--local-crops", "2", "--device", "cpu",
        "--no-progress", *FP32,
    ]  # fmt: skip
    assert main(argv) == 0
    return {"root": root, "official": official, "run": run, "data": root / "data"}


def test_train_fine_tunes_from_the_official_file(workspace: dict[str, Path]) -> None:
    run = workspace["run"]
    teacher = read_weights(run / "teacher.safetensors")
    assert teacher.layout == "dinokit-export"
    assert teacher.metadata["backbone"]["family"] == "dinov3"
    assert str(workspace["official"].resolve()) in json.dumps(teacher.metadata["provenance"])
    # The official periods (bfloat16 in the file) travel into the run's exports unchanged.
    official = torch.load(workspace["official"], weights_only=True)
    torch.testing.assert_close(
        teacher.backbone["rope.periods"], official["rope_embed.periods"].float(), atol=0, rtol=0
    )
    started = dinokit.load("dinov3_test", weights=workspace["official"])
    trained = dinokit.load(run)
    x = images(1, 32, 32)
    with torch.no_grad():
        assert not torch.equal(trained(x), started(x))  # the student's steps moved the teacher


def test_embed_search_duplicates_cluster(workspace: dict[str, Path], tmp_path: Path) -> None:
    emb = tmp_path / "emb.parquet"
    data = workspace["data"] / "train"
    assert (
        main(["embed", str(data), "--model", str(workspace["run"]), *FP32, "--out", str(emb)]) == 0
    )
    vectors = dinokit.Embeddings.load(emb)
    assert vectors.vectors.shape[1] == 64
    np.testing.assert_allclose(np.linalg.norm(vectors.vectors, axis=1), 1.0, atol=1e-5)
    query = sorted(data.rglob("*.jpg"))[0]
    assert main(["search", str(emb), "--query", str(query), "-k", "2", "--json"]) == 0
    assert main(["duplicates", str(emb), "--threshold", "0.99"]) == 0
    assert main(["cluster", str(emb), "-k", "2", "--out", str(tmp_path / "clusters")]) == 0
    assert (tmp_path / "clusters").is_dir()


def test_evaluate_and_attention(workspace: dict[str, Path], tmp_path: Path) -> None:
    data = workspace["data"]
    argv = ["evaluate", "--model", str(workspace["run"]), "--train", str(data / "train")]
    assert main([*argv, "--val", str(data / "val"), "--k", "3", *FP32, "--json"]) == 0
    image = sorted((data / "val").rglob("*.jpg"))[0]
    out = tmp_path / "attn"
    assert main(["attention", "--model", str(workspace["run"]), str(image), "--out", str(out)]) == 0
    maps = np.load(out / f"{image.stem}.npy")
    assert maps.shape[0] == 4  # one map per head (which columns: tests/models/test_dinov3.py)
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), 1.0, atol=1e-4)


def test_exports_dinokit_and_timm(workspace: dict[str, Path], tmp_path: Path) -> None:
    run = workspace["run"]
    source = dinokit.load(run)
    x = images(2, 48, 64)
    for fmt, name in (("dinokit", "m.safetensors"), ("timm", "m.pth")):
        out = tmp_path / name
        assert main(["export", str(run), "--format", fmt, "--out", str(out)]) == 0
        again = dinokit.load("dinov3_test", weights=out) if fmt == "timm" else dinokit.load(out)
        if fmt == "timm":  # timm computes the RoPE periods itself (the formula)
            with torch.no_grad():
                source.vit.rope.periods.copy_(again.vit.rope.periods)
        with torch.no_grad():
            torch.testing.assert_close(again(x), source(x), atol=0, rtol=0)


def test_transformers_export_is_refused_in_one_line(
    workspace: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "hf"
    assert (
        main(["export", str(workspace["run"]), "--format", "transformers", "--out", str(out)]) == 2
    )
    assert "DINOv3ViTModel" in caplog.text
    assert not out.exists()


@pytest.mark.skipif(bool(_ONNX_MISSING), reason=f"needs {', '.join(_ONNX_MISSING)}")
def test_onnx_export_matches_pytorch(workspace: dict[str, Path], tmp_path: Path) -> None:
    import onnxruntime

    out = tmp_path / "m.onnx"
    assert main(["export", str(workspace["run"]), "--format", "onnx", "--out", str(out)]) == 0
    source = dinokit.load(workspace["run"])
    size = source.config.preprocessing.size  # the run's 32 px: the export's input size
    x = images(3, size, size)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    cls, patches = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        features = source.forward_features(x)
    # float32: onnxruntime against PyTorch.
    np.testing.assert_allclose(cls, features.cls.numpy(), atol=1e-4)
    np.testing.assert_allclose(patches, features.patch_tokens.numpy(), atol=1e-4)
