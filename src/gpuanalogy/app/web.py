"""The HTTP API and page of ``gpuanalogy serve`` (Starlette), over a :class:`JobQueue`.

Routes (the README documents them for users)::

    GET  /                                   the page (app/page/, plain HTML/CSS/JS)
    GET  /page/{name}                        its script and style sheet
    GET  /api/options                        the settings a job takes (the options table), the
                                             presets' values, the defaults and the limits
    POST /api/jobs                           multipart: files a and b_prime (one or more
                                             exemplars), any region files, any settings,
                                             save_levels -> 201 the job
    GET  /api/jobs                           every job: the queue, the running one, the ended
    GET  /api/jobs/{id}                      one job
    GET  /api/jobs/{id}/events               its events as server-sent events
    GET  /api/jobs/{id}/levels/{L}/{side}    a level's preview (side: a_prime.png or b.png)
    GET  /api/jobs/{id}/files/{name}         one of the files ``run`` writes
    GET  /api/jobs/{id}/zip                  all of them in one zip
    POST /api/jobs/{id}/cancel               cancel a waiting or running job

Every error is a JSON ``{"error": "one line"}`` with a 4xx status: bad input gets the same
reason as on the command line. A request's body is bounded in bytes while it is received
(413), and each image in pixels by its header before any pixel data is decoded
(:func:`gpuanalogy.images.read_image`'s guard with the server's ``max_pixels``). Names from a
request never reach the file system: uploads are written under names this module chooses,
and files are served only when their name is on the job's own list.
"""
from __future__ import annotations

import asyncio
import io
import json
import os
import warnings
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .. import __version__
from ..config import PRESETS, AnalogyConfig
from ..errors import InputError, error_reason, printable
from ..images import read_image
from .jobs import FINISHED, Job, JobFinished, JobQueue, QueueFull
from .options import OPTIONS, csv_overrides
from .pair import Regions, read_regions

__all__ = ["Limits", "create_app", "WEB_OPTIONS", "FILE_FIELDS", "MAX_EXEMPLARS"]

#: The settings a job may carry: those a batch CSV may set per pair (the device and the
#: weights are the server's), less the input files, which come as files.
WEB_OPTIONS = tuple(o for o in OPTIONS if o.csv and not o.inputs)

#: The most exemplars one job takes (each adds a VGG pyramid, a search and a deconvolution).
MAX_EXEMPLARS = 8

#: The file fields of a job: name -> (help, the most files, required). A and B' (several files
#: for several exemplars), then the options table's input files (the region masks).
FILE_FIELDS: dict[str, tuple[str, int, bool]] = {
    "a": ("structure image A (A' keeps its layout)", 1, True),
    "b_prime": (f"appearance exemplar B' (B keeps its layout); up to {MAX_EXEMPLARS} files: "
                f"A' takes each patch from the best of them", MAX_EXEMPLARS, True),
    **{o.name: (o.help, MAX_EXEMPLARS if o.nargs else 1, False) for o in OPTIONS if o.inputs},
}
_FIELDS = frozenset(("save_levels", *FILE_FIELDS, *(o.name for o in WEB_OPTIONS)))
_PAGE = {"index.html": "text/html", "page.js": "text/javascript", "page.css": "text/css"}
_CSP = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'"
_SIDES = {"a_prime.png": "a_prime", "b.png": "b"}


@dataclass(frozen=True)
class Limits:
    """What the server takes: bytes per request, pixels per image, and the settings every job
    gets from it (device and weights, as the network was loaded)."""

    max_upload_bytes: int
    max_pixels: int
    device: str
    weights: str | None = None


class ApiError(Exception):
    """An HTTP error with a one-line reason, answered as JSON."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def create_app(queue: JobQueue, limits: Limits) -> Starlette:
    """The Starlette application serving ``queue`` within ``limits``."""
    page = {name: (resources.files(__package__) / "page" / name).read_bytes() for name in _PAGE}

    async def index(request: Request) -> Response:
        return _page_file(page, "index.html")

    async def page_file(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in page:
            raise ApiError(404, f"no page file {printable(name)!r}")
        return _page_file(page, name)

    async def options(request: Request) -> Response:
        return JSONResponse(options_document(queue, limits))

    async def submit(request: Request) -> Response:
        queue.check_room()
        form = await _bounded_form(request, limits.max_upload_bytes)
        job = await _submit(queue, form, limits)
        return JSONResponse(queue.summary(job), status_code=201,
                            headers={"Location": f"/api/jobs/{job.id}"})

    async def jobs(request: Request) -> Response:
        return JSONResponse({"jobs": queue.jobs()})

    async def job(request: Request) -> Response:
        return JSONResponse(queue.summary(_job(queue, request)))

    async def cancel(request: Request) -> Response:
        try:
            found = queue.cancel(request.path_params["job"])
        except KeyError:
            raise ApiError(404, _no_job(request)) from None
        except JobFinished as error:
            raise ApiError(409, str(error)) from None
        return JSONResponse(queue.summary(found), status_code=202)

    async def events(request: Request) -> Response:
        found = _job(queue, request)
        after = _last_event_id(request)
        if found.state in FINISHED and after >= len(found.events):
            return Response(status_code=204)   # EventSource then stops reconnecting
        return StreamingResponse(_event_stream(queue, found, after),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def level(request: Request) -> Response:
        found = _job(queue, request)
        level_number, side = request.path_params["level"], request.path_params["side"]
        preview = found.previews.get(level_number)
        if preview is None or side not in _SIDES:
            raise ApiError(404, f"job {found.id} has no preview {level_number}/"
                                f"{printable(side)}")
        return Response(preview[_SIDES[side]], media_type="image/png")

    async def file(request: Request) -> Response:
        found = _done_job(queue, request)
        name = next((f for f in found.files if f == request.path_params["name"]), None)
        if name is None:
            raise ApiError(404, f"job {found.id} wrote no file "
                                f"{printable(request.path_params['name'])!r}")
        return FileResponse(found.out / name)

    async def archive(request: Request) -> Response:
        found = _done_job(queue, request)
        data = await run_in_threadpool(zip_outputs, found)
        return Response(data, media_type="application/zip", headers={
            "Content-Disposition": f'attachment; filename="gpuanalogy-{found.id}.zip"'})

    routes = [
        Route("/", index), Route("/page/{name}", page_file),
        Route("/api/options", options),
        Route("/api/jobs", submit, methods=["POST"]), Route("/api/jobs", jobs),
        Route("/api/jobs/{job}", job), Route("/api/jobs/{job}/events", events),
        Route("/api/jobs/{job}/levels/{level:int}/{side}", level),
        Route("/api/jobs/{job}/files/{name}", file), Route("/api/jobs/{job}/zip", archive),
        Route("/api/jobs/{job}/cancel", cancel, methods=["POST"]),
    ]
    handlers = {ApiError: _api_error, HTTPException: _http_error, QueueFull: _queue_full}
    return Starlette(routes=routes, exception_handlers=handlers)  # type: ignore[arg-type]


def options_document(queue: JobQueue, limits: Limits) -> dict[str, Any]:
    """GET /api/options: each setting (name, type, help, choices) from the options table, the
    file fields, what each preset and the defaults set the settings to, and the server's
    limits."""
    def values(config: AnalogyConfig) -> dict[str, Any]:
        data = config.to_dict()
        return {o.name: data[o.field] for o in WEB_OPTIONS if o.field is not None}

    return {
        "version": __version__,
        "options": [{"name": o.name, "type": o.type.__name__, "help": o.help,
                     "choices": list(o.choices)} for o in WEB_OPTIONS],
        "files": [{"name": name, "help": text, "multiple": most > 1, "required": required}
                  for name, (text, most, required) in FILE_FIELDS.items()],
        "defaults": values(AnalogyConfig()),
        "presets": {name: values(AnalogyConfig.preset(name)) for name in PRESETS},
        "limits": {"max_upload_bytes": limits.max_upload_bytes,
                   "max_pixels": limits.max_pixels, "max_queued": queue.max_queued,
                   "keep_seconds": queue.keep_seconds, "max_exemplars": MAX_EXEMPLARS},
        "device": limits.device,
    }


async def _bounded_form(request: Request, limit: int) -> Any:
    """The request's multipart form, refused (413) once its body passes ``limit`` bytes: at
    once when it declares a larger Content-Length, else while it is received."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, _too_large(int(declared), limit))
    received = 0

    async def receive() -> Any:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise ApiError(413, _too_large(received, limit, at_least=True))
        return message

    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(400, "send the images as multipart/form-data (fields a and b_prime)")
    try:
        return await Request(request.scope, receive).form(
            max_files=sum(most for _, most, _ in FILE_FIELDS.values()),
            max_fields=len(_FIELDS))
    except MultiPartException as error:
        raise ApiError(400, f"the form cannot be read: {error.message}") from None


def _too_large(size: int, limit: int, at_least: bool = False) -> str:
    return (f"the upload is {'more than ' if at_least else ''}{size:,} bytes, more than the "
            f"limit of {limit:,} (--max-upload-mb)")


async def _submit(queue: JobQueue, form: Any, limits: Limits) -> Job:
    """Check the form's settings and files, decode the images and region masks, queue the
    job."""
    unknown = sorted(set(form.keys()) - _FIELDS)
    if unknown:
        raise ApiError(400, f"unknown field {printable(unknown[0])!r}; the fields are "
                            f"{', '.join(sorted(_FIELDS))}")
    settings = {key: value for key, value in form.items()
                if isinstance(value, str) and key not in FILE_FIELDS}
    uploads: dict[str, list[tuple[str, bytes]]] = {}
    for key, (_, most, required) in FILE_FIELDS.items():
        values = form.getlist(key)
        if not all(isinstance(value, UploadFile) for value in values):
            raise ApiError(400, f"the form field {key!r} takes files, not text")
        if required and not values:
            raise ApiError(400, f"no {key} image given (a file in the form field {key!r})")
        if len(values) > most:
            raise ApiError(400, f"{len(values)} files in the form field {key!r}; at most "
                                f"{most}")
        uploads[key] = [(_upload_name(value, key), await value.read()) for value in values]
    try:
        config = job_config(settings, limits)
        save_levels = _flag(settings.get("save_levels", ""))
        with queue.staging() as folder:
            a, exemplars, regions, notices = await run_in_threadpool(
                _decode, folder, uploads, limits.max_pixels)
    except InputError as error:
        raise ApiError(400, error_reason(error)) from None
    names = tuple(name for name, _ in uploads["a"] + uploads["b_prime"])
    return queue.submit(a, exemplars if len(exemplars) > 1 else exemplars[0], config,
                        names=names, regions=regions, save_levels=save_levels,
                        notices=notices)


def job_config(settings: dict[str, str], limits: Limits) -> AnalogyConfig:
    """A job's settings from the form's text fields, as a batch CSV row's: the preset's (or the
    defaults), then every field given; the device and weights are the server's."""
    overrides = csv_overrides(settings, "form")
    preset = settings.get("preset") or None
    base = AnalogyConfig.preset(preset) if preset else AnalogyConfig()
    return base.replace(**overrides, device=limits.device, weights=limits.weights)


def _flag(text: str) -> bool:
    if text.lower() in ("", "0", "false", "no", "off"):
        return False
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    raise InputError(f"form: save_levels={printable(text)!r} is not true or false")


def _upload_name(upload: UploadFile, key: str) -> str:
    """What to call an upload in messages: its file name without any folder, or the field."""
    name = (upload.filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    return printable(name[:120]) or key


def _decode(folder: os.PathLike[str], uploads: dict[str, list[tuple[str, bytes]]],
            max_pixels: int) -> tuple[Any, list[Any], Regions | None, list[str]]:
    """Write each upload under a name of ours in ``folder`` and read it as ``run`` reads its
    files, with the server's pixel limit; returns A, the exemplars, the region masks (None
    without) and the readers' notices."""
    def stored(key: str) -> list[str]:
        paths = []
        for number, (name, data) in enumerate(uploads.get(key, [])):
            # the only thing taken from the upload's name: whether read_labels reads .npy
            path = os.path.join(folder, f"{key}_{number}"
                                + (".npy" if name.lower().endswith(".npy") else ""))
            with open(path, "wb") as stream:
                stream.write(data)
            paths.append(path)
        return paths

    def names(key: str) -> list[str]:
        return [name for name, _ in uploads.get(key, [])]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images = [read_image(path, name=name, max_pixels=max_pixels)
                  for key in ("a", "b_prime") for path, name in zip(stored(key), names(key))]
        regions_a = stored("regions_a")
        regions = read_regions(regions_a[0] if regions_a else None, stored("regions_b"),
                               len(images) - 1,
                               names=((names("regions_a") or [None])[0], names("regions_b")),
                               max_pixels=max_pixels)
    notices = [" ".join(str(w.message).split()) for w in caught]
    return images[0], images[1:], regions, notices


async def _event_stream(queue: JobQueue, job: Job, after: int) -> AsyncIterator[str]:
    """The job's events after number ``after``, as they come, until it ends."""
    sent, quiet = after, 0.0
    while not queue.closing:
        for event in job.events[sent:]:
            yield (f"id: {event['id']}\nevent: {event['event']}\n"
                   f"data: {json.dumps(event['data'])}\n\n")
            sent, quiet = event["id"], 0.0
        if job.state in FINISHED and sent >= len(job.events):
            return
        await asyncio.sleep(0.1)
        quiet += 0.1
        if quiet >= 15:   # a comment line keeps proxies from closing a quiet stream
            yield ": waiting\n\n"
            quiet = 0.0


def zip_outputs(job: Job) -> bytes:
    """The files of a finished job's folder, as ``run`` wrote them, in one zip (in memory)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in job.files:
            archive.write(job.out / name, name)
    return buffer.getvalue()


def _job(queue: JobQueue, request: Request) -> Job:
    try:
        return queue.get(request.path_params["job"])
    except KeyError:
        raise ApiError(404, _no_job(request)) from None


def _done_job(queue: JobQueue, request: Request) -> Job:
    found = _job(queue, request)
    if found.state != "done":
        raise ApiError(409, f"job {found.id} has no files: it is {found.state}")
    return found


def _no_job(request: Request) -> str:
    return (f"no job {printable(request.path_params['job'])!r} (unknown, or its files "
            f"expired)")


def _last_event_id(request: Request) -> int:
    text = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    return int(text) if text.isdigit() else 0


def _page_file(page: dict[str, bytes], name: str) -> Response:
    return Response(page[name], media_type=_PAGE[name],
                    headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"})


async def _api_error(request: Request, error: Exception) -> Response:
    return JSONResponse({"error": str(error)}, status_code=getattr(error, "status", 400))


async def _http_error(request: Request, error: Exception) -> Response:
    status = getattr(error, "status_code", 400)
    reason = {404: f"no such address {printable(request.url.path)!r}",
              405: f"{request.method} is not allowed on {printable(request.url.path)!r}"}
    return JSONResponse({"error": reason.get(status, str(getattr(error, "detail", error)))},
                        status_code=status)


async def _queue_full(request: Request, error: Exception) -> Response:
    return JSONResponse({"error": str(error)}, status_code=429)
