"""Reading image collections robustly, and evaluation preprocessing.

``list_images`` finds the images of folders / list files, ``open_image`` decodes one file
to an upright RGB image (or raises ``ImageReadError``), ``EvalTransform`` turns it into a
normalised tensor, and ``ImageDataset`` + ``collate_skip_failed`` feed a ``DataLoader``
that reports unreadable files instead of crashing.
"""

from dinokit.data.dataset import Batch, Failed, ImageDataset, Sample, collate_skip_failed
from dinokit.data.io import DecodeSize, ImageReadError, apply_draft, open_image, open_image_bytes
from dinokit.data.modes import to_rgb
from dinokit.data.preprocess import MODES, EvalTransform, collate_images
from dinokit.data.sources import (
    IMAGE_EXTENSIONS,
    ImageList,
    ImageRecord,
    SkippedImage,
    is_image_file,
    list_images,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "MODES",
    "Batch",
    "DecodeSize",
    "EvalTransform",
    "Failed",
    "ImageDataset",
    "ImageList",
    "ImageReadError",
    "ImageRecord",
    "Sample",
    "SkippedImage",
    "apply_draft",
    "collate_images",
    "collate_skip_failed",
    "is_image_file",
    "list_images",
    "open_image",
    "open_image_bytes",
    "to_rgb",
]
