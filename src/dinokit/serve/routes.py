"""The routes of the server, one router per concern: the page and its docs, the service's
health and model, search, images and their files, adds, and the cluster and duplicate views.

Routes reach the :class:`~dinokit.serve.service.SearchService` through the ``Service``
dependency (``app.state.service``); the routers under ``/api`` other than ``/api/health`` ask
for the bearer token through :func:`authorised`.
"""

from __future__ import annotations

import asyncio
import hmac
import mimetypes
from importlib import resources
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, Response
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from .._version import __version__
from ._docs import docs_page
from .service import SearchService, Upload

TOKEN_COOKIE = "dinokit_token"
"""Cookie the web page stores the token in (images cannot send an Authorization header)."""

PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' blob: data:; "
    "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""Content-Security-Policy of the page: it loads nothing from anywhere but this server."""

_IMAGE_TYPES = ("image/", "application/octet-stream")

_PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
"""Headers of the page, its script and the docs."""
_IMAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, max-age=3600",
}
"""Headers of thumbnails and image files: never run as a page, cached by the browser."""


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


# ============ what the routes share ============


async def _service(request: Request) -> SearchService:
    # async, as every dependency here: a plain function would cost each call a thread hop.
    service: SearchService = request.app.state.service
    return service


Service = Annotated[SearchService, Depends(_service)]
"""A route parameter receiving the application's service."""


async def authorised(request: Request, service: Service) -> None:
    """Refuse (401) a request without the bearer token (header or cookie) when one is set."""
    token = service.config.token
    if not token:
        return
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else ""
    given = given or request.cookies.get(TOKEN_COOKIE, "")
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise HTTPException(
            401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


_API = [Depends(authorised)]


def _check_k(service: SearchService, k: int) -> None:
    if not 1 <= k <= service.config.max_k:
        raise HTTPException(422, f"k: must be between 1 and {service.config.max_k}, got {k}")


async def _read_upload(service: SearchService, file: UploadFile) -> Upload:
    """An uploaded image's bytes; 415 for a type that is not an image, 413 when too large."""
    name, limit = file.filename or "upload", service.config.max_upload_bytes
    kind = (file.content_type or "").lower()
    if not kind.startswith(_IMAGE_TYPES):
        raise HTTPException(415, f"{name}: content type {kind or 'none'} is not an image")
    if file.size is not None and file.size > limit:
        raise HTTPException(413, f"{name}: {file.size} bytes is over the limit of {limit}")
    return Upload(name=name, data=await file.read())


def _answer(query: str, hits: list[list[dict[str, Any]]]) -> SearchResponse:
    return SearchResponse(query=query, results=[Hit(**h) for h in hits[0]])


def _info(service: SearchService, row: int) -> ImageInfo:
    return ImageInfo(**service.collection.info(row))


# ============ the page and the docs ============

pages = APIRouter(include_in_schema=False)


def _asset(name: str) -> str:
    return resources.files("dinokit.serve").joinpath(f"_page/{name}").read_text("utf-8")


@pages.get("/")
def page() -> HTMLResponse:
    text = _asset("index.html").replace("$version", __version__)
    return HTMLResponse(text, headers=_PAGE_HEADERS)


@pages.get("/page.js")
def page_script() -> Response:
    return Response(_asset("page.js"), media_type="text/javascript", headers=_PAGE_HEADERS)


@pages.get("/docs")
def docs(request: Request) -> HTMLResponse:
    return HTMLResponse(docs_page(request.app.openapi()), headers=_PAGE_HEADERS)


# ============ health and model ============

service_routes = APIRouter()


@service_routes.get("/api/health", tags=["service"])
def health(service: Service) -> dict[str, Any]:
    """Liveness and counts (no token needed)."""
    return service.health()


@service_routes.get("/api/model", tags=["service"], dependencies=_API)
def model(service: Service) -> dict[str, Any]:
    """The model record and embedding recipe of the collection."""
    return service.model_info()


# ============ search ============

search_routes = APIRouter(dependencies=_API)


@search_routes.post("/api/search/upload", tags=["search"])
async def search_upload(
    service: Service,
    file: Annotated[UploadFile, File(description="the query image")],
    k: int = Query(10, description="results wanted"),
) -> SearchResponse:
    """The images most similar to an uploaded one, embedded with the collection's model
    (concurrent uploads share one forward pass)."""
    _check_k(service, k)
    upload = await _read_upload(service, file)
    image = await run_in_threadpool(service.preprocess, upload)
    vector = await asyncio.wrap_future(service.submit(image))
    hits = await run_in_threadpool(service.search, vector.numpy()[None], k)
    return _answer(upload.name, hits)


@search_routes.post("/api/search", tags=["search"])
def search(service: Service, body: VectorSearch) -> SearchResponse:
    """The images most similar to an indexed image (by id or path) or to a vector."""
    _check_k(service, body.k)
    given = [v is not None for v in (body.id, body.path, body.vector)]
    if sum(given) != 1:
        raise HTTPException(422, "give exactly one of id, path or vector")
    skip: int | None = None
    if body.vector is not None:
        query, name = _vector_query(service, body.vector), "vector"
    else:
        collection = service.collection
        skip = (
            collection.check_row(body.id)
            if body.id is not None
            else collection.row_of(str(body.path))
        )
        query, name = collection.vector(skip), collection.paths[skip]
    return _answer(name, service.search(query[None], body.k, [skip]))


def _vector_query(service: SearchService, vector: list[float]) -> NDArray[np.float32]:
    query = np.asarray(vector, dtype=np.float32)
    dim = service.collection.dim
    if query.shape != (dim,):
        raise HTTPException(422, f"vector: needs {dim} numbers, got {query.size}")
    if not np.isfinite(query).all() or not query.any():
        raise HTTPException(422, "vector: must be finite and not all zero")
    return query


# ============ images and their files ============

image_routes = APIRouter(dependencies=_API)


@image_routes.get("/api/images", tags=["images"])
def images(
    service: Service,
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
) -> ImageList:
    """Indexed images, by id."""
    total = len(service.collection)
    rows = range(offset, min(offset + limit, total))
    return ImageList(total=total, offset=offset, images=[_info(service, r) for r in rows])


@image_routes.get("/api/images/{image_id}", tags=["images"])
def image(service: Service, image_id: int) -> ImageInfo:
    """One image's path and label."""
    return _info(service, image_id)


@image_routes.get("/api/images/{image_id}/neighbours", tags=["search"])
def neighbours(
    service: Service, image_id: int, k: int = Query(10, description="results wanted")
) -> SearchResponse:
    """The images most similar to an indexed image (itself left out)."""
    _check_k(service, k)
    row = service.collection.check_row(image_id)
    hits = service.search(service.collection.vector(row)[None], k, [row])
    return _answer(service.collection.paths[row], hits)


@image_routes.get(
    "/api/images/{image_id}/thumbnail",
    tags=["images"],
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
)
def thumbnail(service: Service, image_id: int, size: int = Query(160, ge=16, le=512)) -> Response:
    """A JPEG thumbnail fitting ``size`` x ``size``."""
    thumb = service.thumbnail(image_id, size)
    if thumb.data is None:
        raise HTTPException(404, f"image {image_id}: unreadable ({thumb.error})")
    return Response(thumb.data, media_type="image/jpeg", headers=_IMAGE_HEADERS)


@image_routes.get(
    "/api/images/{image_id}/file",
    tags=["images"],
    response_class=FileResponse,
    responses={200: {"content": {"image/*": {}}}},
)
def image_file(service: Service, image_id: int) -> FileResponse:
    """The image file itself (only files inside the indexed folders are ever served)."""
    file = service.collection.file_of(image_id)
    kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    if not kind.startswith("image/"):
        kind = "application/octet-stream"
    return FileResponse(file, media_type=kind, headers=_IMAGE_HEADERS)


# ============ adds ============

add_routes = APIRouter(dependencies=_API)


@add_routes.post("/api/images", tags=["images"])
async def add_images(
    service: Service,
    files: Annotated[list[UploadFile], File(description="image files to add")],
    labels: Annotated[list[str] | None, Form(description="a label per file (optional)")] = None,
) -> Added:
    """Embed images with the collection's model and add them, durably: once answered,
    they survive the server being killed. Re-adding the same file keeps its id."""
    most = service.config.max_add
    if len(files) > most:
        raise HTTPException(413, f"{len(files)} files in one add; at most {most}")
    if labels is not None and len(labels) != len(files):
        raise HTTPException(422, f"labels: {len(labels)} labels for {len(files)} files")
    uploads = [await _read_upload(service, f) for f in files]
    if labels is not None:
        uploads = [
            Upload(u.name, u.data, label or None) for u, label in zip(uploads, labels, strict=True)
        ]
    rows = await run_in_threadpool(service.add, uploads)
    return Added(images=[_info(service, r) for r in rows])


# ============ clusters and duplicates ============

browse_routes = APIRouter(dependencies=_API)


@browse_routes.get("/api/clusters", tags=["browse"])
def clusters(service: Service, preview: int = Query(8, ge=0, le=64)) -> dict[str, Any]:
    """Clusters (largest first) with their first members, when the server was given them."""
    return {"given": service.clusters is not None, "clusters": service.cluster_list(preview)}


@browse_routes.get("/api/clusters/{cluster}", tags=["browse"])
def cluster(
    service: Service,
    cluster: int,
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """One cluster's images, closest to its centre first."""
    return service.cluster_members(cluster, offset, limit)


@browse_routes.get("/api/duplicates", tags=["browse"])
def duplicates(
    service: Service, offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=1000)
) -> dict[str, Any]:
    """Groups of near-identical images (largest first), when the server was given them."""
    return service.duplicate_groups(offset, limit)


ROUTERS = (pages, service_routes, search_routes, image_routes, add_routes, browse_routes)
"""Every router, in the order the application includes them (the schema's order)."""
