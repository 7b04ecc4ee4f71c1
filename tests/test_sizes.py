"""The memory a run needs, checked before any work (gpuanalogy.sizes), and the WLS solve's."""
from __future__ import annotations

import numpy as np
import pytest

from gpuanalogy import multigrid, refinement, sizes, wls_system
from gpuanalogy.backend import cpu_backend
from gpuanalogy.config import AnalogyConfig
from gpuanalogy.errors import DeviceMemoryError
from gpuanalogy.pipeline import analogy

CAMERA = ((5304, 7952), (5304, 7952))   # two 42 MP photographs, (H, W)
PHOTO = AnalogyConfig.preset("photo2photo")


def test_the_estimate_grows_with_the_input_and_the_full_solve_dominates(monkeypatch):
    monkeypatch.setattr(multigrid, "available", lambda: False)   # the direct solve alone
    small = sizes.memory_needed(((1400, 2100), (1400, 2100)), PHOTO)
    big = sizes.memory_needed(CAMERA, PHOTO)
    wls = sizes.memory_needed(CAMERA, PHOTO.replace(refine_upsample="wls"))
    assert small.total < big.total < wls.total
    assert big.working == small.working            # the working size is capped by the size rule
    assert wls.refinement > 40 * big.refinement     # the full WLS solve takes about 3 KB a pixel
    assert big.total - big.working < 5e9 < 100e9 < wls.total - wls.working
    # On a GPU the working size's arrays and the refinement's solve are device memory.
    gpu = sizes.memory_needed(CAMERA, PHOTO.replace(refine_upsample="wls"), on_host=False)
    assert gpu.refinement == 0 and gpu.working < small.working


def test_a_run_that_fits_passes_and_returns_the_estimate():
    need = sizes.check_memory(CAMERA, PHOTO, available=10**12)
    assert need == sizes.memory_needed(CAMERA, PHOTO)


@pytest.mark.parametrize("config, free, advice", [
    (PHOTO.replace(refine_upsample="wls"), 30e9,
     r"try refinement at the working size \(--refine-upsample guided\)$"),
    (PHOTO.replace(refine_upsample="wls"), 8e9,
     r"try --refine-upsample guided with --ratio 0\.75$"),
    (PHOTO, 7e9, r"try --ratio 0\.\d+$"),
    (PHOTO, 4e9, r"try smaller inputs \(at most \d+x\d+ and \d+x\d+\)"),
    (PHOTO, 1e6, "try a machine with more memory$"),
])
def test_a_run_that_cannot_fit_is_refused_in_one_line_saying_what_fits(config, free, advice):
    with pytest.raises(DeviceMemoryError, match=advice) as caught:
        sizes.check_memory(CAMERA, config, available=int(free))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("a 7952x5304 and b_prime 7952x5304 need about ")
    assert f"but {free / 1e9:.1f} GB is free" in message or "MB is free" in message


def test_analogy_refuses_before_any_work(monkeypatch):
    monkeypatch.setattr(sizes, "available_bytes", lambda: 10**6)

    class Model:   # a network that must never run
        backend = cpu_backend()

        def __getattr__(self, name):
            raise AssertionError(f"the model was used ({name}) before the memory check")

    image = np.zeros((300, 400, 3), np.uint8)
    with pytest.raises(DeviceMemoryError, match="a 400x300 and b_prime 400x300 need about"):
        analogy(image, image, PHOTO.replace(device="cpu"), model=Model())


def test_the_wls_solve_checks_its_memory_before_factorising(monkeypatch):
    monkeypatch.setattr(wls_system, "available_bytes", lambda: 10**5)
    image = np.random.default_rng(0).random((40, 50)).astype(np.float32)
    with pytest.raises(DeviceMemoryError, match="the WLS solve over 50x40 pixels needs about"):
        refinement.wls_filter(image, image, solver="direct")


def test_superlu_running_out_becomes_the_one_line_error(monkeypatch):
    import scipy.sparse.linalg

    def failing_splu(*args, **kwargs):
        raise RuntimeError("SUPERLU_MALLOC fails for buf in intMalloc() at line 38")

    monkeypatch.setattr(scipy.sparse.linalg, "splu", failing_splu)
    image = np.random.default_rng(0).random((40, 50)).astype(np.float32)
    with pytest.raises(DeviceMemoryError, match="50x40 pixels: the machine ran out of memory; "
                                                r"try refinement at the working size"):
        refinement.wls_filter(image, image, solver="direct")


def test_the_command_line_refuses_in_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    from PIL import Image

    from gpuanalogy.app.main import main

    monkeypatch.setattr(sizes, "available_bytes", lambda: 10**6)
    image, exemplar = tmp_path / "photo.png", tmp_path / "style.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(image)
    Image.fromarray(np.zeros((48, 80, 3), np.uint8)).save(exemplar)
    out = tmp_path / "out"
    code = main(["run", str(image), str(exemplar), "-o", str(out), "--preset", "photo2photo",
                 "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "Traceback" not in "".join(err)
    assert err[-1].startswith(f"gpuanalogy: error: {image} 64x64 and {exemplar} 80x48 need "
                              "about ")
    assert not out.exists() or not any(out.iterdir())   # no output files


def test_fields_refined_at_the_input_size_add_memory_linear_in_the_pixels():
    style = AnalogyConfig.preset("photo2style", upsample="cubic")
    pixels = CAMERA[0][0] * CAMERA[0][1]
    cubic = sizes.memory_needed(CAMERA, style)
    refined = sizes.memory_needed(CAMERA, style.replace(upsample="patchmatch"))
    assert cubic.total < refined.total < cubic.total + 50 * pixels + 100 * 2**20


def test_with_pyamg_the_full_solve_is_estimated_at_the_multigrid_solves_linear_memory(
        monkeypatch):
    wls = PHOTO.replace(refine_upsample="wls")
    monkeypatch.setattr(multigrid, "available", lambda: True)
    amg = sizes.memory_needed(CAMERA, wls)
    monkeypatch.setattr(multigrid, "available", lambda: False)
    direct = sizes.memory_needed(CAMERA, wls)
    pixels = CAMERA[0][0] * CAMERA[0][1]
    assert amg.refinement == multigrid.solve_bytes(*CAMERA[0]) + 220 * pixels
    assert amg.refinement < direct.refinement / 4
