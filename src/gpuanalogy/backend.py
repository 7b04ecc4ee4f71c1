"""The compute backend: one explicit object that says where arrays, kernels and sessions live.

Pipeline code is written once against ``backend.xp`` (``numpy`` or ``cupy``) and calls
``backend.kernels.<name>`` (``gpuanalogy.kernels._api.Kernels``, the same API on every device).
The backend also decides how ONNX Runtime runs there (execution providers, session options,
threads), moves arrays between host and device, and turns the device running out of memory into
one clear error. Nothing else in the package asks which device it is on.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from .config import DEVICES, DeviceName
from .errors import InputError

log = logging.getLogger("gpuanalogy")


def default_threads() -> int:
    """Intra-op threads: ``$GPUANALOGY_THREADS`` if set, else the number of physical cores."""
    env = os.environ.get("GPUANALOGY_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            log.warning("ignoring GPUANALOGY_THREADS=%r: not an integer", env)
    try:
        import psutil  # noqa: PLC0415 - optional; only its physical-core count is used

        cores = psutil.cpu_count(logical=False)
    except ImportError:
        cores = None
    return max(1, int(cores or usable_cores()))


def usable_cores() -> int:
    """The logical cores this process may run on (its CPU affinity where the OS has one)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1)


def _provider_name(provider: Any) -> str:
    return provider[0] if isinstance(provider, tuple) else str(provider)


@dataclass(frozen=True)
class Backend:
    """Where the work runs.

    Attributes
    ----------
    name : {"cpu", "cuda"}
    xp : module
        ``numpy`` or ``cupy``: the array module every stage computes with.
    kernels : gpuanalogy.kernels._api.Kernels
        ``gpuanalogy.kernels.cpu.KERNELS`` or ``gpuanalogy.kernels.cuda.KERNELS``.
    ort_providers : tuple
        ONNX Runtime execution providers to ask for, best first.
    device_id : int
        The GPU the arrays and sessions use (0 on the CPU).
    max_unpool : bool
        Whether the first provider has a ``MaxUnpool`` kernel (ONNX Runtime's CUDA provider has
        not; the sub-networks then scatter their pooling gradients another way).
    winograd_channels : int
        The deconvolution's sub-networks write their 3x3 convolutions between at least this
        many channels (in and out) in Winograd's form, with 4 times fewer multiplications
        (:mod:`gpuanalogy.onnx_graph`); 0: never. On the CPU 256, the threshold where it was
        measured faster (docs/performance.md); on the GPU 0, as cuDNN chooses its own
        algorithm for each convolution.
    """

    name: str
    xp: ModuleType
    kernels: Any
    ort_providers: tuple[Any, ...] = field(default=("CPUExecutionProvider",))
    device_id: int = 0
    max_unpool: bool = True
    winograd_channels: int = 0

    @property
    def on_host(self) -> bool:
        """Whether the arrays are NumPy arrays in host memory."""
        return self.xp is np

    def asarray(self, array: Any, dtype: Any = None) -> Any:
        """Move ``array`` (NumPy, CuPy or any DLPack producer) onto this backend."""
        return self.xp.asarray(array, dtype=dtype)

    def to_numpy(self, array: Any) -> np.ndarray:
        """Bring ``array`` back to host memory as a NumPy array (:func:`to_host`)."""
        return to_host(array)

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the CPU); used around timings."""
        if self.name == "cuda":
            self.xp.cuda.Device().synchronize()

    def session_providers(self, available: Collection[str]) -> list[Any]:
        """The ONNX Runtime providers to open a session with, given those this install has.

        Those it lacks are dropped (with one log line); the CPU provider always remains as the
        last resort.
        """
        providers = []
        for provider in self.ort_providers:
            name = _provider_name(provider)
            if name in available:
                providers.append(provider)
            else:
                log.warning("onnxruntime has no %s in this install; using the next provider", name)
        if not any(_provider_name(p) == "CPUExecutionProvider" for p in providers):
            providers.append("CPUExecutionProvider")
        return providers

    def session_options(self, *, profile_prefix: str | None = None) -> Any:
        """ONNX Runtime session options for this backend: every graph optimisation, one
        intra-op thread per physical core (:func:`default_threads`), warnings off.

        ONNX Runtime's other defaults are kept on purpose: turning intra-op spinning or the CPU
        memory arena off made the sub-networks slower, memory patterns off changed nothing
        (``benchmarks/vgg.py``). ``profile_prefix`` turns on the profiler (benchmarks only).
        """
        import onnxruntime as ort  # noqa: PLC0415 - heavy import, only when a session is made

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = default_threads()
        options.log_severity_level = 3  # warnings from graph merging are noise to our users
        if profile_prefix is not None:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        return options

    @contextmanager
    def out_of_memory_as_error(self, what: str) -> Iterator[None]:
        """Turn the device running out of memory inside the block into one clear error.

        CuPy raises ``OutOfMemoryError``, ONNX Runtime a ``RuntimeException`` that mentions a
        failed allocation, Numba a ``CudaAPIError``; all become a ``DeviceMemoryError`` naming
        ``what`` and suggesting a smaller ratio or the CPU.
        """
        try:
            yield
        except MemoryError as exc:
            raise self._memory_error(what) from exc
        except Exception as exc:
            if self.name == "cuda" and _is_out_of_memory(exc):
                raise self._memory_error(what) from exc
            raise

    def _memory_error(self, what: str) -> Exception:
        from .errors import DeviceMemoryError  # noqa: PLC0415

        device = "the GPU" if self.name == "cuda" else "the machine"
        advice = "a smaller --ratio (e.g. 0.5) or --device cpu" if self.name == "cuda" else \
            "a smaller --ratio (e.g. 0.5)"
        return DeviceMemoryError(f"{what}: {device} ran out of memory; try {advice}")


_OOM_MARKERS = ("out of memory", "failed to allocate", "cudaerrormemoryallocation",
                "cuda_error_out_of_memory", "bfcarena")


def _is_out_of_memory(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return "outofmemory" in text.replace(" ", "") or any(m in text for m in _OOM_MARKERS)


def cpu_backend() -> Backend:
    """The CPU backend: NumPy arrays and ``numba.njit(parallel=True)`` kernels."""
    return Backend("cpu", np, importlib.import_module("gpuanalogy.kernels.cpu").KERNELS,
                   winograd_channels=256)


def to_host(array: Any) -> np.ndarray:
    """``array`` (NumPy, CuPy, or anything with ``get()`` or ``__array__``) in host memory as a
    NumPy array: one transfer from a device, none for a NumPy array."""
    if isinstance(array, np.ndarray):
        return array
    get = getattr(array, "get", None)
    return get() if get is not None else np.asarray(array)


class _KernelsUnusable(RuntimeError):
    """A GPU is there, but its kernels cannot be compiled."""


def _cuda_backend() -> Backend:
    import cupy  # noqa: PLC0415 - optional dependency, imported only when asked for

    cupy.cuda.runtime.getDeviceCount()  # raises when no usable device or driver
    cuda_kernels = importlib.import_module("gpuanalogy.kernels.cuda")
    try:
        cuda_kernels.check_compiler()
    except Exception as exc:
        # get_backend prints the message's first line: this prefix and the error's own first
        raise _KernelsUnusable(f"numba-cuda cannot compile kernels here: {type(exc).__name__}: "
                               f"{exc}") from exc
    kernels = cuda_kernels.KERNELS
    device_id = cupy.cuda.Device().id
    providers = (("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider")
    return Backend("cuda", cupy, kernels, providers, device_id=device_id, max_unpool=False)


def get_backend(device: DeviceName | Backend = "auto", *, quiet: bool = False) -> Backend:
    """Choose the backend once.

    ``"auto"`` takes CUDA when CuPy and a GPU are usable and the CPU otherwise; ``"cuda"`` asks
    for the GPU and, if there is none, says so in one line on stderr and runs on the CPU. A GPU
    whose kernels cannot be compiled is said so in that line for ``"auto"`` too.
    """
    if isinstance(device, Backend):
        return device
    if device not in DEVICES:
        raise InputError(f"device={device!r} is not supported. Try one of: {', '.join(DEVICES)}.")
    if device == "cpu":
        return cpu_backend()
    try:
        return _cuda_backend()
    except Exception as exc:  # ImportError, CUDARuntimeError, driver errors: all mean "no GPU"
        if (device == "cuda" or isinstance(exc, _KernelsUnusable)) and not quiet:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"gpuanalogy: no usable GPU ({reason}); running on the CPU", file=sys.stderr)
        return cpu_backend()
