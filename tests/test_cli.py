import subprocess
import sys
import time

import numpy as np
from PIL import Image

from gpuanalogy.cli import main


def _cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "gpuanalogy", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_version_and_help_answer_at_once():
    start = time.perf_counter()
    out = _cli("--version")
    assert out.returncode == 0 and "gpuanalogy" in out.stdout
    assert _cli("run", "--help").returncode == 0
    assert time.perf_counter() - start < 20   # no ONNX Runtime / Numba import on the way


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
