"""Errors a user sees: each carries one line that names the input and the problem.

The CLI prints ``str(error)`` and exits with status 2; ``--debug`` shows the traceback.
"""
from __future__ import annotations

#: Exit status of the command line for an error of this module (bad input, model, GPU memory).
EXIT_ERROR = 2


class GpuAnalogyError(Exception):
    """Base class for errors whose message is meant for the user, in one line."""


class InputError(GpuAnalogyError, ValueError):
    """An input image, array or option is unusable (the message names which and why)."""


class ModelError(GpuAnalogyError):
    """A weights or model file is missing, corrupt, or holds something we refuse to load."""


class DeviceMemoryError(GpuAnalogyError, MemoryError):
    """The GPU ran out of memory; the message suggests a smaller ratio or the CPU."""


class NumericalError(GpuAnalogyError, ArithmeticError):
    """A computation produced NaN or infinity (the message names the stage and level)."""
