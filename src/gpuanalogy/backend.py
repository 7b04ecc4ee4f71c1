"""The compute backend: one explicit object that says where arrays and kernels live.

Pipeline code is written once against ``backend.xp`` (``numpy`` or ``cupy``) and calls
``backend.kernels.<name>``; the CPU and CUDA kernel modules expose the same functions with the
same signatures. Nothing else in the package asks which device it is on.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

import numpy as np

DeviceName = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class Backend:
    """Where the work runs.

    Attributes
    ----------
    name : {"cpu", "cuda"}
    xp : module
        ``numpy`` or ``cupy``: the array module every stage computes with.
    kernels : module
        ``gpuanalogy.kernels.cpu`` or ``gpuanalogy.kernels.cuda``.
    ort_providers : tuple
        ONNX Runtime execution providers to ask for, best first.
    lanes : int
        How many independent deconvolutions (the two directions of a level) may run side by
        side, each on its own thread with ``1 / lanes`` of the ONNX Runtime threads
        (``gpuanalogy.deconvolution.deconvolve_all`` says when they do). On the CPU this is 2
        when there are two cores or more: SciPy's L-BFGS-B step runs on one core holding
        Python's lock, so one direction's optimiser step overlaps the other's network
        evaluation (ONNX Runtime releases the lock). CUDA keeps 1: the GPU runs one
        evaluation at a time anyway.
    """

    name: str
    xp: ModuleType
    kernels: ModuleType
    ort_providers: tuple[Any, ...] = field(default=("CPUExecutionProvider",))
    lanes: int = 1

    def asarray(self, array: Any, dtype: Any = None) -> Any:
        """Move ``array`` (NumPy, CuPy or any DLPack producer) onto this backend."""
        return self.xp.asarray(array, dtype=dtype)

    def to_numpy(self, array: Any) -> np.ndarray:
        """Bring ``array`` back to host memory as a NumPy array."""
        if isinstance(array, np.ndarray):
            return array
        get = getattr(array, "get", None)
        return get() if get is not None else np.asarray(array)

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the CPU); used around timings."""
        if self.name == "cuda":
            self.xp.cuda.Device().synchronize()

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
            raise self._memory_error(what, exc) from exc
        except Exception as exc:
            if self.name == "cuda" and _is_out_of_memory(exc):
                raise self._memory_error(what, exc) from exc
            raise

    def _memory_error(self, what: str, exc: BaseException) -> Exception:
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
    from .runtime import default_threads  # noqa: PLC0415 - runtime imports io, which is heavier

    return Backend("cpu", np, importlib.import_module("gpuanalogy.kernels.cpu"),
                   lanes=2 if default_threads() >= 2 else 1)


def _cuda_backend() -> Backend:
    import cupy  # noqa: PLC0415 - optional dependency, imported only when asked for

    cupy.cuda.runtime.getDeviceCount()  # raises when no usable device or driver
    kernels = importlib.import_module("gpuanalogy.kernels.cuda")
    providers = (("CUDAExecutionProvider", {"device_id": cupy.cuda.Device().id}),
                 "CPUExecutionProvider")
    return Backend("cuda", cupy, kernels, providers)


def get_backend(device: DeviceName | Backend = "auto", *, quiet: bool = False) -> Backend:
    """Choose the backend once.

    ``"auto"`` takes CUDA when CuPy and a GPU are usable and the CPU otherwise; ``"cuda"`` asks
    for the GPU and, if there is none, says so in one line on stderr and runs on the CPU.
    """
    if isinstance(device, Backend):
        return device
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device={device!r} is not supported. Try 'auto', 'cpu' or 'cuda'.")
    if device == "cpu":
        return cpu_backend()
    try:
        return _cuda_backend()
    except Exception as exc:  # ImportError, CUDARuntimeError, driver errors: all mean "no GPU"
        if device == "cuda" and not quiet:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"gpuanalogy: no usable GPU ({reason}); running on the CPU", file=sys.stderr)
        return cpu_backend()
