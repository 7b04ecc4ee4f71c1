"""Seconds per stage and progress reports of one run: what :mod:`gpuanalogy.pipeline` and
:mod:`gpuanalogy.video` time and announce."""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
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
    """Reports a run's stages, as its plan lists them, to an optional progress callback.

    ``stages`` is the plan: every (stage, level) the run reports, in order; its length is the
    total the displays show. A stage reported out of the plan is a bug of the package
    (``ValueError``), so the plan and the reports cannot drift apart.
    """

    def __init__(self, callback: Callable[[Progress], None] | None,
                 stages: Sequence[tuple[str, int]]) -> None:
        self.callback, self.stages, self.done = callback, tuple(stages), 0

    @property
    def total(self) -> int:
        return len(self.stages)

    def __call__(self, stage: str, level: int) -> None:
        planned = self.stages[self.done] if self.done < self.total else None
        if planned != (stage, level):
            raise ValueError(f"stage {stage!r} at level {level} reported where the plan has "
                             f"{planned} (step {self.done + 1} of {self.stages})")
        if self.callback is not None:
            self.callback(Progress(stage, level, self.done, self.total))
        self.done += 1
