"""The Python API's jobs that span several packages: training runs and the side-by-side
evaluation of models (each embeds, then scores). The CLI calls these; ``dinokit`` re-exports
them."""

from ._evaluate import EvaluationRow, evaluate
from ._train import train

__all__ = ["EvaluationRow", "evaluate", "train"]
