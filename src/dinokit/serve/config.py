"""The settings of ``dinokit serve``, with their defaults written once."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from .batcher import DEFAULT_MAX_BATCH, DEFAULT_MAX_WAIT_S

TOKEN_ENV = "DINOKIT_SERVE_TOKEN"
"""Environment variable holding the bearer token when ``--token`` is not given."""


@dataclass
class ServeConfig:
    """Everything ``dinokit serve`` needs.

    Attributes:
        embeddings: The embeddings file to serve (``dinokit embed`` output).
        clusters: A ``dinokit cluster`` output folder (or its ``assignments.csv``) to browse.
        duplicates: A ``dinokit duplicates`` groups CSV to browse.
        host: Address to bind; loopback unless told otherwise.
        port: TCP port.
        token: Bearer token every API call must carry (``None``: no authentication).
        max_upload_mb: Largest uploaded image file, in MiB.
        max_k: Largest number of results a search may ask for.
        max_add: Most images one add request may carry.
        max_batch: Images per forward pass at most (concurrent uploads are batched).
        max_wait_ms: How long the first upload of a batch waits for others.
        index: Index kind, as ``dinokit search --index``.
        device: Where the model runs (``auto``, ``cpu``, ``cuda``...).
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16``.
    """

    embeddings: Path
    clusters: Path | None = None
    duplicates: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    max_upload_mb: float = 20.0
    max_k: int = 100
    max_add: int = 64
    max_batch: int = DEFAULT_MAX_BATCH
    max_wait_ms: float = DEFAULT_MAX_WAIT_S * 1000
    index: str = "auto"
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        self.embeddings = Path(self.embeddings)
        self.clusters = None if self.clusters is None else Path(self.clusters)
        self.duplicates = None if self.duplicates is None else Path(self.duplicates)
        if self.token is None:
            self.token = os.environ.get(TOKEN_ENV) or None
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.max_upload_mb <= 0 or self.max_k < 1 or self.max_add < 1:
            raise ValueError("max_upload_mb, max_k and max_add must be positive")

    @property
    def max_upload_bytes(self) -> int:
        """Largest uploaded image file, in bytes."""
        return int(self.max_upload_mb * (1 << 20))

    @property
    def loopback(self) -> bool:
        """Whether :attr:`host` is reachable only from this machine."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
