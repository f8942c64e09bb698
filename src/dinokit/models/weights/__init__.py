"""Reading weight files of every known layout, offline first."""

from .convert import clean_state_dict, load_backbone_state, split_backbone_head, to_timm_layout
from .files import UnsafeCheckpointError, WeightsFile, read_weights, safe_torch_load
from .hub import OfflineWeightsError, find_local_weights, resolve_official_weights

__all__ = [
    "OfflineWeightsError",
    "UnsafeCheckpointError",
    "WeightsFile",
    "clean_state_dict",
    "find_local_weights",
    "load_backbone_state",
    "read_weights",
    "resolve_official_weights",
    "safe_torch_load",
    "split_backbone_head",
    "to_timm_layout",
]
