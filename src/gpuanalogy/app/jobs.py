"""The job queue of ``gpuanalogy serve``: analogies run one at a time in a worker thread.

A job is one pair, already decoded, with its settings. Jobs wait in submission order and the
worker runs them one after the other with the one network the server loaded (a run uses every
core of the machine, so two at once would only slow both). Each job's files are computed into a
folder of its own under the server's temporary folder, as ``run`` writes them; the folder is
removed when the job is cancelled or fails, ``keep_seconds`` after it ends otherwise, and with
all the others when the server stops.

Everything a page shows of a job is a list of events (``state``, ``progress``, ``level``,
``notice``) that :mod:`gpuanalogy.app.web` streams as server-sent events. A cancelled job stops
at its next stage or level: the worker's callbacks raise :class:`JobCancelled`.
"""
from __future__ import annotations

import io
import secrets
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..config import AnalogyConfig
from ..errors import GpuAnalogyError, error_reason, printable
from .pair import Regions, compute_pair, write_into_place, write_pair

__all__ = ["Job", "JobQueue", "JobCancelled", "QueueFull", "JobFinished", "FINISHED"]

#: The states a job ends in.
FINISHED = ("done", "failed", "cancelled")


class JobCancelled(Exception):
    """Raised inside the worker's callbacks to stop a job whose cancellation was asked for."""


class QueueFull(Exception):
    """As many jobs wait as the server allows."""


class JobFinished(Exception):
    """A job that has already ended cannot be cancelled."""


@dataclass(eq=False)
class Job:
    """One pair to compute, and everything the page is shown of it.

    Attributes
    ----------
    id : str
        Unguessable (16 hex digits); the only handle the HTTP API gives.
    names : tuple of str
        What A and each B' are called in messages and run.json: the uploaded files' names.
    config : AnalogyConfig
    save_levels : bool
        Also write each level's A' and B into the output folder (they are previewed either way).
    folder : Path
        The job's own folder; the outputs go to ``folder / "out"``.
    inputs : (ndarray, ndarray or list of ndarray) or None
        A and B' (or several exemplars), H x W x 3 uint8, until the job ends.
    regions : Regions or None
        The region masks and their uploads' names (:func:`gpuanalogy.app.pair.read_regions`),
        until the job ends.
    region_names : (str, tuple of str) or None
        The region uploads' names (A's, then one per exemplar), kept after the job ends.
    state : {"queued", "running", "done", "failed", "cancelled"}
    previews : dict
        Level -> {"a_prime": PNG bytes, "b": PNG bytes}, as the levels finish.
    files : list of str
        The output folder's files (run.json last), once done.
    events : list of dict
        ``{"id": n, "event": kind, "data": {...}}``, n = 1, 2, ... in order.
    """

    id: str
    names: tuple[str, ...]
    config: AnalogyConfig
    save_levels: bool
    folder: Path
    inputs: tuple[np.ndarray, Any] | None
    regions: Regions | None = None
    region_names: tuple[str | None, tuple[str, ...]] | None = None
    state: str = "queued"
    error: str | None = None
    notices: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    progress: dict[str, Any] | None = None
    previews: dict[int, dict[str, bytes]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    cancelling: threading.Event = field(default_factory=threading.Event)

    @property
    def out(self) -> Path:
        return self.folder / "out"

    def named(self) -> dict[str, Any]:
        """The inputs' names as run.json's ``inputs`` has them: ``b_prime`` a list for several
        exemplars; ``regions_a`` and ``regions_b`` (a list) when masks were given."""
        several = len(self.names) > 2
        names: dict[str, Any] = {"a": self.names[0],
                                 "b_prime": list(self.names[1:]) if several else self.names[1]}
        if self.region_names is not None:
            names.update(regions_a=self.region_names[0], regions_b=list(self.region_names[1]))
        return names

    def summary(self, position: int | None = None) -> dict[str, Any]:
        """The job as the HTTP API shows it (``position``: its place in the queue, 0 = next)."""
        return {"id": self.id, "state": self.state, "position": position,
                "names": self.named(),
                "settings": {k: v for k, v in self.config.to_dict().items()
                             if k != "weights"},
                "save_levels": self.save_levels, "created": self.created,
                "started": self.started, "finished": self.finished,
                "cancelling": self.cancelling.is_set() and self.state == "running",
                "progress": self.progress, "levels": sorted(self.previews, reverse=True),
                "files": self.files, "error": self.error, "notices": self.notices}


class JobQueue:
    """Jobs waiting, the one running, and those finished, with a worker thread that runs them.

    Parameters
    ----------
    model : gpuanalogy.features.VGG19
        The network every job runs with, loaded once.
    keep_seconds : float
        How long a finished job's files and previews stay.
    max_queued : int
        Jobs that may wait at once; :meth:`submit` refuses more (:class:`QueueFull`).
    max_kept : int
        Finished jobs kept at most; the oldest go first when there are more.
    """

    def __init__(self, model: Any, *, keep_seconds: float = 3600.0, max_queued: int = 8,
                 max_kept: int = 32) -> None:
        self.model = model
        self.keep_seconds = keep_seconds
        self.max_queued = max_queued
        self.max_kept = max_kept
        self.root = Path(tempfile.mkdtemp(prefix="gpuanalogy-serve-"))
        self.closing = False
        self._jobs: dict[str, Job] = {}
        self._waiting: deque[Job] = deque()
        self._lock = threading.Condition()
        self._thread = threading.Thread(target=self._work, name="gpuanalogy-jobs", daemon=True)

    # The HTTP side ---------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Cancel what runs and waits, stop the worker, remove every job's folder."""
        with self._lock:
            self.closing = True
            while self._waiting:
                self._finish(self._waiting.popleft(), "cancelled")
            for job in self._jobs.values():
                job.cancelling.set()
            self._lock.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        shutil.rmtree(self.root, ignore_errors=True)

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh folder for one request's uploads (named here, never by the request),
        removed on exit."""
        folder = Path(tempfile.mkdtemp(prefix="upload-", dir=self.root))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def check_room(self) -> None:
        """Raise :class:`QueueFull` when no job can be added now."""
        with self._lock:
            if len(self._waiting) >= self.max_queued:
                raise QueueFull(f"{len(self._waiting)} jobs are waiting, the most this server "
                                f"takes (--max-queue {self.max_queued}); try again later")

    def submit(self, a: np.ndarray, b_prime: np.ndarray | list[np.ndarray],
               config: AnalogyConfig, *, names: tuple[str, ...],
               regions: Regions | None = None, save_levels: bool = False,
               notices: list[str] | None = None) -> Job:
        """Queue the analogy of ``a`` and ``b_prime`` (H x W x 3 uint8, or a list of
        exemplars) with any region masks; returns the job."""
        with self._lock:
            self.check_room()
            job_id = secrets.token_hex(8)
            folder = self.root / job_id
            folder.mkdir()
            job = Job(job_id, names, config, save_levels, folder, (a, b_prime), regions,
                      None if regions is None else regions.files, notices=list(notices or []))
            self._jobs[job_id] = job
            self._waiting.append(job)
            self._emit(job, "state", {"state": "queued", "position": len(self._waiting) - 1})
            self._lock.notify_all()
        return job

    def get(self, job_id: str) -> Job:
        """The job with this id; KeyError when there is none (never was, or expired)."""
        with self._lock:
            return self._jobs[job_id]

    def jobs(self) -> list[dict[str, Any]]:
        """Every job the server holds, in submission order, as :meth:`Job.summary` shows it."""
        with self._lock:
            positions = {job.id: i for i, job in enumerate(self._waiting)}
            return [job.summary(positions.get(job.id)) for job in self._jobs.values()]

    def summary(self, job: Job) -> dict[str, Any]:
        with self._lock:
            position = next((i for i, j in enumerate(self._waiting) if j is job), None)
            return job.summary(position)

    def cancel(self, job_id: str) -> Job:
        """Cancel a job: a waiting one at once, a running one at its next stage or level.

        Raises KeyError for an unknown job and :class:`JobFinished` for one that has ended.
        """
        with self._lock:
            job = self._jobs[job_id]
            if job.state in FINISHED:
                raise JobFinished(f"job {job_id} has already ended ({job.state})")
            job.cancelling.set()
            if job.state == "queued":
                self._waiting.remove(job)
                self._finish(job, "cancelled")
            else:
                self._emit(job, "notice", {"text": "cancelling: the job stops at its next "
                                                   "stage"})
            return job

    # The worker ------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self.closing:
                    self._expire()
                    self._lock.wait(timeout=min(self.keep_seconds, 60.0))
                if self.closing:
                    return
                job = self._waiting.popleft()
                job.state, job.started = "running", time.time()
                self._emit(job, "state", {"state": "running", "position": None})
            self._run(job)
            with self._lock:
                self._expire()

    def _run(self, job: Job) -> None:
        a, b_prime = job.inputs  # type: ignore[misc]
        clock = time.perf_counter()

        def on_progress(progress: Any) -> None:
            if job.cancelling.is_set():
                raise JobCancelled
            elapsed = time.perf_counter() - clock
            job.progress = {"stage": progress.stage, "level": progress.level,
                            "done": progress.done, "total": progress.total,
                            "elapsed": round(elapsed, 2),
                            "eta": _eta(elapsed, progress.done, progress.total)}
            self._emit(job, "progress", job.progress)

        def on_level(level: int, a_prime: np.ndarray, b: np.ndarray) -> None:
            job.previews[level] = {"a_prime": png_bytes(a_prime), "b": png_bytes(b)}
            self._emit(job, "level", {"level": level})
            if job.cancelling.is_set():
                raise JobCancelled

        def on_notice(text: str) -> None:
            job.notices.append(text)
            self._emit(job, "notice", {"text": text})

        record: dict[str, Any] = {}
        try:
            computed = compute_pair(a, b_prime, job.config, names=job.names,
                                    regions=job.regions, model=self.model,
                                    save_levels=job.save_levels, on_progress=on_progress,
                                    on_notice=on_notice, on_level=on_level)
            if job.cancelling.is_set():
                raise JobCancelled
            write_into_place(job.folder, "out", lambda partial: record.update(
                write_pair(partial, computed, a, b_prime, job.config)))
            job.files = record["files"] + ["run.json"]
            state = "done"
        except JobCancelled:
            state = "cancelled"
        except GpuAnalogyError as error:
            state, job.error = "failed", error_reason(error)
        except OSError as error:
            state, job.error = "failed", f"cannot write the job's files: {error_reason(error)}"
        except Exception as error:  # noqa: BLE001 - one job's bug must not stop the server
            traceback.print_exc(file=sys.stderr)
            state = "failed"
            job.error = (f"internal error: {type(error).__name__}: "
                         f"{printable(error_reason(error))}")
        with self._lock:
            self._finish(job, state)

    def _finish(self, job: Job, state: str) -> None:
        """End ``job`` as ``state`` (holding the lock); only a done job keeps its folder."""
        job.state, job.finished, job.inputs, job.regions = state, time.time(), None, None
        if state != "done":
            shutil.rmtree(job.folder, ignore_errors=True)
        data: dict[str, Any] = {"state": state, "position": None}
        if state == "done":
            data["files"] = job.files
            data["seconds"] = round(job.finished - (job.started or job.finished), 2)
        if job.error:
            data["error"] = job.error
        self._emit(job, "state", data)

    def _expire(self) -> None:
        """Forget finished jobs older than ``keep_seconds``, and the oldest beyond ``max_kept``
        (holding the lock)."""
        now = time.time()
        finished = [job for job in self._jobs.values() if job.state in FINISHED]
        extra = len(finished) - self.max_kept
        for index, job in enumerate(finished):
            if index < extra or now - (job.finished or now) > self.keep_seconds:
                shutil.rmtree(job.folder, ignore_errors=True)
                del self._jobs[job.id]

    def _emit(self, job: Job, kind: str, data: dict[str, Any]) -> None:
        with self._lock:   # re-entrant: the worker and the HTTP side both emit
            job.events.append({"id": len(job.events) + 1, "event": kind, "data": data})


def _eta(elapsed: float, done: int, total: int) -> float | None:
    """Seconds left, at the mean pace of the steps done so far (None before the first)."""
    if done <= 0:
        return None
    return round(elapsed / done * max(total - done, 0), 1)


def png_bytes(image: np.ndarray) -> bytes:
    """An H x W x 3 uint8 image as PNG bytes (fast compression: previews, not files)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
