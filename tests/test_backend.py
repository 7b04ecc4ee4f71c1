import sys

import numpy as np
import pytest

from gpuanalogy.backend import Backend, cpu_backend, default_threads, get_backend
from gpuanalogy.errors import DeviceMemoryError


def test_cpu_backend_is_numpy_and_cpu_kernels():
    b = get_backend("cpu")
    assert b.name == "cpu" and b.xp is np and b.kernels.name == "cpu"
    assert get_backend(b) is b


def test_cuda_request_without_gpu_says_so_once_and_runs_on_cpu(capsys):
    try:
        import cupy  # noqa: F401
        cupy.cuda.runtime.getDeviceCount()
        pytest.skip("a GPU is present")
    except Exception:
        pass
    b = get_backend("cuda")
    err = capsys.readouterr().err
    assert b.name == "cpu"
    assert err.count("\n") == 1 and "running on the CPU" in err


def test_the_cuda_compiler_check_compiles_a_kernel():
    from gpuanalogy.kernels import cuda

    cuda.check_compiler()        # in the simulator here, on the device where there is one


def test_a_gpu_whose_kernels_cannot_compile_says_so_and_runs_on_cpu(monkeypatch, capsys):
    """numba-cuda 0.30.4 on NumPy 2.5 (seen on an H100 image) compiles no kernel: with a GPU
    found, even ``"auto"`` says why it runs on the CPU, in one line."""
    import types

    from gpuanalogy.kernels import cuda

    runtime = types.SimpleNamespace(getDeviceCount=lambda: 1)
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(
        cuda=types.SimpleNamespace(runtime=runtime)))

    def broken():
        raise AttributeError("module 'numpy' has no attribute 'row_stack'")

    monkeypatch.setattr(cuda, "check_compiler", broken)
    for device in ("auto", "cuda"):
        b = get_backend(device)
        err = capsys.readouterr().err
        assert b.name == "cpu"
        assert err.count("\n") == 1 and "numba-cuda cannot compile kernels here" in err
        assert "row_stack" in err and "running on the CPU" in err
    assert get_backend("auto", quiet=True).name == "cpu" and capsys.readouterr().err == ""


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match="auto"):
        get_backend("tpu")


class OutOfMemoryError(Exception):
    """Stands in for cupy.cuda.memory.OutOfMemoryError."""


@pytest.mark.parametrize("exc", [
    OutOfMemoryError("Out of memory allocating 1,073,741,824 bytes"),
    RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : BFCArena::AllocateRawInternal "
                 "Failed to allocate memory for requested buffer of size 123"),
])
def test_gpu_out_of_memory_becomes_one_clear_line(exc):
    gpu = Backend("cuda", np, cpu_backend().kernels)
    with pytest.raises(DeviceMemoryError) as err:
        with gpu.out_of_memory_as_error("analogy of 700x500"):
            raise exc
    message = str(err.value)
    assert "\n" not in message and "700x500" in message and "--ratio" in message
    assert "--device cpu" in message


def test_other_errors_pass_through():
    gpu = Backend("cuda", np, cpu_backend().kernels)
    with pytest.raises(KeyError):
        with gpu.out_of_memory_as_error("x"):
            raise KeyError("nope")


def test_default_threads(monkeypatch):
    monkeypatch.setenv("GPUANALOGY_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.delenv("GPUANALOGY_THREADS")
    assert default_threads() >= 1


def test_the_backend_chooses_the_providers_and_the_session_options(monkeypatch, caplog):
    caplog.set_level("WARNING", logger="gpuanalogy")
    cpu = cpu_backend()
    assert cpu.on_host and cpu.max_unpool and cpu.device_id == 0
    assert cpu.session_providers({"CPUExecutionProvider"}) == ["CPUExecutionProvider"]
    wants_cuda = Backend("cuda", np, cpu.kernels,
                         (("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"),
                         device_id=1, max_unpool=False)
    assert wants_cuda.session_providers({"CPUExecutionProvider", "CUDAExecutionProvider"}) == [
        ("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert wants_cuda.session_providers({"CPUExecutionProvider"}) == ["CPUExecutionProvider"]
    assert "no CUDAExecutionProvider" in caplog.text
    monkeypatch.setenv("GPUANALOGY_THREADS", "2")
    options = cpu.session_options()
    assert options.intra_op_num_threads == 2 and not options.enable_profiling
    assert cpu.session_options(profile_prefix="x").enable_profiling
