"""Tests for gpuanalogy.files: the atomic write, JSON, .npy and the output-folder check."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gpuanalogy.errors import InputError
from gpuanalogy.files import atomic_path, check_output_dir, write_json, write_npy
from test_images import assert_one_line_error, leftover_files, read_only_folder  # noqa: F401


def test_atomic_path_success_and_failure(tmp_path):
    target = tmp_path / "data.txt"
    with atomic_path(target) as temp:
        assert temp.parent == tmp_path and temp.name.startswith(".") and temp.name.endswith(".tmp")
        temp.write_text("one")
        assert not target.exists()
    assert target.read_text() == "one"
    with pytest.raises(KeyError), atomic_path(target) as temp:
        temp.write_text("two")
        raise KeyError("stop")
    assert target.read_text() == "one"
    assert leftover_files(tmp_path) == ["data.txt"]


def test_atomic_path_onto_a_folder(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(InputError, match="is a folder"), atomic_path(tmp_path / "d"):
        pass


def test_write_json(tmp_path):
    write_json(tmp_path / "r.json", {"ratio": np.float32(0.5), "levels": np.arange(3), "out": tmp_path})
    assert json.loads((tmp_path / "r.json").read_text()) == {"ratio": 0.5, "levels": [0, 1, 2], "out": str(tmp_path)}
    with pytest.raises(TypeError):
        write_json(tmp_path / "bad.json", {"x": object()})
    with pytest.raises(ValueError):
        write_json(tmp_path / "nan.json", {"x": float("nan")})
    assert leftover_files(tmp_path) == ["r.json"]


def test_write_npy_writes_exactly_the_given_path(tmp_path):
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_npy(tmp_path / "nnf.bin", array)
    assert leftover_files(tmp_path) == ["nnf.bin"]
    np.testing.assert_array_equal(np.load(tmp_path / "nnf.bin"), array)
    with pytest.raises(ValueError):  # object arrays would need pickles
        write_npy(tmp_path / "obj.npy", np.array([object()]))
    assert leftover_files(tmp_path) == ["nnf.bin"]


def test_check_output_dir(tmp_path):
    folder = check_output_dir(tmp_path / "a" / "b")
    assert folder == tmp_path / "a" / "b" and folder.is_dir()
    assert leftover_files(folder) == []
    assert check_output_dir(str(folder)) == folder


def test_check_output_dir_under_a_file(tmp_path):
    (tmp_path / "somefile").write_text("x")
    for target in (tmp_path / "somefile", tmp_path / "somefile" / "sub"):
        with pytest.raises(InputError) as excinfo:
            check_output_dir(target)
        assert_one_line_error(excinfo, f"cannot write to {target}")


def test_check_output_dir_read_only(read_only_folder):
    with pytest.raises(InputError) as excinfo:
        check_output_dir(read_only_folder)
    assert str(excinfo.value) == f"cannot write to {read_only_folder}: Permission denied"
