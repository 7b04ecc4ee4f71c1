"""Seconds per stage and progress reports of one run: what :mod:`gpuanalogy.pipeline` and
:mod:`gpuanalogy.video` time and announce."""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .backend import Backend

__all__ = ["Progress", "Clock", "StepReporter"]


@dataclass(frozen=True)
class Progress:
    """One step of the run, for progress displays: ``done`` of ``total`` steps are finished."""

    stage: str
    level: int
    done: int
    total: int


class Clock:
    """Seconds per stage, with device work finished before each reading."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self.backend.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.backend.synchronize()
            self.seconds[stage] += time.perf_counter() - start

    def timed(self, stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function``, its calls counted under ``stage``."""
        def call(*args: Any) -> Any:
            with self(stage):
                return function(*args)
        return call


class StepReporter:
    """Counts stages and reports them to an optional progress callback."""

    def __init__(self, callback: Callable[[Progress], None] | None, total: int) -> None:
        self.callback, self.total, self.done = callback, total, 0

    def __call__(self, stage: str, level: int) -> None:
        if self.callback is not None:
            self.callback(Progress(stage, level, self.done, self.total))
        self.done += 1
