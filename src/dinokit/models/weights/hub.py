"""Finding weights offline first: explicit file, torch hub cache, HF cache, download.

Official weights are found by file name; a Hugging Face repository (``hf:facebook/dinov2-small``)
by its snapshot in the Hugging Face cache, then downloaded when the network is there.

The download path is real (it works for users with a network); without one, the failure
is immediate and says which file to put where.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import torch

from ..config import BackboneConfig

logger = logging.getLogger(__name__)

OFFLINE_ENV = "DINOKIT_OFFLINE"
HF_PREFIX = "hf:"
"""Prefix of a Hugging Face repository id given as a model or weights (``hf:org/name``)."""
HF_REPO_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
_CONNECT_TIMEOUT_S = 3.0
_READ_TIMEOUT_S = 60.0


class OfflineWeightsError(FileNotFoundError):
    """Official weights are not on disk and cannot be downloaded."""


def torch_hub_checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache (``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or the default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def search_dirs() -> list[Path]:
    """Folders searched for official weights, in order."""
    return [torch_hub_checkpoint_dir(), hf_cache_dir()]


def find_local_weights(config: BackboneConfig) -> Path | None:
    """The official weights of a backbone if a cache already holds them.

    Looks for ``<torch hub>/checkpoints/<official file>``, then for the timm-layout copy in
    the Hugging Face cache (``models--timm--<name>/snapshots/*/model.safetensors``).
    """
    source = config.weights
    if source is None:
        return None
    candidate = torch_hub_checkpoint_dir() / source.file_name
    if candidate.is_file():
        return candidate
    if source.hf_repo:
        repo_dir = hf_cache_dir() / ("models--" + source.hf_repo.replace("/", "--"))
        for name in ("model.safetensors", "pytorch_model.bin"):
            found = sorted(repo_dir.glob(f"snapshots/*/{name}"))
            if found:
                return found[-1]
    return None


def network_available(url: str) -> bool:
    """Whether the host of ``url`` answers within a few seconds (never hangs)."""
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0") or os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    if not host:
        return False
    try:
        with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def _offline_message(config: BackboneConfig) -> str:
    assert config.weights is not None
    folder = torch_hub_checkpoint_dir()
    if config.weights.obtain:
        return (
            f"official weights of {config.name} ({config.weights.licence}) are not on this "
            f"machine: put {config.weights.file_name} into {folder}/ ({config.weights.obtain}; "
            f"its address {config.weights.url} only answers through those signed links), "
            "or pass --weights FILE (--weights none trains from random weights)"
        )
    return (
        f"official weights of {config.name} are not on this machine and cannot be downloaded: "
        f"download {config.weights.file_name} from {config.weights.url} into {folder}/ "
        "(or pass --weights FILE; --weights none trains from random weights)"
    )


def download_file(url: str, destination: Path) -> Path:
    """Download ``url`` to ``destination`` atomically (temporary file, then rename)."""
    from tqdm import tqdm

    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=destination.parent, suffix=".part")
    tmp = Path(tmp_name)
    try:
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(url, timeout=_READ_TIMEOUT_S) as response,
        ):
            total = int(response.headers.get("Content-Length", 0)) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=destination.name) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
        tmp.replace(destination)
    finally:
        tmp.unlink(missing_ok=True)
    return destination


def resolve_official_weights(config: BackboneConfig) -> Path:
    """Local path of a backbone's official weights, downloading them when possible.

    Raises:
        ValueError: the backbone has no official weights.
        OfflineWeightsError: not cached and no network; the message names the file, its
            URL and the folder to put it in.
    """
    if config.weights is None:
        raise ValueError(f"{config.name} has no official weights; pass weights='none' or a file")
    local = find_local_weights(config)
    if local is not None:
        logger.info("using cached weights %s", local)
        return local
    if config.family == "timm":
        return _download_from_hf(config)
    if config.weights.obtain:  # behind a licence form: no plain URL to download
        raise OfflineWeightsError(_offline_message(config))
    if not network_available(config.weights.url):
        raise OfflineWeightsError(_offline_message(config))
    destination = torch_hub_checkpoint_dir() / config.weights.file_name
    logger.info("downloading %s to %s", config.weights.url, destination)
    try:
        return download_file(config.weights.url, destination)
    except OSError as exc:
        raise OfflineWeightsError(f"{_offline_message(config)} [download failed: {exc}]") from exc


def _download_from_hf(config: BackboneConfig) -> Path:
    assert config.weights is not None and config.weights.hf_repo
    if not network_available("https://huggingface.co"):
        raise OfflineWeightsError(
            f"weights of {config.name} are not in the Hugging Face cache {hf_cache_dir()} and "
            f"cannot be downloaded: fetch model.safetensors of {config.weights.hf_repo} there "
            "(huggingface-cli download), or pass --weights FILE"
        )
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(config.weights.hf_repo, "model.safetensors"))


def _hf_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot of a repository holding ``config.json`` and weights, if any.

    The revision ``refs/main`` points to comes first, then the most recent snapshot.
    """
    repo_dir = hf_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    snapshots = sorted(
        (p for p in repo_dir.glob("snapshots/*") if p.is_dir()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        main = repo_dir / "snapshots" / ref.read_text().strip()
        snapshots = [main, *[p for p in snapshots if p != main]]
    for snapshot in snapshots:
        has_weights = any(
            (snapshot / n).is_file() for n in ("model.safetensors", "pytorch_model.bin")
        )
        if (snapshot / "config.json").is_file() and has_weights:
            return snapshot
    return None


def resolve_hf_repo(spec: str) -> Path:
    """Local folder of a Hugging Face model repository, downloading it when possible.

    Args:
        spec: ``hf:org/name`` (or ``org/name``).

    Returns:
        The snapshot folder (``config.json`` and ``model.safetensors`` or ``pytorch_model.bin``).

    Raises:
        ValueError: not an ``org/name`` id.
        OfflineWeightsError: not cached and no network; the message says how to get it.
    """
    repo_id = spec[len(HF_PREFIX) :] if spec.startswith(HF_PREFIX) else spec
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"{spec}: expected a Hugging Face repository id, hf:<org>/<name>")
    local = _hf_snapshot(repo_id)
    if local is not None:
        logger.info("using cached %s from %s", repo_id, local)
        return local
    if not network_available("https://huggingface.co"):
        raise OfflineWeightsError(
            f"{repo_id} is not in the Hugging Face cache {hf_cache_dir()} and cannot be "
            f"downloaded: on a machine with a network run `huggingface-cli download {repo_id} "
            f"{' '.join(HF_REPO_FILES)}` and copy the cache, or pass the model folder instead"
        )
    from huggingface_hub import hf_hub_download, snapshot_download

    logger.info("downloading %s from the Hugging Face hub", repo_id)
    try:
        folder = Path(
            snapshot_download(repo_id, allow_patterns=list(HF_REPO_FILES), cache_dir=hf_cache_dir())
        )
        if not (folder / "model.safetensors").is_file():  # older repositories: a pickle only
            hf_hub_download(repo_id, "pytorch_model.bin", cache_dir=hf_cache_dir())
    except Exception as exc:  # the hub client raises its own HTTP and repository errors
        raise OfflineWeightsError(
            f"{repo_id}: download from the Hugging Face hub failed ({exc})"
        ) from None
    return folder
