"""Test-wide set-up.

Without a GPU, Numba's CUDA kernels run in its CUDA simulator: the flag has to be set before
``numba.cuda`` is first imported, which is why it is set here, at collection time.
"""
from __future__ import annotations

import os
import shutil
import subprocess


def _has_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


if "NUMBA_ENABLE_CUDASIM" not in os.environ and not _has_gpu():
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
