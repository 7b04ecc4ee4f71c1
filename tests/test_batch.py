"""``gpuanalogy batch``: CSV and folder pairs, failure isolation, resume after SIGKILL, display.

The fast tests stand in for the method with a fake ``app.pair.run_pair`` that writes a complete
output folder at once; the slow ones run the real method on 64 x 64 images in a subprocess.
"""
from __future__ import annotations

import hashlib
import io as stdio
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from processes import kill_when

from gpuanalogy.app import batch, pair as pair_module, pairs as pair_sources, progress, resume
from gpuanalogy.app.batch import run_pairs
from gpuanalogy.app.pair import PairResult
from gpuanalogy.app.main import main
from gpuanalogy.app.pairs import Pair, read_pairs_csv
from gpuanalogy.app.progress import BatchProgress
from gpuanalogy.config import AnalogyConfig
from gpuanalogy.errors import InputError
from gpuanalogy.files import check_output_dir, write_json
from gpuanalogy.images import write_image
from gpuanalogy.outputs import is_complete
from gpuanalogy.pipeline import Progress

QUICK = ["--ratio", "0.25", "--lbfgs-iters", "3", "--iters", "2", "--device", "cpu"]


def picture(path: Path, seed: int, size=(64, 64)) -> Path:
    """A smooth, seeded test image: gradients and a bright disc."""
    rng = np.random.default_rng(seed)
    h, w = size
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    phase = rng.uniform(0, 6, 3)
    rgb = np.stack([np.sin(6 * x + phase[0]), np.cos(5 * y + phase[1]),
                    np.sin(4 * (x + y) + phase[2])], axis=2) * 0.4 + 0.5
    cy, cx = rng.uniform(0.3, 0.7, 2)
    rgb[(y - cy) ** 2 + (x - cx) ** 2 < 0.04] = 0.95
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rgb * 255).astype(np.uint8)).save(path)
    return path


def truncated(path: Path) -> Path:
    picture(path, 99)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text.lstrip())
    return path


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    return {p.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.iterdir())}


def leftovers(out: Path) -> list[Path]:
    return sorted(set(out.rglob(".*.tmp")) | set(out.rglob(".*.partial"))
                  | set(out.rglob(".*.partial.old")))


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


# --------------------------------------------------------------------------------------
# Reading pairs
# --------------------------------------------------------------------------------------


def test_csv_columns_paths_names_and_layered_settings(tmp_path):
    folder = tmp_path / "lists"
    folder.mkdir()
    csv_path = folder / "pairs.csv"
    csv_path.write_text(
        "\ufeffA,B_Prime,Name,preset,blend,ratio,iters,lbfgs-iters,seed,refine,mask,upsample,"
        "subpixel\n"
        "photos/cat.png,styles/ink.png,,,,,,,,,,,\n"
        "# a comment line\n"
        "\n"
        "photos/cat.jpg,/abs/b.png,,style2photo,,,5,,7,no,hard,,yes\n"
        "x/dog.png,y.png,portrait,photo2photo,1,0.5,,20,,true,,nnf,false\n", encoding="utf-8")
    base = AnalogyConfig(lbfgs_iterations=3, ratio=0.25)   # stands for the command-line options

    def make_config(preset):
        return AnalogyConfig.preset(preset, lbfgs_iterations=3, ratio=0.25) if preset else base

    pairs = read_pairs_csv(csv_path, make_config)
    assert [p.name for p in pairs] == ["cat", "cat-2", "portrait"]
    assert [p.line for p in pairs] == [2, 5, 6]
    assert pairs[0].a == folder / "photos" / "cat.png"
    assert pairs[0].b_prime == folder / "styles" / "ink.png"
    assert pairs[1].b_prime == Path("/abs/b.png")
    assert pairs[0].config == base
    # preset < command line < row
    second = pairs[1].config
    assert (second.blend, second.ratio, second.patchmatch_iterations, second.seed,
            second.refine, second.mask, second.subpixel) == (2, 0.25, 5, 7, False, "hard", True)
    third = pairs[2].config
    assert (third.blend, third.ratio, third.lbfgs_iterations, third.refine, third.upsample,
            third.subpixel) == (1, 0.5, 20, True, "nnf", False)


def test_csv_columns_outputs_and_lbfgs_stop(tmp_path):
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text("a,b_prime,outputs,lbfgs-stop\n"
                        "x.png,y.png,a_prime,official\n"
                        "z.png,y.png,,\n")
    pairs = read_pairs_csv(csv_path, lambda preset: AnalogyConfig())
    assert [(p.config.outputs, p.config.lbfgs_stop) for p in pairs] == [
        ("a_prime", "official"), ("both", "adaptive")]


@pytest.mark.parametrize("text, parts", [
    ("a\nx.png\n", ["line 1", "missing column 'b_prime'"]),
    ("a,b_prime,outputs\nx.png,y.png,b\n", ["line 2", "outputs='b' is not supported"]),
    ("a,b_prime,colour\nx.png,y.png,red\n", ["line 1", "unknown column 'colour'"]),
    ("a,b_prime,a\nx.png,y.png,z.png\n", ["line 1", "'a' appears twice"]),
    ("a,b_prime,preset\nx.png,y.png,photo2style\nx.png,y.png,cartoon\n",
     ["line 3", "preset 'cartoon' is unknown", "photo2photo"]),
    ("a,b_prime,iters\nx.png,y.png,ten\n", ["line 2", "iters='ten' is not a whole number"]),
    ("a,b_prime,ratio\nx.png,y.png,nan\n", ["line 2", "ratio"]),
    ("a,b_prime,ratio\nx.png,y.png,9\n", ["line 2", "ratio=9.0 is out of range"]),
    ("a,b_prime,blend\nx.png,y.png,4\n", ["line 2", "blend=4 is not supported"]),
    ("a,b_prime,refine\nx.png,y.png,maybe\n", ["line 2", "not true or false"]),
    ("a,b_prime,mask\nx.png,y.png,soft\n", ["line 2", "mask='soft'"]),
    ("a,b_prime\nx.png,y.png,z.png\n", ["line 2", "3 cells but the header has 2 columns"]),
    ("a,b_prime\nx.png,\n", ["line 2", "no b_prime image given"]),
    ("a,b_prime,name\nx.png,y.png,../up\n", ["line 2", "name '../up'"]),
    ("a,b_prime,name\nx.png,y.png,.hidden\n", ["line 2", "may not start with '.'"]),
    ("a,b_prime\n\"x.png,y.png\n", ["line", "not valid CSV"]),
    ("a,b_prime\n", ["no pairs"]),
    ("", ["empty"]),
])
def test_bad_csv_is_one_line_naming_the_line_exit_2(tmp_path, capsys, text, parts):
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text(text)
    code = main(["batch", str(csv_path), "-o", str(tmp_path / "out")])
    err = error_line(capsys)
    assert code == 2
    assert err.startswith("gpuanalogy: error: ") and str(csv_path) in err
    for part in parts:
        assert part in err, err
    assert not (tmp_path / "out").exists()


def test_csv_not_utf8_missing_or_a_bad_pairs_argument(tmp_path, capsys):
    (tmp_path / "latin.csv").write_bytes("a,b_prime\ncaf\xe9.png,y.png\n".encode("latin-1"))
    assert main(["batch", str(tmp_path / "latin.csv"), "-o", str(tmp_path / "out")]) == 2
    assert "not UTF-8" in error_line(capsys)
    assert main(["batch", str(tmp_path / "none.csv"), "-o", str(tmp_path / "out")]) == 2
    assert "none.csv: no such file" in error_line(capsys)
    (tmp_path / "just_a_folder").mkdir()
    assert main(["batch", str(tmp_path / "just_a_folder"), "-o", str(tmp_path / "out")]) == 2
    assert "give the folder of B' images too" in error_line(capsys)
    assert main(["batch", str(tmp_path / "latin.csv"), str(tmp_path), "-o",
                 str(tmp_path / "out")]) == 2
    assert "PAIRS must be the folder of A images" in error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_folders_pair_by_name_then_by_stem(tmp_path):
    a_dir, b_dir = tmp_path / "A", tmp_path / "B"
    for name in ("x.png", "y.png", "w.png", ".hidden.png"):
        picture(a_dir / name, 1)
    (a_dir / "notes.txt").write_text("not an image")
    (a_dir / "sub.png").mkdir()
    for name in ("x.png", "y.jpg", "z.png"):
        picture(b_dir / name, 2)
    notices = []
    pairs = pair_sources.pairs_from_folders(a_dir, b_dir, on_notice=notices.append)
    assert [(p.name, p.a.name, p.b_prime.name) for p in pairs] == [
        ("x", "x.png", "x.png"), ("y", "y.png", "y.jpg")]
    assert len(notices) == 2
    assert "w.png: no B' image" in notices[0] and "z.png: no A image" in notices[1]

    picture(b_dir / "y.tif", 3)
    with pytest.raises(InputError, match="several B' images match by name"):
        pair_sources.pairs_from_folders(a_dir, b_dir)
    with pytest.raises(InputError, match="no image file names in common"):
        pair_sources.pairs_from_folders(a_dir, tmp_path / "A" / "sub.png")


# --------------------------------------------------------------------------------------
# Running, with a stand-in for the method
# --------------------------------------------------------------------------------------


class FakeMethod:
    """Stands in for app.pair.run_pair: writes a_prime.png and run.json like the real one."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[str] = []
        self.fail_on = fail_on
        self.models: list[object] = []

    def __call__(self, a, b_prime, outdir, config, *, names, model, save_levels, on_progress,
                 regions=None):
        self.calls.append(Path(names[0]).name)
        self.models.append(model)
        on_progress(Progress("features", 5, 0, 2))
        write_image(Path(outdir) / "a_prime.png", a)
        if self.fail_on and self.fail_on in names[0]:
            raise RuntimeError("kernel exploded")
        on_progress(Progress("output", 0, 1, 2))
        record = {"files": ["a_prime.png"], "config": config.to_dict(),
                  "inputs": {"a": names[0], "b_prime": names[1]}}
        write_json(Path(outdir) / "run.json", record)
        return record


@pytest.fixture
def fake(monkeypatch):
    method = FakeMethod()
    monkeypatch.setattr(pair_module, "run_pair", method)
    return method


def make_pairs(folder: Path, count: int, config: AnalogyConfig | None = None) -> list[Pair]:
    config = config or AnalogyConfig(device="cpu")
    return [Pair(f"p{i}", picture(folder / f"a{i}.png", i),
                       picture(folder / f"b{i}.png", 10 + i), config) for i in range(count)]


def quiet() -> BatchProgress:
    return BatchProgress(0, stream=stdio.StringIO(), tty=False)


def test_one_failed_pair_leaves_nothing_and_the_others_complete(tmp_path, fake):
    pairs = make_pairs(tmp_path / "in", 3)
    pairs[1] = Pair("p1", truncated(tmp_path / "in" / "bad.png"), pairs[1].b_prime,
                          pairs[1].config)
    loads = []
    results = run_pairs(pairs, tmp_path / "out", load_model=lambda c: loads.append(c) or "model",
                        progress=quiet())
    assert [r.status for r in results] == ["ok", "failed", "ok"]
    assert "bad.png" in results[1].error and "truncated" in results[1].error
    assert "\n" not in results[1].error
    assert is_complete(tmp_path / "out" / "p0") and is_complete(tmp_path / "out" / "p2")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0", "p2"]
    assert len(loads) == 1 and fake.models == ["model", "model"]   # loaded once, shared


def test_an_unexpected_error_fails_the_pair_only_and_removes_its_partial_folder(tmp_path,
                                                                                  monkeypatch):
    method = FakeMethod(fail_on="a0")
    monkeypatch.setattr(pair_module, "run_pair", method)
    results = run_pairs(make_pairs(tmp_path / "in", 2), tmp_path / "out",
                        load_model=lambda c: None, progress=quiet())
    assert [r.status for r in results] == ["failed", "ok"]
    assert results[0].error.startswith("internal error: RuntimeError: kernel exploded")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p1"]


def test_resume_skips_complete_pairs_and_redoes_changed_or_broken_ones(tmp_path, fake):
    pairs = make_pairs(tmp_path / "in", 4)
    out = tmp_path / "out"
    run_pairs(pairs, out, load_model=lambda c: None, progress=quiet())
    before = {p.name: snapshot(out / p.name) for p in pairs}

    # What a kill leaves: a partial folder and temporary files; and a damaged pair folder.
    (out / ".p9.partial").mkdir()
    (out / ".p9.partial" / "a_prime.png").write_bytes(b"half")
    (out / ".summary.json.0123abcd.tmp").write_text("{")
    (out / "p3" / "a_prime.png").unlink()
    # p2 asked for other settings this time.
    pairs[2] = Pair("p2", pairs[2].a, pairs[2].b_prime, AnalogyConfig(device="cpu", seed=4))
    fake.calls.clear()
    time.sleep(0.01)
    loads = []
    results = run_pairs(pairs, out, load_model=lambda c: loads.append(c), progress=quiet())
    assert [r.status for r in results] == ["skipped", "skipped", "ok", "ok"]
    assert fake.calls == ["a2.png", "a3.png"] and len(loads) == 1
    assert "other settings" in results[2].warnings[0]
    assert "incomplete" in results[3].warnings[0]
    for name in ("p0", "p1"):
        assert snapshot(out / name) == before[name]
    assert snapshot(out / "p2") != before["p2"]
    assert json.loads((out / "p2" / "run.json").read_text())["config"]["seed"] == 4
    assert leftovers(out) == []

    # Everything complete: nothing runs and the network is not even loaded.
    results = run_pairs(pairs, out, load_model=lambda c: pytest.fail("loaded"), progress=quiet())
    assert {r.status for r in results} == {"skipped"}


def test_resuming_a_finished_batch_on_another_device_recomputes_nothing(tmp_path, fake,
                                                                       monkeypatch, capsys):
    monkeypatch.setattr(batch, "load_network", lambda weights, device: "model")
    for i in range(2):
        picture(tmp_path / "A" / f"p{i}.png", i)
        picture(tmp_path / "B" / f"p{i}.png", 10 + i)
    command = ["batch", str(tmp_path / "A"), str(tmp_path / "B"), "-o", str(tmp_path / "out")]
    assert main([*command, "--device", "cpu"]) == 0
    before = {name: snapshot(tmp_path / "out" / name) for name in ("p0", "p1")}
    fake.calls.clear()
    monkeypatch.setattr(batch, "load_network", lambda weights, device: pytest.fail("loaded"))
    for device in ("cuda", "auto"):
        assert main([*command, "--device", device]) == 0
    assert fake.calls == []
    assert {name: snapshot(tmp_path / "out" / name) for name in before} == before
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [e["status"] for e in summary["results"]] == ["skipped", "skipped"]
    # what does change the images still counts
    monkeypatch.setattr(batch, "load_network", lambda weights, device: "model")
    assert main([*command, "--device", "cuda", "--seed", "3"]) == 0
    assert fake.calls == ["p0.png", "p1.png"]


def test_other_input_files_under_the_same_name_are_computed_again(tmp_path, fake):
    pairs = make_pairs(tmp_path / "in", 1)
    run_pairs(pairs, tmp_path / "out", load_model=lambda c: None, progress=quiet())
    moved = [Pair("p0", pairs[0].b_prime, pairs[0].a, pairs[0].config)]
    results = run_pairs(moved, tmp_path / "out", load_model=lambda c: None, progress=quiet())
    assert results[0].status == "ok" and "other input files" in results[0].warnings[0]


def test_a_second_batch_on_the_same_folder_is_refused(tmp_path, fake):
    out = check_output_dir(tmp_path / "out")
    with resume.exclusive(out):
        with pytest.raises(InputError, match="another gpuanalogy batch is writing there"):
            run_pairs(make_pairs(tmp_path / "in", 1), out, load_model=lambda c: None,
                      progress=quiet())
    assert run_pairs(make_pairs(tmp_path / "in", 1), out, load_model=lambda c: None,
                     progress=quiet())[0].status == "ok"


def test_batch_command_writes_summary_and_table_exit_2_on_bad_input(tmp_path, fake, capsys,
                                                                   monkeypatch):
    monkeypatch.setattr(batch, "load_network", lambda weights, device: "model")
    picture(tmp_path / "a.png", 1)
    picture(tmp_path / "b.png", 2)
    (tmp_path / "text.png").write_text("hello")
    csv_path = write_csv(tmp_path / "pairs.csv",
                         "a,b_prime,name\na.png,b.png,first\ntext.png,b.png,\na.png,b.png,\n")
    code = main(["batch", str(csv_path), "-o", str(tmp_path / "out"), *QUICK])
    captured = capsys.readouterr()
    assert code == 2
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["finished"] is True
    assert summary["counts"] == {"ok": 2, "skipped": 0, "failed": 1, "pending": 0}
    entries = {e["name"]: e for e in summary["results"]}
    assert entries["text"]["status"] == "failed" and entries["text"]["line"] == 3
    assert "text.png: not an image file" in entries["text"]["error"]
    assert entries["a"]["status"] == "ok"
    table = captured.out.splitlines()
    assert table[0].split() == ["pair", "status", "seconds", "message"]
    assert table[2].split()[:2] == ["text", "failed"] and "not an image file" in table[2]
    assert "3 pairs: 2 ok, 0 skipped, 1 failed" in captured.err
    # The command-line settings reached the pairs.
    config = json.loads((tmp_path / "out" / "first" / "run.json").read_text())["config"]
    assert (config["ratio"], config["lbfgs_iterations"], config["device"]) == (0.25, 3, "cpu")

    assert main(["batch", str(csv_path), "-o", str(tmp_path / "out"), *QUICK]) == 2
    statuses = [e["status"] for e in
                json.loads((tmp_path / "out" / "summary.json").read_text())["results"]]
    assert statuses == ["skipped", "failed", "skipped"]


def test_folder_holding_a_and_b(tmp_path, fake, capsys, monkeypatch):
    monkeypatch.setattr(batch, "load_network", lambda weights, device: None)
    picture(tmp_path / "set" / "A" / "one.png", 1)
    picture(tmp_path / "set" / "B" / "one.jpg", 2)
    assert main(["batch", str(tmp_path / "set"), "-o", str(tmp_path / "out")]) == 0
    assert is_complete(tmp_path / "out" / "one")


# --------------------------------------------------------------------------------------
# Progress display
# --------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_terminal_display_rewrites_one_line_and_estimates_the_time_left():
    stream, clock = stdio.StringIO(), FakeClock()
    display = BatchProgress(3, to_run=3, stream=stream, tty=True, clock=clock)
    display.start_pair(0, "cat")
    display.stage(Progress("features", 5, 0, 4))
    assert display.eta_seconds() is None
    clock.now += 10
    display.stage(Progress("patchmatch", 5, 1, 4))   # 1/4 done in 10 s: 40 s a pair
    assert display.eta_seconds() == pytest.approx(30 + 2 * 40)
    text = stream.getvalue()
    assert "\n" not in text and text.count("\r") == 2
    assert "[1/3] cat: level 5 patchmatch (step 2/4)" in text and "ETA 1:50" in text
    pair = Pair("cat", Path("a"), Path("b"), AnalogyConfig())
    display.end_pair(PairResult(pair, "ok", seconds=20.0))
    assert stream.getvalue().endswith("\r\x1b[K[1/3] cat: ok in 20.0 s\n")
    display.start_pair(1, "dog")
    clock.now += 5
    display.stage(Progress("output", 0, 3, 4))
    assert display.eta_seconds() == pytest.approx(15 + 20)   # mean of finished pairs
    assert "1 ok" in stream.getvalue().rsplit("\r", 1)[-1]
    display.close()
    assert stream.getvalue().endswith("\r\x1b[K")


def test_log_display_prints_one_line_per_stage():
    stream = stdio.StringIO()
    display = BatchProgress(2, stream=stream, tty=False)
    display.start_pair(1, "dog")
    display.stage(Progress("features", 5, 0, 15))
    display.stage(Progress("deconvolution a_prime", 5, 2, 15))
    display.stage(Progress("output", 0, 14, 15))
    display.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and len(lines) == 3
    assert lines[1].startswith("[2/2] dog: level 5 deconvolution a_prime (step 3/15)")
    assert lines[2].startswith("[2/2] dog: output (step 15/15)")


def test_summary_table_and_durations():
    pair = Pair("a-long-name", Path("a"), Path("b"), AnalogyConfig())
    table = batch.summary_table([PairResult(pair, "failed", 1.25, "a: no such file"),
                                 PairResult(pair, "ok", 12.0)]).splitlines()
    assert table[1] == "a-long-name  failed      1.2  a: no such file"
    assert table[2] == "a-long-name  ok         12.0"
    assert progress.format_duration(59.6) == "1:00" and progress.format_duration(3725) == "1:02:05"


# --------------------------------------------------------------------------------------
# End to end, in a subprocess
# --------------------------------------------------------------------------------------


def batch_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "gpuanalogy", "batch", *args, *QUICK]


@pytest.mark.slow
def test_sigkill_then_rerun_completes_every_pair_and_keeps_finished_ones(tmp_path):
    for i in range(4):
        picture(tmp_path / ("imgs" if i == 2 else ".") / f"a{i}.png", i)
        picture(tmp_path / f"b{i}.png", 10 + i)
    csv_path = write_csv(tmp_path / "pairs.csv",
                         "a,b_prime,name,preset,seed\n"
                         "a0.png,b0.png,,,\n"
                         "a1.png,b1.png,second,style2photo,\n"
                         "imgs/a2.png,b2.png,,,5\n"
                         "a3.png,b3.png,,,\n")
    out = tmp_path / "out"
    kill_when(batch_command(str(csv_path), "-o", str(out)), tmp_path / "first.log",
              lambda: is_complete(out / "a0") and (out / ".second.partial").is_dir(),
              seconds=150, too_long="the first pair took too long")
    finished = {p.name: snapshot(p) for p in out.iterdir() if is_complete(p)}
    assert "a0" in finished and "a3" not in finished
    assert (out / ".second.partial").is_dir()      # the pair in flight, for the rerun to redo

    rerun = subprocess.run(batch_command(str(csv_path), "-o", str(out)),
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    names = ["a0", "second", "a2", "a3"]
    assert all(is_complete(out / name) for name in names)
    for name, files in finished.items():
        assert snapshot(out / name) == files, f"{name} was rewritten"
    summary = json.loads((out / "summary.json").read_text())
    assert [e["status"] for e in summary["results"]] == [
        "skipped" if name in finished else "ok" for name in names]
    assert leftovers(out) == []
    assert sorted(p.name for p in out.iterdir()) == sorted(names + ["summary.json"])
    config = json.loads((out / "second" / "run.json").read_text())["config"]
    assert (config["blend"], config["refine"], config["ratio"]) == (2, True, 0.25)
    assert json.loads((out / "a2" / "run.json").read_text())["config"]["seed"] == 5
    assert "ETA" in rerun.stderr


@pytest.mark.slow
def test_folder_pairs_end_to_end(tmp_path):
    picture(tmp_path / "A" / "x.png", 1)
    picture(tmp_path / "B" / "x.jpg", 2, size=(48, 64))
    picture(tmp_path / "B" / "unpaired.png", 3)
    done = subprocess.run(batch_command(str(tmp_path / "A"), str(tmp_path / "B"), "-o",
                                        str(tmp_path / "out")),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "unpaired.png: no A image of that name" in done.stderr
    assert is_complete(tmp_path / "out" / "x")
    with Image.open(tmp_path / "out" / "x" / "b.png") as b:
        assert b.size == (64, 48)
    assert leftovers(tmp_path / "out") == []


def test_batch_exits_1_when_a_pair_fails_for_another_reason(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(batch, "load_network", lambda weights, device: "model")
    monkeypatch.setattr(pair_module, "run_pair", FakeMethod(fail_on="a2"))
    pairs = tmp_path / "in"
    for i in (1, 2):
        picture(pairs / "A" / f"a{i}.png", i)
        picture(pairs / "B" / f"a{i}.png", 10 + i)
    assert main(["batch", str(pairs), "-o", str(tmp_path / "out"), *QUICK]) == 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    failed = [e for e in summary["results"] if e["status"] == "failed"]
    assert [e["name"] for e in failed] == ["a2"] and failed[0]["bad_input"] is False
    assert "internal error: RuntimeError: kernel exploded" in failed[0]["error"]


@pytest.mark.slow
def test_csv_with_a_truncated_image_fails_that_pair_only_exit_2(tmp_path):
    truncated(tmp_path / "broken.png")
    picture(tmp_path / "a.png", 1)
    picture(tmp_path / "b.png", 2)
    csv_path = write_csv(tmp_path / "pairs.csv", "a,b_prime\nbroken.png,b.png\na.png,b.png\n")
    done = subprocess.run(batch_command(str(csv_path), "-o", str(tmp_path / "out")),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert is_complete(tmp_path / "out" / "a")
    assert not (tmp_path / "out" / "broken").exists()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    broken, good = summary["results"]
    assert broken["status"] == "failed" and good["status"] == "ok"
    assert "broken.png" in broken["error"] and "truncated" in broken["error"]
    assert "broken" in done.stdout and "failed" in done.stdout
    assert leftovers(tmp_path / "out") == []
