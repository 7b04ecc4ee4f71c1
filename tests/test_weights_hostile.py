"""Hostile weights files: refused in one line naming the file, before their data is read, in
bounded memory.

Each class of bad file is checked through :func:`load_weights` (fast, in process); the cases a
user met (issue 24: stride-0 tensors, zip bombs, NaN weights) also through the real command
line, whose peak memory is measured; and a fuzz test crafts files at random.
"""
from __future__ import annotations

import functools
import io
import math
import pickle
import struct
import tempfile
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from gpuanalogy.checkpoint import MAX_PICKLE_BYTES, load_torch_checkpoint
from gpuanalogy.errors import ModelError
from gpuanalogy.weights import (
    LAYOUT_ELEMENTS, TORCHVISION_INDICES, VGG19_CHANNELS, VGG19_CONVS, load_weights)
from processes import run_measured
from torch_zip import (
    Entry, TensorRef, checkpoint_pickle, deflated, stored, write_zip, write_zip_checkpoint,
    zero_bomb)

GiB = 1 << 30
SHARED = 512 * 512 * 9 + 64   # one storage every layer of vgg_refs() fits in
#: What a valid file's layers take as float32: the yardstick for "a few times the file".
LAYOUT_BYTES = 4 * LAYOUT_ELEMENTS


def vgg_refs() -> dict[str, TensorRef]:
    """A torchvision-style VGG-19 state dict: every layer a dense view of storage "0"."""
    state = {}
    for k, name in enumerate(VGG19_CONVS):
        cin, cout = VGG19_CHANNELS[name]
        prefix = f"features.{TORCHVISION_INDICES[name]}"
        state[prefix + ".weight"] = TensorRef("0", k, (cout, cin, 3, 3), (cin * 9, 9, 3, 1))
        state[prefix + ".bias"] = TensorRef("0", 2 * k, (cout,), (1,))
    return state


def write_vgg(path: Path, *, fill: float = 0.5, change: dict | None = None,
              drop: tuple[str, ...] = (), extra: dict[str, np.ndarray] | None = None,
              **hostile) -> Path:
    """A VGG-19 checkpoint whose layers all read ``fill``, with layers changed or dropped,
    extra storages, and the overrides of :func:`write_zip_checkpoint` (``numels``,
    ``entries``, ``data_pkl``). Storage "0" is deflated, so the file stays small."""
    refs = {k: v for k, v in (vgg_refs() | (change or {})).items() if k not in drop}
    storage = np.full(SHARED, fill, np.float32)
    entries = {"0": deflated(storage.tobytes())} | hostile.pop("entries", {})
    write_zip_checkpoint(path, refs, {"0": storage, **(extra or {})}, entries=entries, **hostile)
    return path


def npz_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array(out, array, allow_pickle=True)
    return out.getvalue()


@functools.lru_cache(maxsize=2)
def vgg_npz_entries(fill: float) -> dict[str, Entry]:
    """The deflated entries of an npz of VGG-19 layers that all read ``fill``."""
    entries = {}
    for name in VGG19_CONVS:
        cin, cout = VGG19_CHANNELS[name]
        entries[f"{name}_W.npy"] = deflated(npz_bytes(np.full((cout, cin, 3, 3), fill, np.float32)))
        entries[f"{name}_b.npy"] = deflated(npz_bytes(np.full(cout, fill, np.float32)))
    return entries


def write_vgg_npz(path: Path, *, fill: float = 0.5, change: dict[str, Entry] | None = None
                  ) -> Path:
    """An npz of VGG-19 layers reading ``fill``, some entries replaced by ``change``."""
    write_zip(path, vgg_npz_entries(fill) | (change or {}))
    return path


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": descr, "fortran_order": False,
                                               "shape": shape})
    return out.getvalue()


def refused(path: Path, *words: str) -> str:
    """Load ``path``, expect one line naming it with ``words``; measure the traced peak."""
    tracemalloc.start()
    try:
        with pytest.raises(ModelError) as info:
            load_weights(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    for word in words:
        assert word in message, message
    assert peak < 3 * LAYOUT_BYTES, f"{peak / 2**20:.0f} MiB to refuse {path.name}"
    return message


# --- what each class of file gets, in process --------------------------------------------------


def test_a_valid_file_loads_and_odd_but_sound_layouts_too(tmp_path):
    weights = load_weights(write_vgg(tmp_path / "good.pth"))
    assert all(np.all(W == 0.5) and np.all(b == 0.5) for W, b in weights.convs.values())
    # Transposed (dense, not C-ordered), half precision and float64 storages are all sound.
    half = np.arange(64 * 27, dtype=np.float16)
    doubles = np.arange(64, dtype=np.float64)
    change = {"features.0.weight": TensorRef("1", 0, (64, 3, 3, 3), (1, 64 * 9, 64 * 3, 64)),
              "features.0.bias": TensorRef("2", 0, (64,), (1,))}
    weights = load_weights(write_vgg(tmp_path / "odd.pth", change=change,
                                     extra={"1": half, "2": doubles}))
    W, b = weights.convs["conv1_1"]
    assert W.dtype == b.dtype == np.float32
    np.testing.assert_array_equal(W, half.reshape(3, 3, 3, 64).transpose(3, 0, 1, 2))
    np.testing.assert_array_equal(b, doubles)


@pytest.mark.parametrize("case, change, extra, words", [
    ("stride0", {"features.28.weight": TensorRef("0", 0, (512, 512, 3, 3), (0, 0, 0, 0))}, None,
     ["features.28.weight", "a stride of 0"]),
    ("huge", {"features.0.weight": TensorRef("0", 0, (2**20, 2**20, 1, 1), (0, 0, 0, 0))}, None,
     ["features.0.weight has shape (1048576, 1048576, 1, 1), expected (64, 3, 3, 3)"]),
    ("overlap", {"features.2.weight": TensorRef("0", 0, (64, 64, 3, 3), (1, 1, 1, 1))}, None,
     ["features.2.weight", "overlapping elements", "(1, 1, 1, 1)"]),
    ("interleaved", {"features.0.weight": TensorRef("0", 0, (64, 3, 3, 3), (2, 3, 9, 27))}, None,
     ["features.0.weight", "overlapping elements"]),
    ("past", {"features.0.bias": TensorRef("0", SHARED - 10, (64,), (1,))}, None,
     ["runs past its storage of 2359360 elements"]),
    ("ints", {"features.0.bias": TensorRef("1", 0, (64,), (1,))}, {"1": np.zeros(64, np.int64)},
     ["features.0.bias holds i8 elements; expected floating point"]),
    ("bools", {"features.0.bias": TensorRef("1", 0, (64,), (1,))}, {"1": np.zeros(64, bool)},
     ["features.0.bias holds b1 elements"]),
    ("shape", {"features.2.weight": TensorRef("0", 0, (64, 65, 3, 3), (585, 9, 3, 1))}, None,
     ["features.2.weight has shape (64, 65, 3, 3), expected (64, 64, 3, 3)"]),
    ("not a tensor", {"features.0.bias": 7}, None, ["features.0.bias is not a tensor (int)"]),
])
def test_a_layout_vgg19_cannot_hold_is_refused_before_reading(tmp_path, case, change, extra, words):
    refused(write_vgg(tmp_path / f"{case}.pth", change=change, extra=extra), *words)


def test_missing_or_renamed_layers(tmp_path):
    refused(write_vgg(tmp_path / "missing.pth", drop=("features.21.weight",)),
            "not VGG-19 weights: missing features.21.weight")
    renamed = {f"backbone.{k}": v for k, v in vgg_refs().items()}
    path = tmp_path / "renamed.pth"
    write_zip_checkpoint(path, renamed, {"0": np.zeros(SHARED, np.float32)})
    refused(path, "missing features.0.weight, features.0.bias, features.2.weight, "
                  "features.2.bias and 28 more")


@pytest.mark.parametrize("fill", [math.nan, math.inf, 1e300])
def test_values_that_are_not_finite_as_float32_are_refused(tmp_path, fill):
    extra = {"1": np.full(64, fill, np.float64)}
    path = write_vgg(tmp_path / "nan.pth", extra=extra,
                     change={"features.0.bias": TensorRef("1", 0, (64,), (1,))})
    refused(path, "features.0.bias holds 64 NaN or infinite values of 64")


def test_zip_bombs_are_never_inflated(tmp_path):
    # A storage larger than the whole layout is refused by its declared size alone.
    bomb = {"1": zero_bomb(2 * GiB)}
    refused(write_vgg(tmp_path / "big.pth", extra={"1": np.zeros(0, np.float32)},
                      numels={"1": GiB // 2}, entries=bomb,
                      change={"features.0.weight": TensorRef("1", 0, (64, 3, 3, 3), (27, 9, 3, 1))}),
            "features.0.weight lies in a storage of 536870912 elements", str(LAYOUT_ELEMENTS))
    # An entry whose stated size is not what the pickle declares is refused unread.
    refused(write_vgg(tmp_path / "lying.pth", entries={"0": zero_bomb(2 * GiB)}),
            "storage 0 holds 2147483648 bytes, but the pickle declares 2359360 elements")
    # A pickle that inflates to gigabytes.
    refused(write_vgg(tmp_path / "pickle.pth", data_pkl=zero_bomb(2 * GiB)),
            f"its pickle is 2147483648 bytes (at most {MAX_PICKLE_BYTES} are read)")


def test_an_entry_inflating_past_its_stated_size_is_read_only_that_far(tmp_path):
    """The storage's stream holds 2 GiB of zeros; it states 9 MiB, which is all that is read."""
    entry = zero_bomb(2 * GiB, stated=SHARED * 4)
    tracemalloc.start()
    try:
        weights = load_weights(write_vgg(tmp_path / "understated.pth", entries={"0": entry}))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert all(not W.any() for W, _ in weights.convs.values())
    assert peak < 3 * LAYOUT_BYTES


def test_truncated_and_misdeclared_legacy_files(tmp_path):
    good = write_vgg(tmp_path / "good.pth")
    raw = good.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(raw[: len(raw) * 2 // 3])
    refused(cut, "corrupt")
    # A legacy file whose storage claims 2**40 elements and holds 64.
    path = tmp_path / "legacy.pth"
    refs = vgg_refs()
    with open(path, "wb") as f:
        for value in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            f.write(pickle.dumps(value, protocol=2))
        f.write(checkpoint_pickle(refs, {"0": np.zeros(SHARED, np.float32)}, {"0": 2**40}))
        f.write(pickle.dumps(["0"], protocol=2))
        f.write(struct.pack("<q", 2**40) + bytes(256))
    refused(path, "storage 0 of 1099511627776 elements runs past the end of the file")


def test_npz_files(tmp_path):
    weights = load_weights(write_vgg_npz(tmp_path / "good.npz"))
    assert all(np.all(W == 0.5) for W, _ in weights.convs.values())
    f_order = np.asfortranarray(np.arange(64 * 27, dtype=np.float32).reshape(64, 3, 3, 3))
    weights = load_weights(write_vgg_npz(tmp_path / "fortran.npz",
                                         change={"conv1_1_W.npy": stored(npz_bytes(f_order))}))
    np.testing.assert_array_equal(weights.convs["conv1_1"][0], f_order)

    cases = {
        "bomb": (zero_bomb(2 * GiB, prefix=npy_header((64, 3, 3, 3))),
                 "conv1_1_W.npy holds 2147483648 bytes of data, but its header declares 6912"),
        "claims": (stored(npy_header((2**40, 64))), "its header declares 281474976710656"),
        "header": (stored(b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**31)),
                   "conv1_1_W.npy has a header of 2147483648 bytes"),
        "objects": (stored(npz_bytes(np.array([None] * 1728, object).reshape(64, 3, 3, 3))),
                    "conv1_1_W holds O elements"),
        "ints": (stored(npz_bytes(np.zeros((64, 3, 3, 3), np.int32))), "conv1_1_W holds i4"),
        "nan": (stored(npz_bytes(np.full((64, 3, 3, 3), np.nan, np.float32))),
                "conv1_1_W holds 1728 NaN or infinite values"),
    }
    for case, (entry, words) in cases.items():
        refused(write_vgg_npz(tmp_path / f"{case}.npz", change={"conv1_1_W.npy": entry}), words)
    scale = {"scale.npy": stored(npz_bytes(np.array(np.nan)))}
    refused(write_vgg_npz(tmp_path / "scale.npz", change=scale), "scale holds 1 NaN")
    mean = {"mean.npy": stored(npz_bytes(np.zeros(10**6)))}
    refused(write_vgg_npz(tmp_path / "mean.npz", change=mean), "mean is not 3 numbers")


def test_generic_reader_refuses_views_larger_than_their_storages(tmp_path):
    path = tmp_path / "broadcast.pth"
    write_zip_checkpoint(path, {"t": TensorRef("0", 0, (2**20, 2**20), (0, 0))},
                         {"0": np.zeros(1, np.float32)})
    with pytest.raises(ModelError, match=r"broadcast\.pth: its tensors would take 4398046511104 "
                                         r"bytes from storages of 4"):
        load_torch_checkpoint(path)


# --- the cases of issue 24, through the command line -----------------------------------------


def _stride0_tiny(path: Path) -> list[str]:
    """The 650-byte file: one tensor, 2**40 elements viewing a single float."""
    write_zip_checkpoint(path, {"features.0.weight": TensorRef("0", 0, (2**20, 2**20, 1), (0, 0, 0))},
                         {"0": np.zeros(1, np.float32)})
    assert path.stat().st_size < 1000
    return ["not VGG-19 weights: missing features.0.bias"]


def _stride0_right_shape(path: Path) -> list[str]:
    change = {"features.34.weight": TensorRef("0", 0, (512, 512, 3, 3), (0, 0, 0, 0))}
    write_vgg(path, change=change)
    return ["features.34.weight is a view with a stride of 0"]


def _bomb_missing_key(path: Path) -> list[str]:
    """A 2 MB zip whose storage inflates to 2 GiB, and a layer missing."""
    write_vgg(path, drop=("features.32.bias",), extra={"1": np.zeros(0, np.float32)},
              numels={"1": GiB // 2}, entries={"1": zero_bomb(2 * GiB)},
              change={"features.0.weight": TensorRef("1", 0, (64, 3, 3, 3), (27, 9, 3, 1))})
    return ["not VGG-19 weights: missing features.32.bias"]


def _bomb_storage(path: Path) -> list[str]:
    write_vgg(path, extra={"1": np.zeros(0, np.float32)}, numels={"1": GiB // 2},
              entries={"1": zero_bomb(2 * GiB)},
              change={"features.0.weight": TensorRef("1", 0, (64, 3, 3, 3), (27, 9, 3, 1))})
    return ["features.0.weight lies in a storage of 536870912 elements"]


def _bomb_pickle(path: Path) -> list[str]:
    write_vgg(path, data_pkl=zero_bomb(2 * GiB))
    return ["its pickle is 2147483648 bytes"]


def _nan(path: Path) -> list[str]:
    write_vgg(path, fill=math.nan)
    return ["features.0.weight holds 1728 NaN or infinite values"]


def _npz_bomb(path: Path) -> list[str]:
    write_vgg_npz(path, change={"conv5_4_W.npy": zero_bomb(2 * GiB, prefix=npy_header((512, 512, 3, 3)))})
    return ["conv5_4_W.npy holds 2147483648 bytes of data, but its header declares 9437184"]


CLI_CASES = {"stride 0, 2**40 elements": (_stride0_tiny, "pth"),
             "stride 0, right shape": (_stride0_right_shape, "pth"),
             "zip bomb, a layer missing": (_bomb_missing_key, "pth"),
             "zip bomb storage": (_bomb_storage, "pth"),
             "pickle bomb": (_bomb_pickle, "pth"),
             "all NaN": (_nan, "pth"),
             "npz bomb": (_npz_bomb, "npz")}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_command_line_refuses_hostile_weights_in_one_line_and_bounded_memory(tmp_path, case):
    make, suffix = CLI_CASES[case]
    bad = tmp_path / f"bad.{suffix}"
    words = make(bad)
    image = tmp_path / "a.png"
    y, x = np.mgrid[0:48, 0:48]
    Image.fromarray((np.stack([x * 5, y * 5, (x + y) * 2], axis=2) % 256).astype(np.uint8)
                    ).save(image)
    out = tmp_path / "out"
    done = run_measured(["run", str(image), str(image), "-o", str(out), "--weights", str(bad),
                         "--device", "cpu"], seconds=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"gpuanalogy: error: {bad}: "), done.stderr
    for word in words:
        assert word in done.stderr, done.stderr
    assert done.peak_rss_bytes < GiB, f"peak {done.peak_rss_bytes / 2**20:.0f} MiB"
    assert not out.exists()


# --- fuzz --------------------------------------------------------------------------------------

KEYS = list(vgg_refs())


def mostly(draw, usual, other: st.SearchStrategy):
    """``usual`` three times in four, else a draw from ``other``: keeps most crafted files sound
    enough to reach the later checks."""
    return usual if draw(st.integers(0, 3)) else draw(other)


@st.composite
def crafted_tensor(draw, key: str) -> tuple[TensorRef, np.ndarray | None, int | None]:
    """A layer: mostly as it should be, else any shape, strides and offset; in the shared
    storage or in its own (of any dtype, holding what the view needs or not, its length
    declared truly or not)."""
    right = vgg_refs()[key]
    shape = mostly(draw, right.size, st.sampled_from([right.size[::-1], (1,) * len(right.size)])
                   | st.lists(st.integers(0, 2**21), max_size=5).map(tuple))
    dense = tuple(int(np.prod(shape[i + 1:], dtype=object)) for i in range(len(shape)))
    strides = mostly(draw, dense, st.sampled_from([(0,) * len(shape), (1,) * len(shape)])
                     | st.lists(st.integers(0, 2**20), min_size=len(shape),
                                max_size=len(shape)).map(tuple))
    offset = mostly(draw, right.offset, st.integers(0, 2**41))
    if draw(st.booleans()):
        return TensorRef("0", offset, shape, strides), None, None
    reach = offset + 1 + sum((n - 1) * s for n, s in zip(shape, strides)) if all(shape) else 0
    size = mostly(draw, reach, st.sampled_from([max(reach - 1, 0), 0]) | st.integers(0, 4096))
    dtype = mostly(draw, np.float32, st.sampled_from([np.float16, np.float64, np.int64, bool]))
    own = np.full(min(size, 2**20), mostly(draw, 0.25, st.just(math.nan)), dtype)
    declared = mostly(draw, None, st.just(own.size + 1) | st.integers(0, 2**40))
    return TensorRef(key, offset, shape, strides), own, declared


@st.composite
def crafted_file(draw) -> dict:
    """What :func:`write_vgg` needs for a file of a few layers changed or dropped, a fill, and
    the shared storage's entry stating the truth or not."""
    changed = draw(st.lists(st.sampled_from(KEYS), max_size=3, unique=True))
    change, extra, numels = {}, {}, {}
    for key in changed:
        ref, own, declared = draw(crafted_tensor(key))
        change[key] = ref
        if own is not None:
            extra[key] = own
            if declared is not None:
                numels[key] = declared
    drop = tuple(mostly(draw, [], st.lists(st.sampled_from(KEYS), min_size=1, max_size=2)))
    fill = mostly(draw, 0.5, st.just(math.nan))
    stated = mostly(draw, None, st.sampled_from([0, 4 * SHARED - 4, 4 * SHARED, 2 * GiB]))
    entries = {} if stated is None else {"0": zero_bomb(1 << 24, stated=stated)}
    return {"change": change, "extra": extra, "numels": numels, "drop": drop, "fill": fill,
            "entries": entries}


@st.composite
def flips(draw) -> list[tuple[int, int]]:
    """Bytes to flip (position, xor): mostly none, else a few, often in the pickle's span."""
    where = st.integers(0, 4000) | st.integers(0, 10**6)
    return mostly(draw, [], st.lists(st.tuples(where, st.integers(1, 255)), min_size=1,
                                     max_size=3))


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=crafted_file(), flipped=flips())
def test_fuzz_crafted_weights_files(spec, flipped):
    """Any crafted file loads into finite weights of the right shapes, or is refused in one line
    naming it; either way within a few times a valid file's memory."""
    with tempfile.TemporaryDirectory() as folder:
        path = write_vgg(Path(folder) / "fuzz.pth", **spec)
        raw = bytearray(path.read_bytes())
        for position, xor in flipped:   # and a few bytes flipped
            raw[position % len(raw)] ^= xor
        path.write_bytes(raw)
        tracemalloc.start()
        try:
            weights = load_weights(path)
        except ModelError as error:
            message = str(error)
            assert message.startswith(f"{path}: ") and "\n" not in message, message
        else:
            for name, (W, b) in weights.convs.items():
                cin, cout = VGG19_CHANNELS[name]
                assert W.shape == (cout, cin, 3, 3) and b.shape == (cout,)
                assert np.isfinite(W).all() and np.isfinite(b).all()
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert peak < 3 * LAYOUT_BYTES, f"{peak / 2**20:.0f} MiB"


def test_zip_reader_itself_refuses_nothing_it_can_read(tmp_path):
    """The hand-written zips are ordinary zips: zipfile reads them back as written."""
    path = tmp_path / "plain.zip"
    write_zip(path, {"a": stored(b"abc"), "b": deflated(b"xyz" * 100)})
    with zipfile.ZipFile(path) as archive:
        assert archive.read("a") == b"abc" and archive.read("b") == b"xyz" * 100
