"""``gpuanalogy batch`` on a Dask cluster: the same outputs as in process, a worker killed
mid-pair, TLS, and the method's errors coming back as values.

Each test starts its own LocalCluster of 2 worker processes (one thread each) and closes it;
the pairs are 48 x 48 with 2 PatchMatch and 3 L-BFGS iterations.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from gpuanalogy.app import pair as pair_module
from gpuanalogy.app.batch import run_pairs
from gpuanalogy.app.pair import PairResult
from gpuanalogy.app.cluster import compute_on_worker, run_batch_on
from gpuanalogy.app.main import main
from gpuanalogy.app.pairs import Pair
from gpuanalogy.app.progress import BatchProgress
from gpuanalogy.config import AnalogyConfig
from gpuanalogy.errors import InputError
from gpuanalogy.outputs import is_complete

from test_batch import FakeClock, QUICK, leftovers, picture, quiet, truncated, write_csv

distributed = pytest.importorskip("distributed")

CONFIG = AnalogyConfig(device="cpu", ratio=0.25, patchmatch_iterations=2, lbfgs_iterations=3)
COMPARED = ("a_prime.png", "b.png", "nnf_ab.npy", "nnf_ba.npy", "nnf_ab.png", "nnf_ba.png",
            "sheet.png")


def cluster(**options) -> "distributed.LocalCluster":
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                    dashboard_address=None, **options)


def make_pairs(folder: Path, count: int) -> list[Pair]:
    return [Pair(f"p{i}", picture(folder / f"a{i}.png", i, size=(48, 48)),
                 picture(folder / f"b{i}.png", 10 + i, size=(48, 48)), CONFIG.replace(seed=i))
            for i in range(count)]


def digests(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in COMPARED}


@pytest.mark.slow
def test_two_workers_write_what_the_batch_in_process_writes(tmp_path):
    pairs = make_pairs(tmp_path / "in", 3)
    pairs.append(Pair("broken", truncated(tmp_path / "in" / "broken.png"), pairs[0].b_prime,
                      CONFIG))
    here = run_pairs(pairs, tmp_path / "here", progress=quiet())
    with cluster() as local, distributed.Client(local) as client:
        there = run_batch_on(client, pairs, tmp_path / "there", progress=quiet())
    assert [r.status for r in there] == [r.status for r in here] == ["ok"] * 3 + ["failed"]
    assert there[3].bad_input and there[3].error == here[3].error
    for pair in pairs[:3]:
        assert digests(tmp_path / "there" / pair.name) == digests(tmp_path / "here" / pair.name)
    assert leftovers(tmp_path / "there") == []


@pytest.mark.slow
def test_a_worker_killed_mid_pair_loses_nothing(tmp_path, monkeypatch, capsys):
    for i in range(4):
        picture(tmp_path / f"a{i}.png", i, size=(48, 48))
        picture(tmp_path / f"b{i}.png", 10 + i, size=(48, 48))
    csv_path = write_csv(tmp_path / "pairs.csv", "a,b_prime\n" + "".join(
        f"a{i}.png,b{i}.png\n" for i in range(4)))
    out = tmp_path / "out"
    written = Counter()
    write_pair = pair_module.write_pair

    def counted(folder, computed, *args):
        written[computed.extra["inputs"]["a"]] += 1
        return write_pair(folder, computed, *args)

    monkeypatch.setattr(pair_module, "write_pair", counted)
    killed: list[int] = []
    with cluster() as local, distributed.Client(local) as client:
        def kill_a_busy_worker() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                busy = [w for w, keys in client.processing().items() if keys]
                if busy:
                    pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_a_busy_worker)
        killer.start()
        code = main(["batch", str(csv_path), "-o", str(out), *QUICK,
                     "--scheduler", local.scheduler_address])
        killer.join()
    assert killed, "no worker was seen holding a pair"
    assert code == 0, capsys.readouterr().err
    names = [f"a{i}" for i in range(4)]
    assert all(is_complete(out / name) for name in names)
    assert sorted(p.name for p in out.iterdir()) == sorted(names + ["summary.json"])
    assert sorted(written.values()) == [1] * 4
    summary = json.loads((out / "summary.json").read_text())
    assert [e["status"] for e in summary["results"]] == ["ok"] * 4
    assert leftovers(out) == []


@pytest.mark.slow
def test_over_tls_with_temporary_certificates(tmp_path):
    pytest.importorskip("cryptography")
    security = distributed.security.Security.temporary()
    pairs = make_pairs(tmp_path / "in", 2)
    with cluster(security=security) as local, \
            distributed.Client(local, security=security) as client:
        assert local.scheduler_address.startswith("tls://")
        results = run_batch_on(client, pairs, tmp_path / "out", progress=quiet())
    assert [r.status for r in results] == ["ok", "ok"]
    assert all(is_complete(tmp_path / "out" / p.name) for p in pairs)


def test_the_methods_error_comes_back_as_a_value_so_dask_never_retries_it():
    image = np.full((40, 40, 3), 0.5, np.float32)
    broken = image.copy()
    broken[3, 4] = np.nan
    sent = compute_on_worker(broken, image, CONFIG, ("a.png", "b.png"), False)
    assert sent.pair is None and isinstance(sent.error, InputError)
    assert "NaN" in str(sent.error)


def test_workers_gpus_without_dask_cuda_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "dask_cuda", None)   # import dask_cuda fails
    csv_path = write_csv(tmp_path / "pairs.csv", "a,b_prime\na.png,b.png\n")
    assert main(["batch", str(csv_path), "-o", str(tmp_path / "out"), "--workers", "gpus"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == "gpuanalogy: error: this needs dask-cuda: pip install 'gpuanalogy[cuda]'"


def test_cluster_flags_are_checked_and_exclusive(tmp_path, capsys):
    for flags in (["--workers", "0"], ["--workers", "many"],
                  ["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"]):
        with pytest.raises(SystemExit) as exit_:
            main(["batch", str(tmp_path), "-o", str(tmp_path / "out"), *flags])
        assert exit_.value.code == 2
        assert capsys.readouterr().err.count("\n") == 1


def test_the_display_counts_pairs_done_in_flight_and_failed_with_an_eta_from_the_rate():
    stream, clock = io.StringIO(), FakeClock()
    display = BatchProgress(5, to_run=4, stream=stream, tty=False, clock=clock)
    display.start_pair(0, "old")
    display.end_pair(PairResult(Pair("old", Path("a"), Path("b"), CONFIG), "skipped"))
    display.in_flight(3)
    assert display.eta_seconds() is None
    clock.now += 10
    for index, status in ((1, "ok"), (2, "failed")):
        display.start_pair(index, f"p{index}")
        display.end_pair(PairResult(Pair(f"p{index}", Path("a"), Path("b"), CONFIG), status))
    display.in_flight(2)
    assert display.eta_seconds() == pytest.approx(10 / 2 * 2)   # 2 of 4 ran in 10 s
    assert stream.getvalue().splitlines()[-1] == (
        "[3/5] 1 ok, 1 skipped, 1 failed | 2 in flight | ETA 0:10")
