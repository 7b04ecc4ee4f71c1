"""``gpuanalogy serve``: the page and HTTP API (:mod:`gpuanalogy.app.web`) on uvicorn.

The network is loaded once, before the server answers; jobs then run one at a time in the
queue's worker thread (:mod:`gpuanalogy.app.jobs`). The server binds 127.0.0.1 unless told
otherwise, and says so loudly when it is told otherwise: there is no login.
"""
from __future__ import annotations

import argparse
import ipaddress
import socket
import sys

from ..errors import InputError, error_reason
from ..features import load_network
from .options import config_from_options


def command(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: PLC0415 - the web extra
        from .web import Limits, create_app  # noqa: PLC0415 - imports Starlette
    except ImportError as error:
        raise InputError(f"serve needs the web extra ({error.name} is missing): "
                         f"pip install 'gpuanalogy[web]'") from error
    from .jobs import JobQueue  # noqa: PLC0415

    for flag, value in (("--max-upload-mb", args.max_upload_mb), ("--max-pixels",
                        args.max_pixels), ("--max-queue", args.max_queue),
                        ("--keep-minutes", args.keep_minutes)):
        if value <= 0:
            raise InputError(f"{flag} {value} must be positive")
    config = config_from_options(vars(args))
    listener = open_socket(args.host, args.port)
    host, port = listener.getsockname()[:2]
    if not is_loopback(args.host):
        print(f"gpuanalogy serve: WARNING: listening on {args.host}: anyone who can reach "
              f"this machine on port {port} can use it (upload images, run jobs on its "
              f"cores, download the results); there is no login", file=sys.stderr, flush=True)
    print(f"gpuanalogy serve: loading the network ({config.device})", file=sys.stderr,
          flush=True)
    with listener:
        model = load_network(config.weights, config.device)
        queue = JobQueue(model, keep_seconds=args.keep_minutes * 60,
                         max_queued=args.max_queue)
        limits = Limits(max_upload_bytes=int(args.max_upload_mb * 2**20),
                        max_pixels=args.max_pixels, device=model.backend.name,
                        weights=config.weights)
        server = uvicorn.Server(uvicorn.Config(create_app(queue, limits), log_level="warning",
                                               access_log=False, timeout_graceful_shutdown=3,
                                               lifespan="off"))
        shown = f"[{host}]" if ":" in host else host
        print(f"gpuanalogy serve: http://{shown}:{port}/ on {model.backend.name}, jobs' files "
              f"in {queue.root} (Ctrl-C stops)", flush=True)
        queue.start()
        try:
            server.run(sockets=[listener])
        finally:
            queue.close()
    return 0


def open_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: any free port); one line if it cannot."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(128)
    except OSError as error:
        raise InputError(f"cannot listen on {host}:{port}: {error_reason(error)}") from None
    return listener


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
