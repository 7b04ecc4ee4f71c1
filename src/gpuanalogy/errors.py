"""Errors a user sees: each carries one line that names the input and the problem.

The command line prints ``str(error)`` and exits with status 2; ``--debug`` shows the
traceback. :func:`printable` and :func:`error_reason` build those one-line messages.

Only what a caller can fix is an :class:`InputError`; a broken promise inside the package (a
shape the pipeline itself produced) is a plain ``ValueError``, a bug to report, never "your
input is bad" with exit status 2.
"""
from __future__ import annotations

import unicodedata

#: Exit status of the command line for an error of this module (bad input, model, GPU memory).
EXIT_ERROR = 2


class GpuAnalogyError(Exception):
    """Base class for errors whose message is meant for the user, in one line."""


class InputError(GpuAnalogyError, ValueError):
    """An input image, array or option is unusable (the message names which and why)."""


class ModelError(GpuAnalogyError):
    """A weights or model file is missing, corrupt, or holds something we refuse to load."""


class DeviceMemoryError(GpuAnalogyError, MemoryError):
    """The GPU or the machine lacks the memory a run needs: found before the work starts, or
    when an allocation fails; the message says what would fit (a smaller ratio, the CPU, ...)."""


class NumericalError(GpuAnalogyError, ArithmeticError):
    """A computation produced NaN or infinity (the message names the stage and level)."""


class ClusterError(GpuAnalogyError):
    """The Dask cluster a batch is sent to cannot be reached or used (the message names its
    address and what failed)."""


class Notice(UserWarning):
    """Something the user should know that is no error: an input read with a change (its alpha
    composited, an animation's first frame), an input processed below its size.

    The library warns with it (``warnings.warn(text, Notice)``); the command line prints each
    as one plain line, ``gpuanalogy: notice: <text>``, never with a source path.
    """


def printable(text: str) -> str:
    """``text`` made safe for a one-line message: line breaks and control characters escaped."""
    return "".join(
        char.encode("unicode_escape").decode("ascii")
        if unicodedata.category(char)[0] == "C" or unicodedata.category(char) in ("Zl", "Zp")
        else char
        for char in text
    )


def error_reason(error: BaseException) -> str:
    """A one-line description of an exception, for the end of a message."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = " ".join(str(error).split())
    return text or type(error).__name__
