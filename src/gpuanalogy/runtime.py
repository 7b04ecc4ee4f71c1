"""ONNX Runtime plumbing: one session factory, one runner per session, an on-disk model cache.

- :func:`create_session` opens a session with the providers and options the backend chooses
  (CUDA when the backend asks for it and this onnxruntime build has it, the CPU otherwise) and
  says which provider it got.
- :class:`Runner` is the seam between array code and a session: ``run(feeds, names)`` takes and
  returns arrays of the backend's array module. The CPU runner hands NumPy arrays to ORT without
  copies; on CUDA, :class:`BoundRunner` binds CuPy memory to the session (I/O binding), behind
  the same interface.
- :func:`cached_model_path` builds a graph once per (weights digest, graph version, kind) and keeps
  it in the user's cache directory, written atomically and checked against a SHA-256 sidecar;
  building one removes the files of older graph versions.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gpuanalogy.errors import ModelError
from gpuanalogy.files import sha256_file, write_bytes

__all__ = ["Runner", "BoundRunner", "make_runner", "cache_dir", "cached_model_path",
           "create_session"]

log = logging.getLogger("gpuanalogy")

_KIND = re.compile(r"^[A-Za-z0-9_.-]+$")
_fallback_cache: Path | None = None


def create_session(model_path: str | os.PathLike[str], backend: Any, *,
                   profile_prefix: str | None = None) -> tuple[Any, str]:
    """Open an ONNX Runtime session on the execution provider the backend asks for.

    Parameters
    ----------
    model_path : path
        An ``.onnx`` file.
    backend : gpuanalogy.backend.Backend
        Chooses the providers (``session_providers``) and the options (``session_options``).
    profile_prefix : str, optional
        Turn on ONNX Runtime's profiler, writing to ``<prefix>_<date>.json`` when the caller
        runs ``session.end_profiling()``. For benchmarks only: the profiler times every node of
        every run.

    Returns
    -------
    session : onnxruntime.InferenceSession
    provider : str
        The provider the session runs on first, e.g. ``"CPUExecutionProvider"``.

    Raises
    ------
    ModelError
        The file is missing or is not a model onnxruntime can load.
    """
    import onnxruntime as ort  # noqa: PLC0415 - heavy import, only when a session is made

    providers = backend.session_providers(set(ort.get_available_providers()))
    options = backend.session_options(profile_prefix=profile_prefix)
    path = Path(model_path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own classes (InvalidProtobuf, Fail, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: onnxruntime cannot load this model ({first})") from exc
    used = session.get_providers()[0]
    log.info("onnxruntime session for %s runs on %s", path.name, used)
    return session, used


class Runner:
    """Runs one session on arrays of the backend's array module.

    This CPU version feeds NumPy arrays straight to ``InferenceSession.run`` (C-contiguous
    float32 arrays are wrapped, not copied) and returns ORT's output arrays. On the CPU, I/O
    binding into preallocated outputs and ``run_with_ort_values`` were no faster than this plain
    call, so it stays. With a CUDA backend this runner still works, through host copies;
    :class:`BoundRunner` removes those copies where ONNX Runtime has the CUDA provider.
    """

    def __init__(self, session: Any, provider: str, backend: Any) -> None:
        self.session = session
        self.provider = provider
        self.backend = backend

    def run(self, feeds: Mapping[str, Any], names: Sequence[str]) -> list[Any]:
        """Run the graph on ``feeds`` and return the outputs ``names``, in that order."""
        if self.backend.on_host:
            inputs = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in feeds.items()}
            return self.session.run(list(names), inputs)
        host = {k: np.ascontiguousarray(self.backend.to_numpy(v), dtype=np.float32)
                for k, v in feeds.items()}
        return [self.backend.asarray(o) for o in self.session.run(list(names), host)]


# ORT tensor type names -> NumPy dtypes, for outputs read straight from device memory.
_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
               "tensor(int64)": np.int64, "tensor(int32)": np.int32}


class BoundRunner(Runner):
    """Runs one session with I/O binding on the backend's device memory (CuPy on the GPU).

    Inputs are bound by pointer and outputs are written by ONNX Runtime on the device, so
    features, targets and gradients never visit the host; only rank-0 outputs (the loss) are
    bound to host memory. Device outputs are copied once into arrays of the backend's module
    (ONNX Runtime owns its output buffers). With ``device_type="cpu"`` the same code runs on
    NumPy arrays, which is how it is tested without a GPU.
    """

    def __init__(self, session: Any, provider: str, backend: Any, *,
                 device_type: str = "cuda", device_id: int = 0) -> None:
        super().__init__(session, provider, backend)
        self.device_type, self.device_id = device_type, device_id
        self._host_outputs = {o.name for o in session.get_outputs() if o.shape == []}

    def run(self, feeds: Mapping[str, Any], names: Sequence[str]) -> list[Any]:
        xp = self.backend.xp
        binding = self.session.io_binding()
        inputs = [xp.ascontiguousarray(xp.asarray(v), dtype=xp.float32) for v in feeds.values()]
        for name, array in zip(feeds, inputs):
            binding.bind_input(name, self.device_type, self.device_id, np.float32,
                               tuple(array.shape), _pointer(array))
        for name in names:
            where = "cpu" if name in self._host_outputs else self.device_type
            binding.bind_output(name, where, self.device_id if where != "cpu" else 0)
        self.backend.synchronize()  # device work that produced the inputs has finished
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return [self._array(value, name) for value, name in zip(binding.get_outputs(), names)]

    def _array(self, value: Any, name: str) -> Any:
        if name in self._host_outputs or self.device_type == "cpu":
            return value.numpy()
        xp = self.backend.xp
        shape, dtype = tuple(value.shape()), np.dtype(_ORT_DTYPES[value.data_type()])
        memory = xp.cuda.UnownedMemory(value.data_ptr(), int(np.prod(shape)) * dtype.itemsize,
                                       value)
        return xp.ndarray(shape, dtype, xp.cuda.MemoryPointer(memory, 0)).copy()


def _pointer(array: Any) -> int:
    data = getattr(array, "data", None)
    return int(data.ptr) if hasattr(data, "ptr") else int(array.ctypes.data)


def make_runner(session: Any, provider: str, backend: Any) -> Runner:
    """A bound runner when the session runs on the GPU, the plain host runner otherwise (a CUDA
    backend whose ONNX Runtime has no CUDA provider goes through host copies)."""
    if provider == "CUDAExecutionProvider":
        return BoundRunner(session, provider, backend, device_id=backend.device_id)
    return Runner(session, provider, backend)


def cache_dir() -> Path:
    """Where built models live: ``$GPUANALOGY_CACHE_DIR``, else ``$XDG_CACHE_HOME/gpuanalogy``,
    else ``~/.cache/gpuanalogy``."""
    explicit = os.environ.get("GPUANALOGY_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "gpuanalogy"


def _intact(model: Path, sidecar: Path) -> bool:
    """True when the sidecar exists, names the file's size and SHA-256, and they match."""
    try:
        recorded = sidecar.read_text(encoding="ascii").split()
        if len(recorded) != 2 or int(recorded[1]) != model.stat().st_size:
            return False
        return sha256_file(model) == recorded[0]
    except (OSError, ValueError, UnicodeDecodeError):
        return False


def _writable_cache_dir() -> Path:
    global _fallback_cache  # noqa: PLW0603 - one temporary directory per process at most
    directory = cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if os.access(directory, os.W_OK):
            return directory
    except OSError:
        pass
    if _fallback_cache is None:
        _fallback_cache = Path(tempfile.mkdtemp(prefix="gpuanalogy-cache-"))
        log.warning("cannot write the model cache %s; using %s for this run "
                    "(set GPUANALOGY_CACHE_DIR to a writable directory)", directory,
                    _fallback_cache)
    return _fallback_cache


def cached_model_path(kind: str, weights: Any, build_fn: Callable[[], Any]) -> Path:
    """Path of the model ``kind`` for ``weights``, built by ``build_fn()`` when not cached.

    Parameters
    ----------
    kind : str
        What the graph is (letters, digits, ``_ . -``), e.g. ``"features"`` or
        ``"subnet3-target"``; it names the file together with ``weights.digest`` and
        :data:`gpuanalogy.vgg_graphs.GRAPH_VERSION`.
    weights : VGG19Weights
        Only its ``digest`` is used here.
    build_fn : callable
        Called with no arguments when the model must be (re)built; returns an
        ``onnx.ModelProto``.

    Returns
    -------
    pathlib.Path
        A complete model file. It is written under a temporary name and moved into place with
        ``os.replace``, then a ``.sha256`` sidecar (hash and size) is written the same way. A file
        whose sidecar is missing or disagrees (torn write, disk corruption, manual edits) is
        rebuilt.
    """
    from gpuanalogy.vgg_graphs import GRAPH_VERSION  # noqa: PLC0415 - keeps imports light

    if not _KIND.match(kind):
        raise ValueError(f"kind={kind!r} must be letters, digits, '_', '.' or '-'")
    digest = str(getattr(weights, "digest", "") or "")
    if not re.fullmatch(r"[0-9a-fA-F]{16,}", digest):
        raise ModelError(f"weights from {getattr(weights, 'source', '?')} have no sha256 digest "
                         "to key the model cache on")
    directory = _writable_cache_dir()
    path = directory / f"vgg19-{kind}-g{GRAPH_VERSION}-{digest[:24].lower()}.onnx"
    sidecar = path.with_name(path.name + ".sha256")
    if path.exists() and _intact(path, sidecar):
        return path
    if path.exists():
        log.warning("cached model %s is corrupt or incomplete; rebuilding it", path)
    data = build_fn().SerializeToString()
    write_bytes(path, data)
    write_bytes(sidecar, f"{hashlib.sha256(data).hexdigest()} {len(data)}\n".encode("ascii"))
    log.info("built %s (%.1f MB)", path, len(data) / 1e6)
    _prune_older_versions(directory, GRAPH_VERSION)
    return path


_CACHED_NAME = re.compile(r"vgg19-[A-Za-z0-9_.-]+-g(\d+)-[0-9a-f]+\.onnx(\.sha256)?")


def _prune_older_versions(directory: Path, version: int) -> None:
    """Delete cached graphs of older graph versions: this code never reads them again."""
    for entry in directory.iterdir():
        match = _CACHED_NAME.fullmatch(entry.name)
        if match and int(match.group(1)) < version:
            with contextlib.suppress(OSError):
                entry.unlink()
                log.info("removed stale cached model %s", entry)
