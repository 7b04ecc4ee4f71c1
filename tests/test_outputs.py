"""The field files of an output folder: exact float32, compact float16 and working-size forms."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gpuanalogy import AnalogyConfig
from gpuanalogy.backend import cpu_backend
from gpuanalogy.errors import InputError
from gpuanalogy.fields import Field, read_field
from gpuanalogy.nnf import random_nnf
from gpuanalogy.outputs import write_result
from gpuanalogy.pipeline import outputs_from_fields, working_shape

CPU = cpu_backend()


def folder(tmp_path, field_format: str, *, aligned: bool = False, ratio: float = 0.5):
    """An output folder written from random working-size fields; returns it and the result."""
    rng = np.random.default_rng(0)
    a = (rng.random((400, 320, 3)) * 255).astype(np.uint8)
    b_prime = (rng.random((360, 440, 3)) * 255).astype(np.uint8)
    config = AnalogyConfig(ratio=ratio, field_format=field_format)
    work_a, work_b = working_shape(a.shape[:2], config), working_shape(b_prime.shape[:2], config)
    fields = [random_nnf(work_a, work_b, 1, CPU), random_nnf(work_b, work_a, 2, CPU)]
    if aligned:
        fields = [(f + rng.random(f.shape) * 0.9).astype(np.float32) for f in fields]
    fields_work = (Field(fields[0], work_b, aligned), Field(fields[1], work_a, aligned))
    result = outputs_from_fields(a, b_prime, *fields_work, config, CPU)
    result.fields_work = fields_work
    record = write_result(tmp_path / field_format, result, a=a, b_prime=b_prime, config=config)
    return tmp_path / field_format, result, record


@pytest.mark.parametrize("aligned", [False, True])
def test_the_working_size_form_gives_back_the_exact_field_in_a_fraction_of_the_bytes(
        tmp_path, aligned):
    out, result, record = folder(tmp_path, "working", aligned=aligned)
    exact, _, _ = folder(tmp_path, "float32", aligned=aligned)
    assert "nnf_ab.npz" in record["files"] and "nnf_ab.npy" not in record["files"]
    np.testing.assert_array_equal(read_field(out / "nnf_ab.npz"), result.nnf_ab)
    np.testing.assert_array_equal(read_field(out / "nnf_ba.npz"), result.nnf_ba)
    np.testing.assert_array_equal(read_field(exact / "nnf_ab.npy"), result.nnf_ab)
    assert (out / "nnf_ab.npz").stat().st_size < (exact / "nnf_ab.npy").stat().st_size / 2
    assert json.loads((out / "run.json").read_text())["config"]["field_format"] == "working"


def test_float16_halves_the_file_and_keeps_whole_pixels(tmp_path):
    out, result, _ = folder(tmp_path, "float16")
    stored = np.load(out / "nnf_ab.npy")
    assert stored.dtype == np.float16 and stored.nbytes == result.nnf_ab.nbytes // 2
    np.testing.assert_array_equal(read_field(out / "nnf_ab.npy"), result.nnf_ab)


def test_fields_refined_at_the_input_size_have_no_working_size_form(tmp_path):
    with pytest.raises(InputError, match="field_format='working' cannot hold"):
        AnalogyConfig(upsample="patchmatch", field_format="working")
    (tmp_path / "bad.npz").write_bytes(b"not a field")
    with pytest.raises(InputError, match="bad.npz: not a field file"):
        read_field(tmp_path / "bad.npz")
    np.save(tmp_path / "image.npy", np.zeros((8, 9, 3), np.float32))   # an array, not a field
    with pytest.raises(InputError, match=r"image.npy: not a field file .*\(8, 9, 3\)"):
        read_field(tmp_path / "image.npy")


def test_flo_files_hold_the_displacement_and_read_back_as_the_field(tmp_path):
    from gpuanalogy.flo import read_flo

    out, result, record = folder(tmp_path, "flo")
    assert {"nnf_ab.flo", "nnf_ba.flo"} <= set(record["files"])
    np.testing.assert_array_equal(read_field(out / "nnf_ab.flo"), result.nnf_ab)
    np.testing.assert_array_equal(read_field(out / "nnf_ba.flo"), result.nnf_ba)
    flow = read_flo(out / "nnf_ab.flo")
    np.testing.assert_array_equal(flow[..., 0], result.nnf_ab[..., 1] - np.arange(320))
