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

import asyncio
import hmac
import mimetypes
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from .._version import __version__
from ..data.io import ImageReadError
from ._docs import docs_page
from .collection import UnknownImageError
from .service import ModelUnavailableError, SearchService, Upload

TOKEN_COOKIE = "dinokit_token"
"""Cookie the web page stores the token in (images cannot send an Authorization header)."""

PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' blob: data:; "
    "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""Content-Security-Policy of the page: it loads nothing from anywhere but this server."""

_IMAGE_TYPES = ("image/", "application/octet-stream")


# ============ response shapes (they make the OpenAPI schema) ============


class Hit(BaseModel):
    rank: int = Field(description="1 for the most similar")
    score: float = Field(description="cosine similarity to the query")
    id: int = Field(description="image id")
    path: str = Field(description="stored path, relative to its input root")
    label: str | None = None


class SearchResponse(BaseModel):
    query: str = Field(description="what was searched for")
    results: list[Hit]


class VectorSearch(BaseModel):
    """Exactly one of ``id``, ``path`` or ``vector``."""

    id: int | None = Field(None, description="an indexed image id (left out of its results)")
    path: str | None = Field(None, description="an indexed image's stored or file path")
    vector: list[float] | None = Field(None, description="a D-dimensional query vector")
    k: int = Field(10, description="results wanted")


class ImageInfo(BaseModel):
    id: int
    path: str
    label: str | None = None
    added: bool = Field(description="added while serving")


class ImageList(BaseModel):
    total: int
    offset: int
    images: list[ImageInfo]


class Added(BaseModel):
    images: list[ImageInfo]


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
    """The FastAPI application serving ``service`` (see the module docstring for errors)."""
    config = service.config
    app = FastAPI(
        title="dinokit",
        version=__version__,
        summary="Search a collection of images by image, id, path or vector.",
        docs_url=None,
        redoc_url=None,
    )
    upload_limit = config.max_upload_bytes + (64 << 10)
    app.add_middleware(
        UploadLimits,
        limits={
            ("POST", "/api/search/upload"): upload_limit,
            ("POST", "/api/images"): upload_limit * config.max_add,
        },
    )

    async def validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"detail": _one_line(exc)}, status_code=422)

    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(ImageReadError, _image_error)
    app.add_exception_handler(UnknownImageError, _error(404))
    app.add_exception_handler(FileNotFoundError, _error(404))
    app.add_exception_handler(PermissionError, _error(403))
    app.add_exception_handler(ModelUnavailableError, _error(503))

    async def authorised(request: Request) -> None:
        # async: a plain function would cost every API call a hop to the thread pool.
        if not config.token:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        given = given or request.cookies.get(TOKEN_COOKIE, "")
        if not hmac.compare_digest(given.encode(), config.token.encode()):
            raise HTTPException(
                401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    def check_k(k: int) -> int:
        if not 1 <= k <= config.max_k:
            raise HTTPException(422, f"k: must be between 1 and {config.max_k}, got {k}")
        return k

    async def read_upload(file: UploadFile) -> Upload:
        name = file.filename or "upload"
        kind = (file.content_type or "").lower()
        if not kind.startswith(_IMAGE_TYPES):
            raise HTTPException(415, f"{name}: content type {kind or 'none'} is not an image")
        if file.size is not None and file.size > config.max_upload_bytes:
            raise HTTPException(
                413, f"{name}: {file.size} bytes is over the limit of {config.max_upload_bytes}"
            )
        return Upload(name=name, data=await file.read())

    api = [Depends(authorised)]

    # ============ the page and the docs ============

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        text = _asset("index.html").replace("$version", __version__)
        return HTMLResponse(text, headers=_page_headers())

    @app.get("/page.js", include_in_schema=False)
    def page_script() -> Response:
        return Response(_asset("page.js"), media_type="text/javascript", headers=_page_headers())

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(docs_page(app.openapi()), headers=_page_headers())

    # ============ the API ============

    @app.get("/api/health", tags=["service"])
    def health() -> dict[str, Any]:
        """Liveness and counts (no token needed)."""
        return service.health()

    @app.get("/api/model", tags=["service"], dependencies=api)
    def model() -> dict[str, Any]:
        """The model record and embedding recipe of the collection."""
        return service.model_info()

    @app.post("/api/search/upload", tags=["search"], dependencies=api)
    async def search_upload(
        file: Annotated[UploadFile, File(description="the query image")],
        k: int = Query(10, description="results wanted"),
    ) -> SearchResponse:
        """The images most similar to an uploaded one, embedded with the collection's model
        (concurrent uploads share one forward pass)."""
        check_k(k)
        upload = await read_upload(file)
        image = await run_in_threadpool(service.preprocess, upload)
        vector = await asyncio.wrap_future(service.submit(image))
        hits = await run_in_threadpool(service.search, vector.numpy()[None], k)
        return SearchResponse(query=upload.name, results=[Hit(**h) for h in hits[0]])

    @app.post("/api/search", tags=["search"], dependencies=api)
    def search(body: VectorSearch) -> SearchResponse:
        """The images most similar to an indexed image (by id or path) or to a vector."""
        check_k(body.k)
        given = [v is not None for v in (body.id, body.path, body.vector)]
        if sum(given) != 1:
            raise HTTPException(422, "give exactly one of id, path or vector")
        skip: int | None = None
        if body.vector is not None:
            query = np.asarray(body.vector, dtype=np.float32)
            if query.shape != (service.collection.dim,):
                raise HTTPException(
                    422, f"vector: needs {service.collection.dim} numbers, got {query.size}"
                )
            if not np.isfinite(query).all() or not query.any():
                raise HTTPException(422, "vector: must be finite and not all zero")
            name = "vector"
        else:
            skip = (
                service.collection.check_row(body.id)
                if body.id is not None
                else service.collection.row_of(str(body.path))
            )
            query, name = service.collection.vector(skip), service.collection.paths[skip]
        hits = service.search(query[None], body.k, [skip])
        return SearchResponse(query=name, results=[Hit(**h) for h in hits[0]])

    @app.get("/api/images", tags=["images"], dependencies=api)
    def images(offset: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000)) -> ImageList:
        """Indexed images, by id."""
        rows = range(offset, min(offset + limit, len(service.collection)))
        return ImageList(
            total=len(service.collection),
            offset=offset,
            images=[ImageInfo(**service.collection.info(r)) for r in rows],
        )

    @app.get("/api/images/{image_id}", tags=["images"], dependencies=api)
    def image(image_id: int) -> ImageInfo:
        """One image's path and label."""
        return ImageInfo(**service.collection.info(image_id))

    @app.get("/api/images/{image_id}/neighbours", tags=["search"], dependencies=api)
    def neighbours(
        image_id: int, k: int = Query(10, description="results wanted")
    ) -> SearchResponse:
        """The images most similar to an indexed image (itself left out)."""
        check_k(k)
        row = service.collection.check_row(image_id)
        hits = service.search(service.collection.vector(row)[None], k, [row])
        return SearchResponse(
            query=service.collection.paths[row], results=[Hit(**h) for h in hits[0]]
        )

    @app.get(
        "/api/images/{image_id}/thumbnail",
        tags=["images"],
        dependencies=api,
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}},
    )
    def thumbnail(image_id: int, size: int = Query(160, ge=16, le=512)) -> Response:
        """A JPEG thumbnail fitting ``size`` x ``size``."""
        thumb = service.thumbnail(image_id, size)
        if thumb.data is None:
            raise HTTPException(404, f"image {image_id}: unreadable ({thumb.error})")
        return Response(thumb.data, media_type="image/jpeg", headers=_image_headers())

    @app.get(
        "/api/images/{image_id}/file",
        tags=["images"],
        dependencies=api,
        response_class=FileResponse,
        responses={200: {"content": {"image/*": {}}}},
    )
    def image_file(image_id: int) -> FileResponse:
        """The image file itself (only files inside the indexed folders are ever served)."""
        file = service.collection.file_of(image_id)
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if not kind.startswith("image/"):
            kind = "application/octet-stream"
        return FileResponse(file, media_type=kind, headers=_image_headers())

    @app.post("/api/images", tags=["images"], dependencies=api)
    async def add_images(
        files: Annotated[list[UploadFile], File(description="image files to add")],
        labels: Annotated[list[str] | None, Form(description="a label per file (optional)")] = None,
    ) -> Added:
        """Embed images with the collection's model and add them, durably: once answered,
        they survive the server being killed. Re-adding the same file keeps its id."""
        if len(files) > config.max_add:
            raise HTTPException(413, f"{len(files)} files in one add; at most {config.max_add}")
        if labels is not None and len(labels) != len(files):
            raise HTTPException(422, f"labels: {len(labels)} labels for {len(files)} files")
        uploads = [await read_upload(f) for f in files]
        if labels is not None:
            uploads = [
                Upload(u.name, u.data, label or None)
                for u, label in zip(uploads, labels, strict=True)
            ]
        rows = await run_in_threadpool(service.add, uploads)
        return Added(images=[ImageInfo(**service.collection.info(r)) for r in rows])

    @app.get("/api/clusters", tags=["browse"], dependencies=api)
    def clusters(preview: int = Query(8, ge=0, le=64)) -> dict[str, Any]:
        """Clusters (largest first) with their first members, when the server was given them."""
        return {"given": service.clusters is not None, "clusters": service.cluster_list(preview)}

    @app.get("/api/clusters/{cluster}", tags=["browse"], dependencies=api)
    def cluster(
        cluster: int, offset: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000)
    ) -> dict[str, Any]:
        """One cluster's images, closest to its centre first."""
        return service.cluster_members(cluster, offset, limit)

    @app.get("/api/duplicates", tags=["browse"], dependencies=api)
    def duplicates(
        offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=1000)
    ) -> dict[str, Any]:
        """Groups of near-identical images (largest first), when the server was given them."""
        return service.duplicate_groups(offset, limit)

    return app


async def _image_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ImageReadError)
    return JSONResponse({"detail": f"{exc.path}: {exc.reason}"}, status_code=400)


def _asset(name: str) -> str:
    return resources.files("dinokit.serve").joinpath(f"_page/{name}").read_text("utf-8")


def _page_headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": PAGE_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


def _image_headers() -> dict[str, str]:
    return {
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private, max-age=3600",
    }
