"""The HTTP face of :class:`~dinokit.serve.service.SearchService`: a JSON API (FastAPI), its
OpenAPI schema and docs page, and the web page.

Every refusal is a 4xx with a one-line ``{"detail": ...}``: 400 for an upload that is not a
usable image (empty, truncated, not an image, a decompression bomb), 401 without the bearer
token when one is set, 404 for an unknown image id, path or cluster, 411/413 for an upload
without a length or over the limit (refused before its body is read), 415 for a wrong content
type, 422 for malformed parameters (``k`` out of range...); 503 while uploads cannot be
embedded (the recorded model is missing).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .._version import __version__
from ..data.io import ImageReadError
from .collection import UnknownImageError
from .routes import ROUTERS
from .service import ModelUnavailableError, SearchService

# ============ guards ============


class UploadLimits:
    """ASGI middleware refusing an upload by its headers, before its body is read.

    Args:
        app: The wrapped application.
        limits: ``{(method, path): largest body in bytes}``; other requests pass untouched.
    """

    def __init__(self, app: ASGIApp, limits: dict[tuple[str, str], int]) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limits.get((scope.get("method", ""), scope.get("path", "")))
        if scope["type"] != "http" or limit is None:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        kind = headers.get("content-type", "")
        length = headers.get("content-length")
        problem: tuple[int, str] | None = None
        if not kind.startswith("multipart/form-data"):
            problem = (415, f"send the image as multipart/form-data, not {kind or 'nothing'}")
        elif length is None or not length.isdigit():
            problem = (411, "the upload needs a Content-Length header")
        elif int(length) > limit:
            problem = (413, f"upload of {int(length)} bytes is over the limit of {limit} bytes")
        if problem is None:
            await self.app(scope, receive, send)
            return
        response = JSONResponse({"detail": problem[1]}, status_code=problem[0])
        await response(scope, receive, send)


def _one_line(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
    return f"{where or 'request'}: {first.get('msg', 'invalid')}"


def _error(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handler(_: Request, exc: Exception) -> JSONResponse:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        return JSONResponse({"detail": " ".join(str(text).split())}, status_code=status)

    return handler


# ============ the application ============


def build_app(service: SearchService) -> FastAPI:
    """The FastAPI application serving ``service`` (see the module docstring for errors).

    ``app.state.service`` is ``service``: the routes (:mod:`.routes`) reach it from there.
    """
    app = FastAPI(
        title="dinokit",
        version=__version__,
        summary="Search a collection of images by image, id, path or vector.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    upload_limit = service.config.max_upload_bytes + (64 << 10)
    app.add_middleware(
        UploadLimits,
        limits={
            ("POST", "/api/search/upload"): upload_limit,
            ("POST", "/api/images"): upload_limit * service.config.max_add,
        },
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ImageReadError, _image_error)
    app.add_exception_handler(UnknownImageError, _error(404))
    app.add_exception_handler(FileNotFoundError, _error(404))
    app.add_exception_handler(PermissionError, _error(403))
    app.add_exception_handler(ModelUnavailableError, _error(503))
    for router in ROUTERS:
        app.include_router(router)
    return app


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": _one_line(exc)}, status_code=422)


async def _image_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ImageReadError)
    return JSONResponse({"detail": f"{exc.path}: {exc.reason}"}, status_code=400)
