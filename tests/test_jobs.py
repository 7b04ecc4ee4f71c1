"""The job queue of ``gpuanalogy serve`` on its own: order, refusal, cancellation, expiry."""
from __future__ import annotations

import time

import numpy as np
import pytest

from gpuanalogy.app.jobs import JobFinished, JobQueue, QueueFull
from gpuanalogy.config import AnalogyConfig

QUICK = AnalogyConfig(ratio=0.25, patchmatch_iterations=2, lbfgs_iterations=3, device="cpu")


def _pair():
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
            rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def model():
    from gpuanalogy.features import load_network

    return load_network(None, "cpu")


def _wait(queue, job, seconds=120):
    deadline = time.monotonic() + seconds
    while job.state in ("queued", "running"):
        assert time.monotonic() < deadline, job.summary()
        time.sleep(0.05)


def test_a_full_queue_refuses_and_a_waiting_job_cancels_at_once():
    queue = JobQueue(None, max_queued=1)   # no worker: the jobs stay queued
    try:
        job = queue.submit(*_pair(), QUICK, names=("a.png", "b.png"))
        assert job.folder.is_dir() and queue.summary(job)["position"] == 0
        with pytest.raises(QueueFull, match="--max-queue 1"):
            queue.submit(*_pair(), QUICK, names=("a.png", "b.png"))
        assert queue.cancel(job.id).state == "cancelled"
        assert not job.folder.exists() and job.inputs is None
        with pytest.raises(JobFinished):
            queue.cancel(job.id)
        with pytest.raises(KeyError):
            queue.get("0000")
        assert [e["data"]["state"] for e in job.events] == ["queued", "cancelled"]
    finally:
        queue.close()
    assert not queue.root.exists()


def test_a_finished_job_is_forgotten_after_its_time(model):
    queue = JobQueue(model, keep_seconds=1.0)
    queue.start()
    try:
        job = queue.submit(*_pair(), QUICK, names=("a.png", "b.png"))
        _wait(queue, job)
        assert job.state == "done", job.error
        assert (job.out / "a_prime.png").is_file() and job.files[-1] == "run.json"
        assert sorted(job.previews) == [1, 2, 3, 4, 5]
        deadline = time.monotonic() + 10
        while job.id in {j["id"] for j in queue.jobs()}:
            assert time.monotonic() < deadline, "the job was never forgotten"
            time.sleep(0.1)
        assert not job.folder.exists()
    finally:
        queue.close()


def test_closing_cancels_what_waits_and_removes_every_folder(model):
    queue = JobQueue(model)
    queue.start()
    first = queue.submit(*_pair(), QUICK, names=("a.png", "b.png"))
    second = queue.submit(*_pair(), QUICK, names=("a.png", "b.png"))
    queue.close(timeout=60)
    assert second.state == "cancelled"
    assert first.state in ("cancelled", "done", "failed")
    assert not queue.root.exists()
