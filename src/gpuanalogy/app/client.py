"""The Dask client a batch runs on: ``--workers N``, ``--workers gpus``, ``--scheduler``,
``--scheduler-file`` and ``--connect-timeout``.

:func:`open_client` checks everything it can before anything starts (the number of workers
against the cores and the memory for their networks, the address's form, scheme and host, the
scheduler file), then reaches the scheduler within the time limit, each failure one line naming
the address and what failed. :mod:`gpuanalogy.app.cluster` runs the batch on the client.
``distributed`` is imported only here and there, once a cluster is used.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backend import default_threads, usable_cores
from ..errors import ClusterError, InputError, error_reason, printable
from ..memory import available_bytes, in_words
from ..sizes import PROCESS_BYTES
from .options import DEFAULT_CONNECT_TIMEOUT

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["open_client", "local_cluster", "import_extra"]


@contextlib.contextmanager
def open_client(*, workers: int | str | None = None, scheduler: str | None = None,
                scheduler_file: str | None = None, connect_timeout: float | None = None,
                on_notice: Callable[[str], None] = print) -> Iterator["Client"]:
    """A Dask client on the cluster the options name, closed (with a cluster it started) at the
    end. ``on_notice`` receives the line with the dashboard's address.

    Everything that can be checked is checked before anything starts: ``workers`` against the
    cores and the memory for that many networks, the address's form and scheme, the scheduler
    file's presence and content. A scheduler that does not answer within ``connect_timeout``
    seconds (default :data:`~gpuanalogy.app.options.DEFAULT_CONNECT_TIMEOUT`) is given up.

    Raises
    ------
    InputError
        More workers than fit (the message says how many do), a malformed address or an
        unknown scheme, a scheduler file that is missing or names no address, a timeout that
        is not a positive number of seconds.
    ClusterError
        The scheduler's host cannot be resolved, or it did not answer in time; the message
        names the address and what failed (refused, no answer, ...).
    """
    distributed = import_extra("distributed", "dask[distributed]", "distributed")
    timeout = DEFAULT_CONNECT_TIMEOUT if connect_timeout is None else connect_timeout
    if not (math.isfinite(timeout) and timeout > 0):
        raise InputError(f"--connect-timeout {timeout:g}: not a positive number of seconds")
    where = scheduler or ""
    if scheduler_file is not None:
        scheduler = _address_in(scheduler_file)
        where = f"{scheduler_file}: scheduler {scheduler}"
    if scheduler is not None:
        _check_address(scheduler, where)
    if workers == "gpus":
        dask_cuda = import_extra("dask_cuda", "dask-cuda", "cuda")
        cluster: Any = dask_cuda.LocalCUDACluster()
    elif workers is not None:
        cluster = local_cluster(_check_workers(int(workers)))
    elif scheduler is None:
        raise InputError("no Dask cluster named: give --workers, --scheduler or --scheduler-file")
    else:
        cluster = None
    with contextlib.ExitStack() as stack:
        if cluster is not None:
            stack.enter_context(cluster)
            client = stack.enter_context(distributed.Client(cluster))
        else:
            client = stack.enter_context(_connect(distributed, scheduler, timeout, where))
        info = client.scheduler_info()
        on_notice(f"Dask scheduler {info['address']}, dashboard: {_dashboard(client, info)}")
        yield client


def _check_workers(workers: int) -> int:
    """``workers`` if this machine holds that many: a core and a network's memory each."""
    cores = usable_cores()
    free = available_bytes()
    fit = min(cores, workers if free is None else free // PROCESS_BYTES)
    if workers > fit:
        memory = "" if free is None else (f", {in_words(free)} of memory free at about "
                                          f"{in_words(PROCESS_BYTES)} a worker")
        advice = f"use --workers {fit} or fewer" if fit else "run the batch in process"
        raise InputError(f"--workers {workers}: this machine holds at most {fit} "
                         f"({cores} cores{memory}); {advice}")
    return workers


def _address_in(scheduler_file: str) -> str:
    """The address a scheduler file names (read at once: a missing file is never waited for)."""
    path = Path(scheduler_file)
    name = printable(os.fspath(path))
    if not path.is_file():
        raise InputError(f"{name}: " + ("is a folder, not a scheduler file" if path.is_dir()
                                        else "no such scheduler file"))
    try:
        with open(path, "rb") as f:
            info = json.loads(f.read(_SCHEDULER_FILE_BYTES))
    except OSError as error:
        raise InputError(f"{name}: cannot read the scheduler file: {error_reason(error)}"
                         ) from None
    except ValueError as error:
        raise InputError(f"{name}: not a Dask scheduler file (not JSON: {error_reason(error)})"
                         ) from None
    address = info.get("address") if isinstance(info, dict) else None
    if not isinstance(address, str) or not address:
        raise InputError(f"{name}: not a Dask scheduler file (no \"address\" in it)")
    return address


_SCHEDULER_FILE_BYTES = 1 << 20   # a scheduler file is a few hundred bytes of JSON
_HOST_SCHEMES = ("tcp", "tls", "ws", "wss")   # the schemes whose addresses are host:port


def _check_address(address: str, where: str) -> None:
    """Refuse an address Dask cannot use: an unknown scheme, a missing or bad port, a host
    that does not resolve. Checked in a moment, where Dask would wait or fail in a traceback."""
    from distributed.comm import parse_address, parse_host_port  # noqa: PLC0415
    from distributed.comm.registry import get_backend  # noqa: PLC0415

    shown = printable(where)
    try:
        scheme, location = parse_address(address)
        get_backend(scheme)
        if scheme not in _HOST_SCHEMES:
            return
        host, port = parse_host_port(location)
    except (ValueError, TypeError, ImportError) as error:
        raise InputError(f"{shown}: not a Dask scheduler address ({error_reason(error)}); "
                         "expected tcp://HOST:PORT or tls://HOST:PORT") from None
    if not 0 < port < 65536:
        raise InputError(f"{shown}: port {port} is out of range (1 to 65535)")
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise ClusterError(f"{shown}: cannot resolve the host {host!r} "
                           f"({error_reason(error)})") from None


def _connect(distributed: Any, address: str, timeout: float, where: str) -> "Client":
    """A client connected to ``address`` within ``timeout`` seconds, or a one-line error.

    A TCP connection is tried first, again while it is refused (a scheduler may be starting),
    so that a failure says what failed; Dask then has the time that is left.
    """
    deadline = time.monotonic() + timeout
    failed = _unreachable(address, deadline)
    if failed is None:
        try:
            return distributed.Client(address, timeout=max(deadline - time.monotonic(), 1.0))
        except Exception as error:  # noqa: BLE001 - whatever Dask raises, the user gets one line
            failed = (f"a connection opened but Dask's handshake failed (no scheduler there, "
                      f"or TLS settings missing): {type(error).__name__}: {error_reason(error)}")
    raise ClusterError(f"{printable(where)}: no Dask scheduler answered within {timeout:g} s "
                       f"({failed})")


def _unreachable(address: str, deadline: float) -> str | None:
    """What keeps a TCP connection to ``address`` from opening before ``deadline`` (in words),
    or None once one opens (or when the address is not host:port, as inproc:// and ucx://)."""
    from distributed.comm import get_address_host_port  # noqa: PLC0415

    try:
        host, port = get_address_host_port(address)
    except ValueError:
        return None
    refused = False
    while (left := deadline - time.monotonic()) > 0:
        try:
            with socket.create_connection((host, port), timeout=left):
                return None
        except ConnectionRefusedError:
            refused = True
            time.sleep(min(_RETRY_SECONDS, left))
        except TimeoutError:
            break
        except OSError as error:
            return error_reason(error)
    return "connection refused: nothing listens there" if refused else "no answer from the host"


_RETRY_SECONDS = 0.2   # between connections refused


def local_cluster(workers: int, **options: Any) -> Any:
    """A ``distributed.LocalCluster`` of ``workers`` processes sharing this machine's cores.

    Each worker computes one pair at a time (one Dask thread) with ``cores // workers`` threads
    of its own (ONNX Runtime's and Numba's), so the pairs never fight over the cores. Its
    scheduler and workers log only what is critical: the batch's display says what happens to
    each pair, and an interruption's cancelled pairs and a worker's heartbeat cut short by the
    shutdown are no news. Its dashboard takes a free port (the batch prints its link; a taken
    port 8787 would be a warning). ``options`` go to LocalCluster.
    """
    distributed = import_extra("distributed", "dask[distributed]", "distributed")
    threads = str(max(default_threads() // workers, 1))
    return distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True,
        env={"GPUANALOGY_THREADS": threads, "NUMBA_NUM_THREADS": threads},
        **{"silence_logs": logging.CRITICAL, "dashboard_address": ":0", **options})


def import_extra(module: str, package: str, extra: str) -> Any:
    """Import ``module`` of an optional extra, or refuse in one line saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(f"this needs {package}: pip install 'gpuanalogy[{extra}]'") from None


def _dashboard(client: "Client", info: dict[str, Any]) -> str:
    """The dashboard's address, or "none" when the scheduler (``info``: its
    ``scheduler_info()``) serves none."""
    if "dashboard" not in info.get("services", {}):
        return "none"
    return client.dashboard_link
