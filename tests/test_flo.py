"""Middlebury .flo files: the byte layout, the round trip of our fields, bad files refused."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from gpuanalogy.errors import InputError
from gpuanalogy.flo import field_from_flow, flow_from_field, read_flo, write_flo
from gpuanalogy.nnf import random_nnf
from gpuanalogy.backend import cpu_backend


def test_the_bytes_are_middleburys(tmp_path):
    # pixel (y=0, x=1) of a 2 x 3 field matches (row 1, col 4): u = 3, v = 1
    field = np.zeros((2, 3, 2), dtype=np.int32)
    field[..., 0], field[..., 1] = np.indices((2, 3))
    field[0, 1] = (1, 4)
    write_flo(tmp_path / "f.flo", flow_from_field(field))
    data = (tmp_path / "f.flo").read_bytes()
    assert data[:4] == b"PIEH" and struct.unpack("<fii", data[:12]) == (202021.25, 3, 2)
    values = struct.unpack("<12f", data[12:])
    assert values[2:4] == (3.0, 1.0)      # pixel (0, 1): u then v
    assert values[:2] == values[4:6] == (0.0, 0.0) and len(data) == 12 + 2 * 3 * 8


def test_a_file_written_elsewhere_reads_as_its_displacement(tmp_path):
    u = np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5
    v = -np.arange(12, dtype=np.float32).reshape(3, 4) / 4
    body = np.stack([u, v], axis=-1).astype("<f4").tobytes()
    (tmp_path / "other.flo").write_bytes(struct.pack("<fii", 202021.25, 4, 3) + body)
    flow = read_flo(tmp_path / "other.flo")
    np.testing.assert_array_equal(flow[..., 0], u)
    np.testing.assert_array_equal(flow[..., 1], v)
    rows, cols = np.indices((3, 4))
    np.testing.assert_array_equal(field_from_flow(flow), np.stack([rows + v, cols + u], -1))


def test_fields_round_trip(tmp_path):
    whole = random_nnf((37, 23), (19, 41), 5, cpu_backend())
    write_flo(tmp_path / "a.flo", flow_from_field(whole))
    np.testing.assert_array_equal(field_from_flow(read_flo(tmp_path / "a.flo")), whole)
    fractional = np.random.default_rng(0).random((5, 6, 2)).astype(np.float32) * 30
    write_flo(tmp_path / "b.flo", flow_from_field(fractional))
    np.testing.assert_allclose(field_from_flow(read_flo(tmp_path / "b.flo")), fractional,
                               atol=1e-5)


@pytest.mark.parametrize(("content", "message"), [
    (b"", "only 0 bytes"),
    (b"PIEH\x01\x00", "only 6 bytes"),
    (struct.pack("<fii", 1.0, 2, 2) + bytes(32), "magic number"),
    (struct.pack("<fii", 202021.25, -2, 2), "size -2 x 2"),
    (struct.pack("<fii", 202021.25, 2, 2) + bytes(31), "not a complete .flo file"),
    (struct.pack("<fii", 202021.25, 2, 2) + bytes(36), "more bytes"),
])
def test_bad_files_are_refused_in_one_line_naming_them(tmp_path, content, message):
    path = tmp_path / "bad.flo"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as caught:
        read_flo(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_a_missing_file_and_a_bad_flow(tmp_path):
    with pytest.raises(InputError, match="missing.flo: cannot read"):
        read_flo(tmp_path / "missing.flo")
    with pytest.raises(InputError, match="shape"):
        write_flo(tmp_path / "x.flo", np.zeros((3, 3)))
    assert not list(tmp_path.iterdir())
