"""analogy's contract at its boundary (the method itself is tested in test_end_to_end.py)."""
from __future__ import annotations

import types

import numpy as np
import pytest

from gpuanalogy import AnalogyConfig, analogy
from gpuanalogy.backend import Backend, cpu_backend
from gpuanalogy.errors import InputError


def test_a_model_on_another_device_than_asked_for_is_refused_before_any_work():
    gpu_model = types.SimpleNamespace(backend=Backend("cuda", np, cpu_backend().kernels))
    image = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(InputError, match="runs on cuda but device 'cpu' was asked for"):
        analogy(image, image, AnalogyConfig(device="cpu"), model=gpu_model)
    with pytest.raises(InputError, match="runs on cuda but device 'cpu' was asked for"):
        analogy(image, image, model=gpu_model, backend="cpu")
