"""``gpuanalogy video``: folders and video files, a corrupt frame, resume after SIGKILL."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from processes import kill_when

from gpuanalogy.app.frames import open_clip, write_video
from gpuanalogy.app.main import main
from gpuanalogy.errors import InputError

QUICK = ["--ratio", "0.25", "--lbfgs-iters", "3", "--iters", "2", "--device", "cpu"]


def write_clip(folder: Path, count: int, size: int = 48) -> list[Path]:
    """``count`` frames of a smooth pattern drifting 2 pixels a frame."""
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size + 2 * count].astype(np.float32)
    world = np.stack([np.sin(xx / 5.0), np.cos(yy / 7.0), np.sin((xx + yy) / 9.0)], -1)
    world = ((world * 0.5 + 0.5) * 255).astype(np.uint8)
    paths = []
    for t in range(count):
        paths.append(folder / f"f{t:03d}.png")
        Image.fromarray(world[:, 2 * t:2 * t + size]).save(paths[-1])
    return paths


def exemplar(path: Path) -> Path:
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(path)
    return path


def snapshot(out: Path, name: str) -> dict[str, str]:
    files = [out / "frames" / f"{name}.png", *sorted((out / "fields").glob(f"{name}.*"))]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.mark.slow
def test_a_corrupt_frame_is_reported_by_name_and_the_others_are_written(tmp_path, capsys):
    frames = write_clip(tmp_path / "clip", 4)
    frames[2].write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out = tmp_path / "out"
    status = main(["video", str(tmp_path / "clip"), str(exemplar(tmp_path / "bp.png")),
                   "-o", str(out), *QUICK])
    assert status == 2
    err = capsys.readouterr().err
    assert "f002: FAILED:" in err and str(frames[2]) in err
    for name in ("f000", "f001", "f003"):
        assert (out / "frames" / f"{name}.png").is_file()
        assert np.load(out / "fields" / f"{name}.nnf_ab.npy").shape == (48, 48, 2)
    assert not (out / "frames" / "f002.png").exists()
    run = json.loads((out / "run.json").read_text())
    assert run["frames_failed"] == ["f002"] and run["frames_done"] == 3 and run["finished"]
    assert [f["warm"] for f in run["frames"] if f["status"] == "ok"] == [False, True, True]
    assert run["seconds_per_frame_after_first"] > 0 and (out / "sheet.png").is_file()


def video_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "gpuanalogy", "video", *args, *QUICK]


def kill_then_rerun(tmp_path: Path, ready: str, kept: tuple[str, ...],
                    *extra: str) -> tuple[Path, dict]:
    """Five frames; the run SIGKILLed once frame ``ready``'s record exists, then run again:
    the frames ``kept`` are reported skipped and left untouched, and all five are written.
    Returns the output folder and its run.json."""
    write_clip(tmp_path / "clip", 5)
    out = tmp_path / "out"
    args = [str(tmp_path / "clip"), str(exemplar(tmp_path / "bp.png")), "-o", str(out), *extra]
    kill_when(video_command(*args), tmp_path / "first.log",
              (out / "fields" / f"{ready}.json").exists,
              seconds=900, too_long="the first frames took too long")  # CI can be busy
    snapshots = {name: snapshot(out, name) for name in kept}
    assert not (out / "fields" / "f004.json").exists()

    rerun = subprocess.run(video_command(*args), capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr
    for name, files in snapshots.items():
        assert f"{name}: skipped" in rerun.stderr
        assert snapshot(out, name) == files, f"{name} was recomputed"
    names = [f"f{t:03d}" for t in range(5)]
    assert sorted(p.stem for p in (out / "frames").iterdir()) == names
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]   # no temporary files
    run = json.loads((out / "run.json").read_text())
    assert [f["name"] for f in run["frames"]] == names and run["frames_done"] == 5
    return out, run


@pytest.mark.slow
def test_sigkill_then_rerun_loses_at_most_the_frame_in_flight(tmp_path):
    kill_then_rerun(tmp_path, "f001", ("f000", "f001"))


@pytest.mark.slow
def test_a_video_file_in_gives_a_video_file_out(tmp_path):
    pngs = write_clip(tmp_path / "clip", 3)
    write_video(tmp_path / "clip.mp4", pngs, Fraction(12))
    source = open_clip(tmp_path / "clip.mp4")
    assert [f.name for f in source.frames] == ["frame_000001", "frame_000002", "frame_000003"]
    assert source.fps == 12
    out = tmp_path / "out"
    assert main(["video", str(tmp_path / "clip.mp4"), str(exemplar(tmp_path / "bp.png")),
                 "-o", str(out), *QUICK]) == 0
    written = open_clip(out / "a_prime.mp4")
    assert len(written.frames) == 3
    first = next(written.images())[1]
    assert first.shape == (48, 48, 3)


def test_a_folder_without_frames_and_an_unknown_file_are_refused_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no images in the folder"):
        open_clip(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="neither a folder of frames nor a video file"):
        open_clip(tmp_path / "notes.txt")
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    with pytest.raises(InputError, match="broken.mp4: cannot read the video"):
        open_clip(tmp_path / "broken.mp4")


@pytest.mark.slow
def test_keyframes_every_n_and_a_killed_run_keeps_its_keyframes(tmp_path):
    """--keyframes 2 on five frames: whole analogies at f000, f002, f004 only, the others
    synthesised; killed once the second keyframe is written, a rerun reads both keyframes back
    (their files untouched, reported as skipped) and writes the rest."""
    out, run = kill_then_rerun(tmp_path, "f002", ("f000", "f002"), "--keyframes", "2")
    assert run["finished"] and run["keyframes"] == ["f000", "f002", "f004"]
    assert run["seconds_per_propagated_frame"] > 0 and run["seconds_per_keyframe"] > 0
    frames = {f["name"]: f for f in run["frames"]}
    assert frames["f001"]["sources"] == ["f000", "f002"] and not frames["f001"]["keyframe"]
    assert frames["f003"]["sources"] == ["f002", "f004"] and frames["f004"]["keyframe"]
    assert 0 <= frames["f003"]["unexplained"] <= 1
    assert np.load(out / "fields" / "f003.nnf_ab.npy").shape == (48, 48, 2)
    assert not (out / "fields" / "f003.nnf_ba.npy").exists()
    assert (out / "sheet.png").is_file()


def test_propagated_frames_write_their_fields_in_the_format_asked(tmp_path):
    """--keyframes with --field-format flo: every frame's field is a .flo file, the
    propagated frames' too, and reads back as the frame -> B' field."""
    from gpuanalogy.fields import read_field

    write_clip(tmp_path / "clip", 3)
    out = tmp_path / "out"
    assert main(["video", str(tmp_path / "clip"), str(exemplar(tmp_path / "bp.png")), "-o",
                 str(out), "--keyframes", "2", "--field-format", "flo", *QUICK]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["keyframes"] == ["f000", "f002"]
    for name in ("f000", "f001", "f002"):
        record = json.loads((out / "fields" / f"{name}.json").read_text())
        assert f"fields/{name}.nnf_ab.flo" in record["files"]
        field = read_field(out / "fields" / f"{name}.nnf_ab.flo")
        assert field.shape == (48, 48, 2) and np.isfinite(field).all()
