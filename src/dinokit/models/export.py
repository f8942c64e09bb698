"""dinokit's own model file: one ``.safetensors`` per backbone, self-describing.

The JSON header entry ``dinokit`` holds the format version, the backbone config (with its
preprocessing), the branch and the provenance, so :func:`dinokit.load` rebuilds the model
offline with no user code.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .backbone import Backbone
from .weights.files import DINOKIT_METADATA_KEY

FORMAT_VERSION = 1


def backbone_metadata(
    backbone: Backbone, *, branch: str | None = None, provenance: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The self-description stored with a backbone's weights."""
    return {
        "format_version": FORMAT_VERSION,
        "backbone": backbone.config.to_dict(),
        "preprocessing": backbone.config.preprocessing.to_dict(),
        "branch": branch,
        "provenance": {
            "source": backbone.source,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **(provenance or {}),
        },
    }


def save_backbone(
    backbone: Backbone,
    path: str | Path,
    *,
    branch: str | None = None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write a backbone as a dinokit ``.safetensors`` file, atomically.

    Args:
        backbone: The model; only its ViT weights are stored (official DINO/timm keys).
        path: Destination ``.safetensors`` file.
        branch: ``teacher`` or ``student`` when it comes from a training run.
        provenance: Extra facts (base weights, run folder, epochs...).
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in backbone.vit.state_dict().items()}
    header = {
        DINOKIT_METADATA_KEY: json.dumps(
            backbone_metadata(backbone, branch=branch, provenance=provenance)
        )
    }
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp_name, metadata=header)
        os.chmod(tmp_name, 0o644)  # mkstemp creates files readable by their owner only
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return path
