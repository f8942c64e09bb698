"""label_scores: class names to indices, then kNN and the linear probe (float32 on the CPU)."""

from __future__ import annotations

import numpy as np
import pytest

from dinokit.evaluation import label_scores


def test_class_names_and_a_class_missing_from_train() -> None:
    # Two well-separated classes on the axes; the "bird" query can never be right.
    train = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    val = np.array([[1, 0.05], [0.05, 1], [0.7, 0.7]], dtype=np.float32)
    knn, probe = label_scores(
        train, ["cat", "cat", "dog", "dog"], val, ["cat", "dog", "bird"], k=(1, 2), linear=True
    )
    assert knn == {1: pytest.approx(2 / 3), 2: pytest.approx(2 / 3)}
    assert probe == pytest.approx(2 / 3)


def test_without_the_probe_there_is_no_linear_score() -> None:
    vectors = np.eye(3, dtype=np.float32)
    knn, probe = label_scores(vectors, ["a", "b", "c"], vectors[::-1], ["c", "b", "a"], k=(1,))
    assert knn == {1: 1.0} and probe is None
