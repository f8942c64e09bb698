"""The Embedder: vectors of image files, features, and rebuilding from metadata."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch

import dinokit
from dinokit.data import open_image
from dinokit.embed import Embedder, RecordedModelError
from tests.data._helpers import write_jpeg
from tests.embed._helpers import flat_folder
from tests.models.checkpoints import random_backbone


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    """fp32: its vectors are compared with the backbone's own fp32 forward to 1e-5 (the bf16
    path has its own test, tests/embed/test_pipeline.py::test_bf16_vectors_match_fp32)."""
    return Embedder("vit_test", weights="none", batch_size=3, precision="fp32", workers=0)


def test_embed_files_gives_normalised_vectors_in_input_order(
    embedder: Embedder, tmp_path: Path
) -> None:
    paths = flat_folder(tmp_path, 5)
    vectors, failed = embedder.embed_files(paths)
    assert vectors.shape == (5, 64) and vectors.dtype == np.float32
    assert failed == []
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    single, _ = embedder.embed_files([paths[3]])
    np.testing.assert_allclose(single[0], vectors[3], atol=1e-5)


def test_vectors_are_the_backbone_cls_of_the_preprocessed_image(
    embedder: Embedder, tmp_path: Path
) -> None:
    path = write_jpeg(tmp_path / "x.jpg", 50, 40)
    vectors, _ = embedder.embed_files([path])
    x = embedder.transform(open_image(path, draft_size=embedder.transform.draft_size))
    with torch.inference_mode():
        cls = embedder.backbone(x[None])
    expected = torch.nn.functional.normalize(cls, dim=-1)[0].numpy()
    np.testing.assert_allclose(vectors[0], expected, atol=1e-5)


def test_unreadable_files_are_reported_with_their_position(
    embedder: Embedder, tmp_path: Path
) -> None:
    good = flat_folder(tmp_path, 2)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    vectors, failed = embedder.embed_files([good[0], empty, good[1]])
    assert vectors.shape == (2, 64)
    assert [(f.index, Path(f.path).name) for f in failed] == [(1, "empty.jpg")]
    assert "empty" in failed[0].reason


@pytest.mark.parametrize(
    ("feature", "dim"), [("cls", 64), ("mean", 64), ("cls+mean", 128), ("last4", 256)]
)
def test_feature_widths(feature: str, dim: int, tmp_path: Path) -> None:
    emb = Embedder("vit_test", weights="none", feature=feature, normalize=False)
    vectors, _ = emb.embed_files(flat_folder(tmp_path, 2))
    assert emb.dim == dim and vectors.shape == (2, dim)
    assert not np.allclose(np.linalg.norm(vectors, axis=1), 1.0)


def test_native_mode_batches_images_of_different_shapes(tmp_path: Path) -> None:
    wide = write_jpeg(tmp_path / "wide.jpg", 200, 50)
    tall = write_jpeg(tmp_path / "tall.jpg", 40, 90)
    emb = Embedder("vit_test", weights="none", preprocess="native", patch_tokens=True)
    batch = next(emb.iter_batches([wide, tall, wide]))
    assert batch.vectors.shape == (3, 64)
    assert batch.indices.tolist() == [0, 1, 2]  # the shape groups put back in input order
    assert batch.grids is not None and batch.patch_tokens is not None
    by_index = dict(zip(batch.indices.tolist(), batch.grids, strict=True))
    assert by_index[0] == by_index[2] != by_index[1]
    for tokens, (h, w) in zip(batch.patch_tokens, batch.grids, strict=True):
        assert tokens.shape == (h * w, 64)


def test_size_must_fit_the_patch_size() -> None:
    with pytest.raises(ValueError, match=r"multiple of the patch size 8.*use 64 or 72"):
        Embedder("vit_test", weights="none", size=70)


def test_from_metadata_rebuilds_the_same_embedder(embedder: Embedder, tmp_path: Path) -> None:
    paths = flat_folder(tmp_path, 3)
    meta = embedder.metadata()
    assert meta["model"]["model"] == "vit_test" and meta["model"]["weights"] == "none"
    assert meta["preprocess"] == "center-crop" and meta["size"] == 64 and meta["dim"] == 64
    again = Embedder.from_metadata(meta, precision="fp32")
    assert again.fingerprint == embedder.fingerprint
    np.testing.assert_allclose(again.embed_files(paths)[0], embedder.embed_files(paths)[0])


def test_from_metadata_of_a_model_file(tmp_path: Path) -> None:
    path = dinokit.save_backbone(random_backbone("vit_test", seed=4), tmp_path / "m.safetensors")
    emb = Embedder(path, feature="last4", preprocess="letterbox", size=48, precision="fp32")
    meta = emb.metadata()
    assert meta["model"]["model"] == str(path.absolute())
    again = Embedder.from_metadata(meta, precision="fp32")
    assert (again.feature, again.transform.mode, again.transform.size) == ("last4", "letterbox", 48)
    images = flat_folder(tmp_path / "img", 2)
    np.testing.assert_allclose(again.embed_files(images)[0], emb.embed_files(images)[0])


def test_from_metadata_when_the_model_is_gone_or_changed(tmp_path: Path) -> None:
    path = dinokit.save_backbone(random_backbone("vit_test", seed=4), tmp_path / "m.safetensors")
    meta = Embedder(path).metadata()
    dinokit.save_backbone(random_backbone("vit_test", seed=5), path)
    with pytest.raises(RecordedModelError, match="has changed since"):
        Embedder.from_metadata(meta)
    path.unlink()
    with pytest.raises(RecordedModelError, match="cannot load the model") as info:
        Embedder.from_metadata(meta)
    assert "\n" not in str(info.value)


def test_an_in_memory_model_is_not_rebuildable(vit_test: dinokit.Backbone) -> None:
    meta = Embedder(vit_test).metadata()
    assert meta["model"]["model"] is None
    with pytest.raises(RecordedModelError, match="given in memory"):
        Embedder.from_metadata(meta)


def test_metadata_of_other_files_is_refused() -> None:
    with pytest.raises(ValueError, match="not made by dinokit embed"):
        Embedder.from_metadata({"dim": 3})


# The one batched extractor also serves training's kNN monitor: a model that is training,
# the run's own autocast, and no draw from the global RNG between training steps.


def test_a_training_model_is_embedded_in_eval_mode_and_left_training(tmp_path: Path) -> None:
    """fp32; stochastic depth 0.5 makes any forward pass in training mode differ."""
    torch.manual_seed(0)
    model = dinokit.create_backbone("vit_test", weights="none", drop_path_rate=0.5).train()
    paths = flat_folder(tmp_path, 3)
    emb = Embedder(model, precision="fp32", workers=0)
    first, second = emb.embed_files(paths)[0], emb.embed_files(paths)[0]
    assert model.training
    np.testing.assert_array_equal(first, second)
    with torch.inference_mode():
        x = torch.stack(
            [emb.transform(open_image(p, draft_size=emb.transform.draft_size)) for p in paths]
        )
        cls = model.eval()(x)
    np.testing.assert_allclose(first, torch.nn.functional.normalize(cls, dim=-1), atol=1e-5)


def test_the_global_rng_is_not_drawn_from(embedder: Embedder, tmp_path: Path) -> None:
    paths = flat_folder(tmp_path, 2)
    state = torch.get_rng_state()
    embedder.embed_files(paths)
    assert torch.equal(torch.get_rng_state(), state)
    generator = torch.Generator().manual_seed(0)
    own = Embedder(embedder.backbone, precision="fp32", workers=0, generator=generator)
    before = generator.get_state()
    own.embed_files(paths)
    assert not torch.equal(generator.get_state(), before)  # the loader's seed came from it


def test_a_given_autocast_context_is_used(vit_test: dinokit.Backbone, tmp_path: Path) -> None:
    entered: list[bool] = []

    class Recording(contextlib.nullcontext[None]):
        def __enter__(self) -> None:
            entered.append(True)

    emb = Embedder(vit_test, autocast=Recording(), workers=0, batch_size=2)
    emb.embed_files(flat_folder(tmp_path, 3))
    assert len(entered) == 2  # one forward pass per batch


def test_embed_all_keeps_input_order_and_positions(embedder: Embedder, tmp_path: Path) -> None:
    good = flat_folder(tmp_path, 4)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    everything = embedder.embed_all([good[0], empty, *good[1:]])
    assert everything.indices.tolist() == [0, 2, 3, 4]
    assert [f.index for f in everything.failed] == [1]
    alone = [embedder.embed_files([p])[0][0] for p in good]
    np.testing.assert_allclose(everything.vectors, np.stack(alone), atol=1e-5)
