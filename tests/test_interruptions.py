"""SIGTERM stops every command as SIGINT does; a run that wrote nothing leaves no folder; notices
are one plain line.

Through the real command line in a subprocess: the signal arrives mid-run (once the progress
shows a pair or a frame under way), and the test checks the exit status (143, 130 for SIGINT),
the one message line, that no partial folder or temporary file is left and a finished pair or
frame is kept, and the process's peak memory. With a Dask scheduler the test holds, it also
checks that the interrupted batch left no task on it (the client cancelled its futures).
"""
from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gpuanalogy.app.main import main
from gpuanalogy.outputs import is_complete
from processes import signal_when
from test_batch import QUICK, leftovers, picture, write_csv
from test_video_cli import exemplar, write_clip

GiB = 1 << 30
#: A 64 x 64 pair at QUICK settings peaks near 0.7 GiB (docs/performance.md); a signal must not
#: make it grow.
RUN_MEMORY = 2 * GiB


def last_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    return stderr.strip().splitlines()[-1]


def pairs_csv(folder: Path, count: int) -> Path:
    """A batch CSV of ``count`` pairs of 64 x 64 pictures, named a0, a1, ..."""
    for i in range(count):
        picture(folder / f"a{i}.png", i)
        picture(folder / f"b{i}.png", 10 + i)
    return write_csv(folder / "pairs.csv", "a,b_prime\n" + "".join(
        f"a{i}.png,b{i}.png\n" for i in range(count)))


def no_hidden_files(out: Path) -> None:
    assert leftovers(out) == [] and not [p for p in out.rglob(".*")], sorted(out.rglob(".*"))


@pytest.mark.slow
@pytest.mark.parametrize("signum, status, words", [
    (signal.SIGTERM, 143, "gpuanalogy: terminated (SIGTERM)"),
    (signal.SIGINT, 130, "gpuanalogy: interrupted"),
])
def test_run_stopped_mid_pair_leaves_no_folder(tmp_path, signum, status, words):
    a, b = picture(tmp_path / "a.png", 1), picture(tmp_path / "b.png", 2)
    out = tmp_path / "new" / "out"
    done = signal_when(["run", str(a), str(b), "-o", str(out), *QUICK],
                       lambda log: "level 4" in log, signum=signum, seconds=300)
    assert done.signalled, done.stderr
    assert done.returncode == status, done.stderr
    assert last_line(done.stderr) == words
    assert not (tmp_path / "new").exists()   # the parent it made goes too
    assert done.peak_rss_bytes < RUN_MEMORY


@pytest.mark.slow
def test_batch_terminated_keeps_finished_pairs_and_removes_the_partial_one(tmp_path):
    csv_path = pairs_csv(tmp_path, 3)
    out = tmp_path / "out"
    done = signal_when(["batch", str(csv_path), "-o", str(out), *QUICK],
                       lambda _log: is_complete(out / "a0") and (out / ".a1.partial").is_dir(),
                       seconds=300)
    assert done.signalled, done.stderr
    assert done.returncode == 143, done.stderr
    assert last_line(done.stderr) == "gpuanalogy: terminated (SIGTERM)"
    assert is_complete(out / "a0") and not (out / "a1").exists()
    assert sorted(p.name for p in out.iterdir()) == ["a0", "summary.json"]
    no_hidden_files(out)
    assert done.peak_rss_bytes < RUN_MEMORY


@pytest.mark.slow
def test_video_terminated_keeps_finished_frames(tmp_path):
    write_clip(tmp_path / "clip", 4)
    out = tmp_path / "out"
    done = signal_when(["video", str(tmp_path / "clip"), str(exemplar(tmp_path / "bp.png")),
                        "-o", str(out), *QUICK],
                       lambda _log: (out / "fields" / "f000.json").exists(), seconds=600)
    assert done.signalled, done.stderr
    assert done.returncode == 143, done.stderr
    assert last_line(done.stderr) == "gpuanalogy: terminated (SIGTERM)"
    assert (out / "frames" / "f000.png").is_file()
    assert not (out / "fields" / "f003.json").exists()
    no_hidden_files(out)
    assert done.peak_rss_bytes < RUN_MEMORY


@pytest.mark.slow
def test_a_batch_on_a_cluster_terminated_cancels_what_it_sent(tmp_path):
    """The scheduler is the test's: after SIGTERM to the client it holds no task of the batch."""
    distributed = pytest.importorskip("distributed")
    csv_path = pairs_csv(tmp_path, 4)
    out = tmp_path / "out"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as watcher:
        def tasks() -> int:
            return watcher.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))

        done = signal_when(["batch", str(csv_path), "-o", str(out), "--scheduler",
                            cluster.scheduler_address, *QUICK],
                           lambda _log: tasks() >= 2, seconds=300)
        assert done.signalled, done.stderr
        deadline = time.monotonic() + 30
        while tasks() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tasks() == 0
    assert done.returncode == 143, done.stderr
    assert last_line(done.stderr) == "gpuanalogy: terminated (SIGTERM)"
    no_hidden_files(out)


@pytest.mark.slow
def test_batch_with_local_workers_terminated_stops_them(tmp_path):
    psutil = pytest.importorskip("psutil")
    csv_path = pairs_csv(tmp_path, 3)
    out = tmp_path / "out"
    test = psutil.Process(os.getpid())
    before = {p.pid for p in test.children(recursive=True)}   # the test's own helpers
    children: set[int] = set()

    def workers_busy(log: str) -> bool:
        children.update(p.pid for p in test.children(recursive=True) if p.pid not in before)
        return "in flight" in log

    done = signal_when(["batch", str(csv_path), "-o", str(out), "--workers", "1", *QUICK],
                       workers_busy, seconds=300)
    assert done.signalled, done.stderr
    assert done.returncode == 143, done.stderr
    assert last_line(done.stderr) == "gpuanalogy: terminated (SIGTERM)"
    assert not re.search(r"WARNING|CancelledError", done.stderr), done.stderr
    no_hidden_files(out)

    def alive() -> list[str]:
        found = []
        for pid in children:
            try:
                process = psutil.Process(pid)
                if process.status() != psutil.STATUS_ZOMBIE:
                    found.append(" ".join(process.cmdline())[:120])
            except psutil.NoSuchProcess:
                pass
        return found

    deadline = time.monotonic() + 10
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert children and alive() == []


# --- a run that wrote nothing leaves no folder; notices are one plain line --------------------


def rgba(path: Path) -> Path:
    pixels = np.full((64, 64, 4), 200, np.uint8)
    pixels[:16, :16, 3] = 0   # a transparent corner
    Image.fromarray(pixels, "RGBA").save(path)
    return path


def test_a_notice_is_one_plain_line_and_a_failed_run_leaves_no_folder(tmp_path, capsys):
    """The image's notice comes first; then the weights are refused, and the folder the run
    had made goes again."""
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"PK\x03\x04 not a zip")
    image = rgba(tmp_path / "clear.png")
    out = tmp_path / "out"
    assert main(["run", str(image), str(image), "-o", str(out), "--weights", str(bad),
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"gpuanalogy: notice: {image}: alpha channel composited over white"
    assert err[-1].startswith(f"gpuanalogy: error: {bad}: ")
    assert not any("Warning" in line or ".py:" in line for line in err), err
    assert not out.exists()


def test_an_animated_image_notice_is_one_plain_line(tmp_path, capsys):
    frames = [Image.new("RGB", (64, 64), (40 * i, 90, 160)) for i in range(3)]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    out = tmp_path / "out"
    assert main(["run", str(gif), str(gif), "-o", str(out), "--weights",
                 str(tmp_path / "absent.pth"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err.count(f"gpuanalogy: notice: {gif}: animated image, using its first frame") == 2
    assert not out.exists()


def test_a_batch_that_fails_before_any_pair_leaves_no_folder(tmp_path, capsys):
    picture(tmp_path / "a.png", 1)
    picture(tmp_path / "b.png", 2)
    csv_path = write_csv(tmp_path / "pairs.csv", "a,b_prime\na.png,b.png\n")
    out = tmp_path / "out"
    assert main(["batch", str(csv_path), "-o", str(out), "--weights",
                 str(tmp_path / "absent.pth"), "--device", "cpu"]) == 2
    assert last_line(capsys.readouterr().err).endswith("absent.pth: weights file not found")
    assert not out.exists()


def test_a_folder_the_user_had_stays(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    picture(tmp_path / "a.png", 1)
    assert main(["run", str(tmp_path / "a.png"), str(tmp_path / "a.png"), "-o", str(out),
                 "--weights", str(tmp_path / "absent.pth"), "--device", "cpu"]) == 2
    assert out.is_dir() and not any(out.iterdir())
