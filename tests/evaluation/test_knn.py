"""Tests for dinokit.evaluation.knn (reference: facebookresearch/dino eval_knn.py
knn_classifier)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dinokit.evaluation import knn_accuracy, knn_predict

SQRT3 = math.sqrt(3.0)


def _toy() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    # Four training points on the axes (lengths differ: features are normalised inside).
    train = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -5.0]])
    train_labels = torch.tensor([0, 1, 0, 1])
    # q1 at 30 degrees, q2 at 240 degrees.
    test = torch.tensor([[SQRT3, 1.0], [-1.0, -SQRT3]])
    test_labels = torch.tensor([0, 1])
    return train, train_labels, test, test_labels


def test_hand_computed_votes() -> None:
    # Cosines, T = 2 so that exp(s / T) stays readable:
    #   q1: x0 +0.866 (c0, w=e^0.433=1.542), x1 +0.5 (c1, 1.284), x3 -0.5 (c1, 0.779),
    #       x2 -0.866 (c0, 0.649)
    #   k=1: c0 -> 0.  k=2: c0 1.542 > c1 1.284 -> 0.  k=3: c1 1.284+0.779=2.063 > 1.542 -> 1.
    #   k=4: c0 1.542+0.649=2.191 > 2.063 -> 0.
    #   q2: x3 +0.866 (c1, 1.542), x2 +0.5 (c0, 1.284), x0 -0.5 (c0, 0.779),
    #       x1 -0.866 (c1, 0.649): k=1 -> 1, k=2 -> 1, k=3: c0 2.063 > 1.542 -> 0, k=4 -> 1.
    train, train_labels, test, test_labels = _toy()
    expected = {1: [0, 1], 2: [0, 1], 3: [1, 0], 4: [0, 1]}
    for k, labels in expected.items():
        pred = knn_predict(train, train_labels, test, k=k, temperature=2.0)
        assert pred.tolist() == labels, k
    acc = knn_accuracy(train, train_labels, test, test_labels, k=[1, 2, 3, 4], temperature=2.0)
    assert acc == {1: 1.0, 2: 1.0, 3: 0.0, 4: 1.0}
    # With the reference T = 0.07 the nearest neighbour dominates the vote: k=3 is right.
    assert knn_accuracy(train, train_labels, test, test_labels, k=3) == {3: 1.0}


def test_k_larger_than_train_set_is_clipped() -> None:
    train, train_labels, test, test_labels = _toy()
    acc = knn_accuracy(train, train_labels, test, test_labels, k=(4, 10, 200), temperature=2.0)
    assert acc == {4: 1.0, 10: 1.0, 200: 1.0}


def _numpy_knn(
    train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, k: int, t: float, c: int
) -> np.ndarray:
    """Brute force, float64, one test point at a time."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    preds = []
    for q in test:
        sims = train @ q
        order = np.argsort(-sims, kind="stable")[: min(k, len(train))]
        votes = np.zeros(c)
        np.add.at(votes, train_labels[order], np.exp(sims[order] / t))
        preds.append(int(np.argmax(votes)))
    return np.array(preds)


def test_matches_brute_force_numpy() -> None:
    rng = np.random.default_rng(0)
    n, m, d, c = 60, 37, 8, 5
    centers = rng.normal(size=(c, d))
    train_labels = rng.integers(0, c, n)
    test_labels = rng.integers(0, c, m)
    train = centers[train_labels] + rng.normal(size=(n, d))
    test = centers[test_labels] + rng.normal(size=(m, d))
    ks = [1, 5, 20, 60, 100]
    acc = knn_accuracy(
        torch.from_numpy(train).float(),
        torch.from_numpy(train_labels),
        torch.from_numpy(test).float(),
        torch.from_numpy(test_labels),
        k=ks,
        temperature=0.5,
    )
    for k in ks:
        expected = _numpy_knn(train, train_labels, test, k, 0.5, c)
        pred = knn_predict(
            torch.from_numpy(train).float(),
            torch.from_numpy(train_labels),
            torch.from_numpy(test).float(),
            k=k,
            temperature=0.5,
        )
        np.testing.assert_array_equal(pred.numpy(), expected)
        assert acc[k] == pytest.approx(float(np.mean(expected == test_labels)))


@pytest.mark.parametrize("chunk_size", [1, 7, 36, 1000])
def test_chunking_does_not_change_results(chunk_size: int) -> None:
    g = torch.Generator().manual_seed(1)
    train, test = torch.randn(80, 16, generator=g), torch.randn(36, 16, generator=g)
    train_labels = torch.randint(0, 4, (80,), generator=g)
    test_labels = torch.randint(0, 4, (36,), generator=g)
    ks = (3, 10, 20)
    full = knn_accuracy(train, train_labels, test, test_labels, k=ks)
    assert knn_accuracy(train, train_labels, test, test_labels, k=ks, chunk_size=chunk_size) == full
    assert torch.equal(
        knn_predict(train, train_labels, test, k=10, chunk_size=chunk_size),
        knn_predict(train, train_labels, test, k=10),
    )


def test_dtypes_and_num_classes() -> None:
    train, train_labels, test, _ = _toy()
    pred = knn_predict(train.half(), train_labels.int(), test.bfloat16(), k=1, num_classes=7)
    assert pred.dtype == torch.long and pred.tolist() == [0, 1]
    # A test label never seen in training is simply wrong.
    acc = knn_accuracy(train, train_labels, test, torch.tensor([0, 6]), k=1, num_classes=7)
    assert acc == {1: 0.5}


def test_bad_inputs() -> None:
    train, train_labels, test, test_labels = _toy()
    with pytest.raises(ValueError, match="positive"):
        knn_predict(train, train_labels, test, k=0)
    with pytest.raises(ValueError, match="width"):
        knn_predict(train, train_labels, test[:, :1], k=1)
    with pytest.raises(ValueError, match="num_classes"):
        knn_predict(train, train_labels, test, num_classes=1)
    with pytest.raises(ValueError, match="integers"):
        knn_predict(train, train_labels.float(), test)
    with pytest.raises(ValueError, match="test_labels"):
        knn_accuracy(train, train_labels, test, test_labels[:1])
    with pytest.raises(ValueError, match="temperature"):
        knn_predict(train, train_labels, test, temperature=0.0)
