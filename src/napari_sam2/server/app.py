"""The FastAPI application of ``napari-sam2 serve``.

Routes (all but ``/health`` need ``Authorization: Bearer <token>`` unless auth is off):

- ``GET /health``: ``{"status": "ok"}`` (for load balancers; no model facts).
- ``GET /v1/info``: model, model id, device, precision, queue, limits, how to decode.
- ``GET /v1/decoder``: SAM 2's prompt encoder + mask decoder weights (wire message; its
  SHA-256 is in ``/v1/info``).
- ``POST /v1/encode``: a wire message with the image (``image`` float32 (H, W, 3) or
  ``gray`` (H, W)) and meta ``model_id``, ``embedding_dtype``, ``sha256``; answered with the
  embedding as a wire message.  With meta ``lookup: true`` and no array: the cached
  embedding of ``sha256``, or 404 ``not_cached``.
- ``POST /v1/cancel/{request_id}``: drop the job of a request (``X-Request-Id``).

Every refusal is JSON ``{"error": {"code": ..., "message": ...}}`` with a fitting status.
Nothing logged here carries a token or image content.
"""

from __future__ import annotations

import asyncio
import logging
import platform
from dataclasses import asdict, dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..engine.backends.remote.errors import WireError
from ..engine.backends.remote.serving import client_info, decoder_message
from ..engine.backends.remote.wire import (
    EMBEDDING_DTYPES,
    image_digest,
    image_from_arrays,
    pack_embedding,
    unpack,
)
from ..engine.errors import Cancelled, DeviceMemoryError, ImageError
from .auth import TokenSet
from .scheduler import EncodeScheduler, QueueFull, RateLimited

log = logging.getLogger(__name__)
OCTET = "application/octet-stream"


@dataclass
class ServerSettings:
    name: str = platform.node() or "server"
    max_request_bytes: int = 64 * 1024**2  # one request body as sent (compressed)
    max_pixels: int = 4096 * 4096  # one plane
    device_name: str = ""


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


def _error(status: int, code: str, message: str, retry_after=None) -> JSONResponse:
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after else None
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def create_app(backend, scheduler: EncodeScheduler, *, tokens: TokenSet | None,
               settings: ServerSettings | None = None) -> FastAPI:  # fmt: skip
    """The application around ``backend`` and its ``scheduler`` (started by the caller).

    ``tokens`` None: no authentication (the caller binds loopback only).  Longer than 80
    lines on purpose: the routes are closures over one backend, scheduler and settings
    (no module-level state), each a few lines.
    """
    settings = settings or ServerSettings()
    decoder = decoder_message(backend)
    model = client_info(backend, decoder)
    app = FastAPI(title="napari-sam2 server", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return _error(exc.status, exc.code, exc.message, exc.retry_after)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):
        return _error(exc.status_code, "not_found" if exc.status_code == 404 else "bad_request",
                      str(exc.detail))  # fmt: skip

    def auth(request: Request) -> str:
        """The client's identity for the fair queue and rate limits."""
        if tokens is None:
            who = "anonymous"
        else:
            who = tokens.check(request.headers.get("authorization"))
            if who is None:
                raise ApiError(401, "unauthorized", "Missing or wrong token.")
        return f"{who}/{request.headers.get('x-client-id', '')[:64]}"

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/info")
    async def info(request: Request):
        auth(request)
        return {
            **model,
            "name": settings.name,
            "device_name": settings.device_name or str(getattr(backend, "device", "cpu")),
            "device": str(getattr(backend, "device", "cpu")),
            "embedding_dtypes": list(EMBEDDING_DTYPES),
            "queue": scheduler.queued,
            "limits": {
                **asdict(scheduler.limits),
                "max_request_bytes": settings.max_request_bytes,
                "max_pixels": settings.max_pixels,
            },  # fmt: skip
            "counters": scheduler.counters.as_dict(),
        }

    @app.get("/v1/decoder")
    async def decoder_weights(request: Request):
        auth(request)
        if decoder is None:
            raise ApiError(404, "not_found", "This server's backend has no decoder weights.")
        return Response(decoder, media_type=OCTET)

    @app.post("/v1/cancel/{request_id}")
    async def cancel(request_id: str, request: Request):
        auth(request)
        return {"cancelled": scheduler.cancel(request_id[:64])}

    @app.post("/v1/encode")
    async def encode(request: Request):
        who = auth(request)
        rid = request.headers.get("x-request-id", "")[:64] or f"anon-{id(request)}"
        try:
            scheduler.check_rate(who.split("/")[0])
        except RateLimited as e:
            raise ApiError(429, "rate_limited", str(e), retry_after=1) from None
        body = await _read_body(request, settings.max_request_bytes)
        meta, image, digest = await run_in_threadpool(_parse, body, model, settings)
        emb = await run_in_threadpool(scheduler.cached, digest)  # may read the disk
        if emb is None and image is None:
            raise ApiError(404, "not_cached", "Not encoded yet: send the image.")
        if emb is None:
            try:
                fut = scheduler.submit(digest, image, who, rid)
            except QueueFull as e:
                raise ApiError(503, "queue_full", str(e), retry_after=1) from None
            try:
                emb = await asyncio.wrap_future(fut)
            except Cancelled as e:
                raise ApiError(409, "cancelled", str(e)) from None
            except (ImageError, ValueError) as e:
                raise ApiError(422, "bad_request", str(e).splitlines()[0]) from None
            except DeviceMemoryError as e:
                raise ApiError(503, "busy", str(e).splitlines()[0], retry_after=2) from None
            except Exception as e:  # noqa: BLE001 - a typed 500, the server keeps serving
                log.exception("encode failed")
                raise ApiError(
                    500, "server_error", f"Encoding failed: {type(e).__name__}."
                ) from None
            finally:
                scheduler.done(rid)
        reply = {"sha256": digest, "model_id": model["model_id"],
                 "encode_s": emb.get("encode_s") if isinstance(emb, dict) else None}  # fmt: skip
        data = await run_in_threadpool(pack_embedding, emb, meta["embedding_dtype"], reply)
        return Response(data, media_type=OCTET)

    return app


async def _read_body(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise ApiError(413, "too_large", f"Request of {int(declared)} bytes is over the "
                                         f"server's limit of {cap} bytes.")  # fmt: skip
    chunks, n = [], 0
    async for chunk in request.stream():
        n += len(chunk)
        if n > cap:
            raise ApiError(
                413, "too_large", f"Request body over the server's limit of {cap} bytes."
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(body: bytes, model: dict, settings: ServerSettings):
    """``(meta, image or None, digest)`` of a checked encode request."""
    max_bytes = settings.max_pixels * 3 * 4
    try:
        arrays, meta, _ = unpack(body, max_bytes=max_bytes)
    except WireError as e:
        raise ApiError(400, "bad_request", str(e)) from None
    if meta.get("model_id") != model["model_id"]:
        raise ApiError(409, "model_changed", "This server now runs another model "
                       f"({model['model']}, id {model['model_id']}): reconnect.")  # fmt: skip
    if meta.get("embedding_dtype") not in EMBEDDING_DTYPES:
        raise ApiError(422, "bad_request", f"embedding_dtype must be one of {EMBEDDING_DTYPES}.")
    digest = meta.get("sha256")
    if meta.get("lookup") is True and not arrays:
        if not isinstance(digest, str) or len(digest) != 64:
            raise ApiError(422, "bad_request", "A lookup needs the image's sha256.")
        return meta, None, digest
    try:
        image = image_from_arrays(arrays, max_pixels=settings.max_pixels)
    except WireError as e:
        raise ApiError(422, "bad_request", str(e)) from None
    actual = image_digest(image)
    if digest is not None and digest != actual:
        raise ApiError(422, "bad_request", "The image does not match its sha256.")
    return meta, image, actual
