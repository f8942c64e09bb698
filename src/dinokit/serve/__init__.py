"""``dinokit serve``: a search service over an embeddings file, with a web page.

A JSON API (FastAPI on uvicorn) to search by an uploaded image, an indexed image or a vector,
list an image's neighbours and add images durably; its OpenAPI schema and a docs page; and a
web page to search by dropping an image and browse clusters and duplicate groups. Uploads that
arrive together are embedded in one forward pass (:mod:`.batcher`), and search runs on the
index ``dinokit search`` caches. FastAPI, uvicorn and python-multipart are an optional extra
(``pip install 'dinokit[serve]'``), imported only when a server is built.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .batcher import BatcherStats, MicroBatcher
from .config import TOKEN_ENV, ServeConfig

if TYPE_CHECKING:
    from .service import SearchService

logger = logging.getLogger(__name__)

__all__ = ["TOKEN_ENV", "BatcherStats", "MicroBatcher", "ServeConfig", "create_app", "serve"]


def require_web() -> None:
    """Check that the web stack is installed.

    Raises:
        RuntimeError: FastAPI, uvicorn or python-multipart is missing, with the install line.
    """
    import importlib.util

    wanted = {"fastapi": ("fastapi",), "uvicorn": ("uvicorn",),
              "python-multipart": ("python_multipart", "multipart")}  # fmt: skip
    missing = [
        package
        for package, modules in wanted.items()
        if not any(importlib.util.find_spec(module) for module in modules)
    ]
    if missing:
        raise RuntimeError(
            f"dinokit serve needs {', '.join(missing)}: pip install 'dinokit[serve]'"
        )


def create_app(config: ServeConfig | SearchService) -> Any:
    """The FastAPI application for a config (loading the collection and model) or a service.

    Returns:
        A ``fastapi.FastAPI``; ``app.state.service`` is its :class:`SearchService`.
    """
    require_web()
    from .app import build_app
    from .service import SearchService

    service = config if isinstance(config, SearchService) else SearchService(config)
    return build_app(service)


def serve(config: ServeConfig) -> None:
    """Load the collection and its model, then serve until interrupted (blocking)."""
    require_web()
    import uvicorn

    from ._memory import tune_allocator

    tune_allocator()  # before uvicorn's and the batcher's threads: memory stays flat under load
    if not config.loopback and not config.token:
        logger.warning(
            "serving on %s without a token: anyone who can reach this port can search and add "
            "images; pass --token or set %s",
            config.host,
            TOKEN_ENV,
        )
    app = create_app(config)
    service = app.state.service
    logger.info(
        "serving %d images of %s at http://%s:%d/ (API docs at /docs)",
        len(service.collection),
        config.embeddings,
        config.host,
        config.port,
    )
    try:
        uvicorn.run(app, host=config.host, port=config.port, log_level="warning", access_log=False)
    finally:
        service.close()
