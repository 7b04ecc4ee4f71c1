"""``batch``'s cluster options, hostile or mistaken: one line naming the address (or the file, or
the flag) and what failed, exit status 2, no output folder, within ``--connect-timeout``.

The command-line cases run as subprocesses, their peak memory measured (``--workers 99999``
once grew to 5.3 GB before a word was printed); the timing and the servers that are not Dask
schedulers are checked in process on :func:`gpuanalogy.app.client.open_client`.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from gpuanalogy.app import client
from gpuanalogy.app.client import open_client
from gpuanalogy.app.options import CLUSTER_OPTIONS, CONNECT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT
from gpuanalogy.errors import ClusterError, InputError
from processes import run_measured
from test_batch import picture, write_csv
from test_options import README

pytest.importorskip("distributed")

GiB = 1 << 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def batch(tmp_path):
    """Run ``batch`` on one pair with the given flags: (how it ended, the output folder)."""
    picture(tmp_path / "a.png", 1)
    picture(tmp_path / "b.png", 2)
    csv_path = write_csv(tmp_path / "pairs.csv", "a,b_prime\na.png,b.png\n")
    out = tmp_path / "out"

    def run(*flags: str):
        return run_measured(["batch", str(csv_path), "-o", str(out), "--device", "cpu", *flags],
                            seconds=120), out
    return run


def files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "folder").mkdir()
    (tmp_path / "nonsense.json").write_text("not json at all")
    (tmp_path / "empty.json").write_text(json.dumps({"type": "Scheduler"}))
    (tmp_path / "port.json").write_text(json.dumps({"address": "tcp://127.0.0.1:notaport"}))
    refused = free_port()
    (tmp_path / "refused.json").write_text(json.dumps({"address": f"tcp://127.0.0.1:{refused}"}))
    return {"refused": str(refused)}


CASES = [
    (["--scheduler", "foo://somewhere:1"], "foo://somewhere:1: not a Dask scheduler address "
     "(unknown address scheme 'foo'"),
    (["--scheduler", "tcp://127.0.0.1"], "tcp://127.0.0.1: not a Dask scheduler address "
     "(missing port number"),
    (["--scheduler", "tcp://127.0.0.1:99999"], "tcp://127.0.0.1:99999: port 99999 is out of range"),
    (["--scheduler", "tcp://no-such-host.invalid:8786"],
     "tcp://no-such-host.invalid:8786: cannot resolve the host 'no-such-host.invalid'"),
    (["--scheduler", "tcp://127.0.0.1:{refused}", "--connect-timeout", "2"],
     "tcp://127.0.0.1:{refused}: no Dask scheduler answered within 2 s (connection refused: "
     "nothing listens there)"),
    (["--scheduler-file", "{tmp}/missing.json"], "{tmp}/missing.json: no such scheduler file"),
    (["--scheduler-file", "{tmp}/folder"], "{tmp}/folder: is a folder, not a scheduler file"),
    (["--scheduler-file", "{tmp}/nonsense.json"], "{tmp}/nonsense.json: not a Dask scheduler "
     "file (not JSON"),
    (["--scheduler-file", "{tmp}/empty.json"], "{tmp}/empty.json: not a Dask scheduler file "
     "(no \"address\" in it)"),
    (["--scheduler-file", "{tmp}/port.json"], "{tmp}/port.json: scheduler "
     "tcp://127.0.0.1:notaport: not a Dask scheduler address"),
    (["--scheduler-file", "{tmp}/refused.json", "--connect-timeout", "2"],
     "{tmp}/refused.json: scheduler tcp://127.0.0.1:{refused}: no Dask scheduler answered "
     "within 2 s (connection refused"),
    (["--workers", "99999"], "--workers 99999: this machine holds at most "),
    (["--scheduler", "tcp://127.0.0.1:1", "--connect-timeout", "0"],
     "--connect-timeout 0: not a positive number of seconds"),
]


@pytest.mark.slow
@pytest.mark.parametrize("flags, words", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_cluster_option_failures_are_one_line_exit_2_and_leave_no_folder(tmp_path, batch,
                                                                           flags, words):
    names = files(tmp_path) | {"tmp": str(tmp_path)}
    done, out = batch(*(flag.format(**names) for flag in flags))
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("gpuanalogy: error: " + words.format(**names)), done.stderr
    assert not out.exists()
    assert done.peak_rss_bytes < GiB, f"{done.peak_rss_bytes / 2**20:.0f} MiB"


def test_a_refused_address_fails_within_the_timeout():
    address = f"tcp://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(ClusterError, match=f"^{address}: no Dask scheduler answered within "
                                           r"1\.5 s \(connection refused"):
        with open_client(scheduler=address, connect_timeout=1.5):
            pass
    assert 1.4 < time.monotonic() - start < 3.0


@pytest.mark.parametrize("reply", [b"", b"HTTP/1.1 400 Bad Request\r\n\r\n"])
def test_a_server_that_is_no_dask_scheduler_fails_within_the_timeout(reply):
    """Something listens: it says nothing and hangs up, or answers in another protocol."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    start = time.monotonic()
    try:
        with pytest.raises(ClusterError, match=f"^tcp://127.0.0.1:{port}: no Dask scheduler "
                                               "answered within 2 s .a connection opened but Dask's handshake failed"):
            with open_client(scheduler=f"tcp://127.0.0.1:{port}", connect_timeout=2):
                pass
    finally:
        stop.set()
        thread.join()
        server.close()
    assert time.monotonic() - start < 2 + 1.5


def test_workers_are_refused_beyond_the_memory_for_their_networks(monkeypatch):
    monkeypatch.setattr(client, "available_bytes", lambda: client.PROCESS_BYTES + 1)
    with pytest.raises(InputError, match=r"^--workers 2: this machine holds at most 1 \(\d+ "
                                         r"cores, .* free at about .* a worker\); use "
                                         r"--workers 1 or fewer$"):
        with open_client(workers=2):
            pass
    monkeypatch.setattr(client, "available_bytes", lambda: client.PROCESS_BYTES // 2)
    with pytest.raises(InputError, match="at most 0 .*; run the batch in process$"):
        with open_client(workers=1):
            pass


def test_the_cluster_options_are_a_table_the_readme_lists():
    text = README.read_text(encoding="utf-8")
    for option in (*CLUSTER_OPTIONS, CONNECT_TIMEOUT):
        assert option.flag in text, option.flag
        assert not option.csv and not option.changes_images and option.field is None
    assert f"default {DEFAULT_CONNECT_TIMEOUT:g}" in CONNECT_TIMEOUT.help
