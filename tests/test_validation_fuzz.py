"""Fuzz the input validation: whatever array it is given, the validator returns a clean image
or raises one InputError, and ``analogy`` refuses a bad array before any work starts."""
from __future__ import annotations

import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gpuanalogy import analogy
from gpuanalogy.errors import InputError
from gpuanalogy.checks import MIN_SIDE, to_float_image

# Any scalar dtype numpy has, in either byte order; but the ones images use come up more
# often, so that most examples get past the dtype check and exercise shapes and values.
IMAGE_DTYPES = st.sampled_from(["u1", "u2", "<u2", ">u2", "f2", "f4", ">f4", "f8"]).map(np.dtype)
DTYPES = st.one_of(IMAGE_DTYPES, IMAGE_DTYPES, hnp.scalar_dtypes(), hnp.floating_dtypes(endianness="?"))

SIDES = st.sampled_from([0, 1, 2, 5, MIN_SIDE - 1, MIN_SIDE, MIN_SIDE + 3])
BIG = st.sampled_from([MIN_SIDE, MIN_SIDE + 1, MIN_SIDE + 3])

# 0 to 4 dimensions, sides from 0 up: arbitrary small shapes, image-like shapes with sides
# on both sides of MIN_SIDE and 0-5 channels, and valid image shapes.
SHAPES = st.one_of(
    hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4),
    st.tuples(SIDES, SIDES),
    st.tuples(SIDES, SIDES, st.integers(0, 5)),
    st.tuples(st.integers(0, 4), SIDES, SIDES),
    st.tuples(BIG, BIG),
    st.tuples(BIG, BIG, st.sampled_from([1, 3, 4])),
    st.tuples(BIG, BIG, st.sampled_from([1, 3, 4])),
)

# Names as a caller would write them: printable, one line.
NAMES = st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "Zs"]), min_size=1, max_size=12)


@st.composite
def arrays(draw):
    dtype = draw(DTYPES)
    shape = draw(SHAPES)
    if dtype.kind == "f" and draw(st.booleans()):
        # Mostly valid floats, salted with NaN, infinity and out-of-range values.
        elements = st.one_of(
            st.floats(0, 1, width=min(8 * dtype.itemsize, 64)),
            st.sampled_from([np.nan, np.inf, -np.inf, -0.5, 1.5, 255.0, 1.0005, -1e-4]),
        )
        fill = st.floats(0, 1, width=min(8 * dtype.itemsize, 64))
        return draw(hnp.arrays(dtype, shape, elements=elements, fill=fill))
    return draw(hnp.arrays(dtype, shape))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(array=arrays(), name=NAMES)
def test_to_float_image_returns_an_image_or_raises_input_error(array, name):
    original = array.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # alpha notices
        try:
            out = to_float_image(array, name=name)
        except InputError as error:
            message = str(error)
            assert message, "empty message"
            assert "\n" not in message and "\r" not in message, message
            assert name in message, (name, message)
            return
    assert out.dtype == np.float32
    assert out.shape == array.shape[:2] + (3,)
    assert min(out.shape[:2]) >= MIN_SIDE
    assert np.isfinite(out).all()
    assert out.min(initial=0.0) >= 0.0 and out.max(initial=0.0) <= 1.0
    assert not np.shares_memory(out, array)
    np.testing.assert_array_equal(array, original)  # the input is left alone


class _Reached(Exception):
    """The analogy got past validation to its first use of the model."""


class _Model:
    """A stand-in network: any use of it means the inputs were accepted."""

    @property
    def backend(self):
        raise _Reached


GOOD = np.full((MIN_SIDE, MIN_SIDE, 3), 128, np.uint8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(array=arrays(), as_a=st.booleans())
def test_analogy_refuses_a_bad_array_before_any_work(array, as_a):
    name = "a" if as_a else "b_prime"
    pair = (array, GOOD) if as_a else (GOOD, array)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # alpha notices
        try:
            to_float_image(array, name=name)
            valid = True
        except InputError:
            valid = False
        try:
            analogy(*pair, model=_Model())
        except InputError as error:
            assert not valid, str(error)
            message = str(error)
            assert message.startswith(f"{name}: ") and "\n" not in message, message
            return
        except _Reached:
            assert valid
            return
    raise AssertionError("analogy neither refused the input nor used the model")
