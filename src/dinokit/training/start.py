"""What a run starts from: the architecture, the weights file, and what that file brings.

Fine-tuning starts from pretrained weights; a DINO full checkpoint (official or dinokit)
also brings its projection head and loss centre, so training continues where it stopped
instead of re-learning a random head on top of good features, and an official one the
recipe its run recorded (``args``), which the automatic values continue.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from ..dino.head import HeadShape, head_shape
from ..models import BackboneConfig, get_config
from ..models.factory import infer_config, run_folder_file
from ..models.weights import read_weights, resolve_official_weights
from ..models.weights.files import WeightsFile, is_hf_folder
from ..models.weights.hub import HF_PREFIX
from .config import TrainConfig
from .recipe import Recipe, recipe_from_args, recipe_from_run


@dataclass(frozen=True)
class StartingPoint:
    """The backbone to build and what the weights file brings.

    Attributes:
        backbone: The architecture.
        weights: The weights file, or None for random initial weights.
        head: The shape of the DINO head the file holds, if any.
        recipe: The values recorded with the weights (an official full checkpoint's args).
    """

    backbone: BackboneConfig
    weights: WeightsFile | None
    head: HeadShape | None
    recipe: Recipe

    @property
    def head_state(self) -> dict[str, Tensor]:
        """The file's DINO head state dict (empty without one)."""
        return self.weights.head if self.weights is not None else {}

    @property
    def center(self) -> Tensor | None:
        """The file's DINO loss centre ``(1, out_dim)``, if it holds one."""
        return self.weights.center if self.weights is not None else None

    @property
    def base_weights(self) -> str:
        """Where the initial weights came from, for the exports' provenance."""
        return str(self.weights.path) if self.weights is not None else "random init"


def load_start(config: TrainConfig) -> StartingPoint:
    """Read the weights ``config.model`` / ``config.weights`` name, with their head and recipe."""
    backbone, weights = _initial_weights(config)
    head_state = weights.head if weights is not None else {}
    return StartingPoint(
        backbone=backbone,
        weights=weights,
        head=head_shape(head_state) if head_state else None,
        recipe=_recorded_recipe(weights),
    )


def _initial_weights(config: TrainConfig) -> tuple[BackboneConfig, WeightsFile | None]:
    """Architecture and starting weights named by ``config.model`` / ``config.weights``.

    ``config.model`` may also be a previous run folder, a weights file, a transformers model
    folder or ``hf:<org>/<name>`` (the architecture is then read from it).
    """
    model_path = Path(config.model).expanduser()
    if config.model.startswith(HF_PREFIX):
        weights_file = read_weights(config.model)
        return infer_config(weights_file), weights_file
    if model_path.exists():
        if model_path.is_dir() and not is_hf_folder(model_path):
            model_path = run_folder_file(model_path, with_head=True)
        weights_file = read_weights(model_path)
        return infer_config(weights_file), weights_file
    backbone_config = get_config(config.model)
    if not config.fine_tuning:
        return backbone_config, None
    path = config.weights or (
        resolve_official_weights(backbone_config) if backbone_config.weights else None
    )
    return backbone_config, read_weights(path) if path else None


def _recorded_recipe(weights_file: WeightsFile | None) -> Recipe:
    """The training recipe recorded in an official DINO full checkpoint or a dinokit
    training checkpoint (else empty)."""
    if weights_file is None:
        return Recipe()
    if weights_file.layout == "dinokit-checkpoint":
        recorded = weights_file.metadata.get("train_config")
        world = weights_file.metadata.get("world_size")
        return recipe_from_run(
            recorded if isinstance(recorded, dict) else None,
            world_size=world if isinstance(world, int) else 1,
        )
    if weights_file.layout != "dino-full-checkpoint":
        return Recipe()
    args = weights_file.metadata.get("args")
    return recipe_from_args(
        args if isinstance(args, dict) else None, epoch=weights_file.metadata.get("epoch")
    )
