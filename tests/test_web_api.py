"""The HTTP API of ``gpuanalogy serve``, with an HTTP client against the real server on
127.0.0.1 (uvicorn in a process of its own, started here)."""
from __future__ import annotations

import io
import struct
import time
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

httpx = pytest.importorskip("httpx", reason="httpx is missing: pip install -e '.[test]'")
pytest.importorskip("starlette", reason="the web extra is missing: pip install -e '.[web]'")

from gpuanalogy.app.main import main  # noqa: E402
from gpuanalogy.app.options import OPTIONS  # noqa: E402
from web_server import QUICK, events, picture, serving, truncated  # noqa: E402

MAX_BYTES = 200_000          # --max-upload-mb 200000 / 2**20
MAX_PIXELS = 100_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with serving(log, "--max-upload-mb", str(MAX_BYTES / 2**20), "--max-pixels",
                 str(MAX_PIXELS)) as running:
        yield running
    assert not running.root.exists(), "the jobs' folder outlived the server"


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    return picture(folder / "a.png", 0), picture(folder / "b.png", 1)


def submit(client, a, b_prime, **settings):
    files = {"a": (a.name, a.read_bytes(), "image/png"),
             "b_prime": (b_prime.name, b_prime.read_bytes(), "image/png")}
    return client.post("/api/jobs", files=files, data={**QUICK, **settings})


def wait(client, job_id, seconds=300):
    deadline = time.monotonic() + seconds
    while (job := client.get(f"/api/jobs/{job_id}").json())["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    return job


def test_the_options_are_the_tables_per_pair_settings(client):
    document = client.get("/api/options").json()
    assert [o["name"] for o in document["options"]] == [o.name for o in OPTIONS
                                                         if o.csv and not o.inputs]
    assert {"transfer", "field_format"} <= {o["name"] for o in document["options"]}
    assert "flo" in next(o for o in document["options"]
                         if o["name"] == "field_format")["choices"]
    files = {f["name"]: (f["multiple"], f["required"]) for f in document["files"]}
    assert files == {"a": (False, True), "b_prime": (True, True), "regions_a": (False, False),
                     "regions_b": (True, False)}
    assert [f for f in files if f not in ("a", "b_prime")] == [o.name for o in OPTIONS
                                                                if o.inputs]
    assert document["presets"]["style2photo"]["refine"] is True
    assert document["limits"] == {"max_upload_bytes": MAX_BYTES, "max_pixels": MAX_PIXELS,
                                  "max_queued": 8, "keep_seconds": 3600.0, "max_exemplars": 8}


def test_a_jobs_files_equal_runs_byte_for_byte(client, images, tmp_path):
    settings = {"preset": "photo2photo", "save_levels": "true"}
    reply = submit(client, *images, **settings)
    assert reply.status_code == 201, reply.text
    job = reply.json()
    seen = list(events(client, job["id"]))
    kinds = [kind for kind, _ in seen]
    assert kinds[0] == "state" and seen[-1] == ("state", seen[-1][1])
    assert seen[-1][1]["state"] == "done", seen[-1]
    assert [data["level"] for kind, data in seen if kind == "level"] == [5, 4, 3, 2, 1]
    progress = [data for kind, data in seen if kind == "progress"]
    assert [p["done"] for p in progress] == sorted(p["done"] for p in progress)
    assert all(p["eta"] is None or p["eta"] >= 0 for p in progress)
    preview = client.get(f"/api/jobs/{job['id']}/levels/3/a_prime.png")
    assert preview.status_code == 200 and preview.content.startswith(b"\x89PNG")

    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/api/jobs/{job['id']}/zip").content))
    files = seen[-1][1]["files"]
    assert sorted(archive.namelist()) == sorted(files)
    assert client.get(f"/api/jobs/{job['id']}/files/a_prime.png").content == \
        archive.read("a_prime.png")

    out = tmp_path / "run"
    assert main(["run", str(images[0]), str(images[1]), "-o", str(out), "--preset",
                 "photo2photo", "--ratio", QUICK["ratio"], "--iters", QUICK["iters"],
                 "--lbfgs-iters", QUICK["lbfgs_iters"], "--save-levels",
                 "--device", "cpu"]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(files)
    for name in written:
        if name != "run.json":
            assert archive.read(name) == (out / name).read_bytes(), name
    import json
    record, ours = json.loads((out / "run.json").read_text()), json.loads(
        archive.read("run.json"))
    assert ours["config"] == record["config"] and ours["files"] == record["files"]
    assert ours["inputs"] == {"a": "a.png", "b_prime": "b.png"}


def _labels(path, shape):
    """Labels 1 | 2, left and right halves, as a greyscale PNG."""
    ids = np.full(shape, 1, np.uint8)
    ids[:, shape[1] // 2:] = 2
    Image.fromarray(ids).save(path)
    return path


def test_two_exemplars_region_files_transfer_and_flo_as_run_makes_them(client, tmp_path):
    """Several B' files, region masks, --transfer and .flo fields through the API: the
    job's files equal ``run``'s byte for byte."""
    a, b1, b2 = (picture(tmp_path / f"{n}.png", i) for i, n in enumerate(("a", "b1", "b2")))
    ra, rb = _labels(tmp_path / "ra.png", (48, 64)), _labels(tmp_path / "rb.png", (48, 64))
    files = [("a", (a.name, a.read_bytes())), ("b_prime", (b1.name, b1.read_bytes())),
             ("b_prime", (b2.name, b2.read_bytes())), ("regions_a", (ra.name, ra.read_bytes())),
             ("regions_b", (rb.name, rb.read_bytes())), ("regions_b", ("rb2.png", rb.read_bytes()))]
    settings = {**QUICK, "transfer": "colour", "field_format": "flo"}
    reply = client.post("/api/jobs", files=files, data=settings)
    assert reply.status_code == 201, reply.text
    job = wait(client, reply.json()["id"])
    assert job["state"] == "done", job
    assert job["names"] == {"a": "a.png", "b_prime": ["b1.png", "b2.png"],
                            "regions_a": "ra.png", "regions_b": ["rb.png", "rb2.png"]}
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/api/jobs/{job['id']}/zip").content))
    assert {"b_1.png", "b_2.png", "nnf_ab.flo", "nnf_ba_2.flo",
            "nnf_ab_exemplar.npy"} <= set(archive.namelist())

    out = tmp_path / "run"
    assert main(["run", str(a), str(b1), str(b2), "-o", str(out), "--regions-a", str(ra),
                 "--regions-b", str(rb), str(rb), "--transfer", "colour", "--field-format",
                 "flo", *(f"--{k.replace('_', '-')}={v}" for k, v in QUICK.items()),
                 "--device", "cpu"]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(archive.namelist())
    for name in written:
        if name != "run.json":
            assert archive.read(name) == (out / name).read_bytes(), name

    too_few = client.post("/api/jobs", files=files[:-1], data=QUICK)
    assert too_few.status_code == 400
    assert too_few.json()["error"].startswith("--regions-b names 1 label images for 2")
    as_text = client.post("/api/jobs", files=files[:3], data={**QUICK, "regions_a": "r.png"})
    assert as_text.status_code == 400 and "takes files, not text" in as_text.json()["error"]
    many = client.post("/api/jobs", files=files[:1] + files[1:2] * 9, data=QUICK)
    assert many.status_code == 400 and "at most 8" in many.json()["error"]


def test_an_upload_over_the_byte_limit_is_refused_as_it_comes(client, images):
    big = b"\0" * (MAX_BYTES + 1)
    declared = client.post("/api/jobs", files={"a": ("a.png", big), "b_prime": ("b.png", big)})
    assert declared.status_code == 413
    assert declared.json()["error"].endswith(f"more than the limit of {MAX_BYTES:,} "
                                             f"(--max-upload-mb)")

    def chunks():   # no Content-Length: counted while received
        boundary = b"--x\r\nContent-Disposition: form-data; name=\"a\"; filename=\"a.png\"\r\n\r\n"
        yield boundary
        for _ in range(MAX_BYTES // 10_000 + 2):
            yield b"\0" * 10_000

    streamed = client.post("/api/jobs", content=chunks(),
                           headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert streamed.status_code == 413 and "more than the limit" in streamed.json()["error"]
    assert client.get("/api/options").status_code == 200   # the server is fine


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` and then ends in a few bytes of data:
    decoding it would fail as truncated, so refusing it for its size shows the size was
    checked before any decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_too_many_pixels_are_refused_before_decoding(client, images):
    bomb = _png_header_only(4_000, 4_000)
    assert len(bomb) < 200
    reply = client.post("/api/jobs", files={"a": ("bomb.png", bomb),
                                            "b_prime": ("b.png", images[1].read_bytes())})
    assert reply.status_code == 400
    assert reply.json()["error"] == (
        "bomb.png: 4000x4000 is 16,000,000 pixels, more than the limit of "
        f"{MAX_PIXELS:,} (max_pixels); downscale the image first")
    huge = _png_header_only(40_000, 40_000)   # beyond Pillow's own guard, which speaks first
    reply = client.post("/api/jobs", files={"a": ("huge.png", huge),
                                            "b_prime": ("b.png", images[1].read_bytes())})
    assert reply.status_code == 400
    assert reply.json()["error"].startswith("huge.png: image is too large to decode safely")


def test_bad_input_gets_the_command_lines_one_line_reason(client, images, tmp_path, capsys):
    cut = truncated(tmp_path / "cut.png", picture(tmp_path / "noisy.png", 7, (96, 128)))
    reply = client.post("/api/jobs", files={"a": ("cut.png", cut.read_bytes()),
                                            "b_prime": ("b.png", images[1].read_bytes())})
    assert reply.status_code == 400
    assert main(["run", str(cut), str(images[1]), "-o", str(tmp_path / "out")]) == 2
    said = capsys.readouterr().err.strip().replace("gpuanalogy: error: ", "")
    assert reply.json()["error"] == said.replace(str(cut), "cut.png")
    assert "\n" not in said and "truncated" in said

    for data, says in [({"blend": "7"}, "blend=7 is not supported. Try 1, 2 or 3."),
                       ({"ratio": "abc"}, "form: ratio='abc' is not a number"),
                       ({"preset": "oil"}, "preset 'oil' is unknown"),
                       ({"colour": "1"}, "unknown field 'colour'")]:
        reply = submit(client, *images, **data)
        assert reply.status_code == 400 and says in reply.json()["error"], reply.text
    reply = client.post("/api/jobs", files={"a": ("a.png", images[0].read_bytes())})
    assert reply.status_code == 400 and "no b_prime image" in reply.json()["error"]


def test_two_jobs_queue_and_run_one_at_a_time(client, images):
    first = submit(client, *images).json()
    second = submit(client, *images, seed="1").json()
    third = submit(client, *images, seed="2").json()
    assert second["state"] == "queued" and second["position"] is not None
    listed = {job["id"]: job for job in client.get("/api/jobs").json()["jobs"]}
    assert listed[third["id"]]["position"] == listed[second["id"]]["position"] + 1

    cancelled = client.post(f"/api/jobs/{third['id']}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["state"] == "cancelled"
    done = [wait(client, job["id"]) for job in (first, second)]
    assert [job["state"] for job in done] == ["done", "done"]
    assert done[1]["started"] >= done[0]["finished"]
    again = client.post(f"/api/jobs/{third['id']}/cancel")
    assert again.status_code == 409 and "already ended" in again.json()["error"]
    assert client.get(f"/api/jobs/{third['id']}/zip").status_code == 409


def test_a_running_job_is_cancelled_and_its_folder_removed(client, images, server):
    job = submit(client, *images, lbfgs_iters="30").json()
    for kind, data in events(client, job["id"]):
        if kind == "progress":
            assert client.post(f"/api/jobs/{job['id']}/cancel").status_code == 202
            break
    assert wait(client, job["id"])["state"] == "cancelled"
    assert not (server.root / job["id"]).exists()


def test_no_request_names_a_file(client, images):
    job = submit(client, *images).json()
    wait(client, job["id"])
    for name in ("..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "a_prime.png.tmp",
                 "missing"):
        reply = client.get(f"/api/jobs/{job['id']}/files/{name}")
        assert reply.status_code == 404 and reply.json()["error"], name
    assert client.get("/api/jobs/nope").json()["error"].startswith("no job 'nope'")
    assert client.get("/page/..%2Fweb.py").status_code == 404
    assert client.get("/nowhere").status_code == 404
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers[
        "content-security-policy"]
    assert client.get("/page/page.js").status_code == 200


def test_listening_beyond_this_machine_is_announced(tmp_path):
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "gpuanalogy", "serve", "--host",
                                "0.0.0.0", "--port", "0", "--device", "cpu"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stderr.readline()
    finally:
        process.kill()
        process.wait()
        process.stderr.close()
    assert "WARNING: listening on 0.0.0.0: anyone who can reach this machine" in line
