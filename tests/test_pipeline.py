"""analogy's contract at its boundary (the method itself is tested in test_end_to_end.py)."""
from __future__ import annotations

import types

import numpy as np
import pytest

from gpuanalogy import AnalogyConfig, AnalogyResult, analogy
from gpuanalogy.backend import Backend, cpu_backend
from gpuanalogy.errors import InputError
from gpuanalogy.pipeline import _input_names


def test_a_model_on_another_device_than_asked_for_is_refused_before_any_work():
    gpu_model = types.SimpleNamespace(backend=Backend("cuda", np, cpu_backend().kernels))
    image = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(InputError, match="runs on cuda but device 'cpu' was asked for"):
        analogy(image, image, AnalogyConfig(device="cpu"), model=gpu_model)
    with pytest.raises(InputError, match="runs on cuda but device 'cpu' was asked for"):
        analogy(image, image, model=gpu_model, backend="cpu")


def test_a_list_of_one_exemplar_without_b_stays_without_b():
    """``analogy(a, [b1])`` with ``outputs="a_prime"``: the list form has no B, not [None]."""
    a_prime = np.zeros((4, 5, 3), np.uint8)
    field = np.zeros((4, 5, 2), np.float32)
    result = AnalogyResult(a_prime, None, field, field,
                           working_shapes={"a": (4, 5), "b_prime": (4, 5)}).as_lists()
    assert result.b is None and result.b_refined is None
    assert len(result.nnf_ba) == 1 and result.working_shapes["b_prime"] == [(4, 5)]


def test_input_names_fill_in_what_was_not_given():
    """One name alone is A's; the exemplar keeps its default name, numbered when several."""
    assert _input_names(("a.png",), 1) == ("a.png", "b_prime")
    assert _input_names(("a.png", "b.png"), 2) == ("a.png", "b.png[1]", "b.png[2]")
    assert _input_names((), 1) == ("a", "b_prime")
