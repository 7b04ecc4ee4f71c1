"""The frames of a clip: a folder of images (sorted by name) or a video file, and the video
``gpuanalogy video`` writes back.

Folders need nothing beyond the package. Video files are read and written with PyAV (FFmpeg's
libraries), the optional extra ``pip install 'gpuanalogy[video]'``.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, error_reason, printable
from ..files import atomic_path
from ..images import read_image
from .pairs import IMAGE_SUFFIXES, image_files

__all__ = ["Frame", "FrameSource", "open_clip", "write_video", "VIDEO_SUFFIXES"]

#: File endings read as video files (anything else that is a file is refused).
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg",
                            ".gif"})


@dataclass(frozen=True)
class Frame:
    """One frame: its name (the file's stem, or ``frame_000001`` in a video) and where it is
    read from (a file, or the video's decoder)."""

    index: int
    name: str
    path: Path | None = None


@dataclass
class FrameSource:
    """The frames of a folder or a video file, read one after another.

    Attributes
    ----------
    source : Path
    frames : list of Frame
    fps : Fraction or None
        The video's frame rate (None for a folder).
    """

    source: Path
    frames: list[Frame]
    fps: Fraction | None = None

    @property
    def is_video(self) -> bool:
        return self.fps is not None

    def images(self) -> Iterator[tuple[Frame, np.ndarray | InputError]]:
        """Every frame in order with its image (H, W, 3) uint8, or the error that reading it
        raised (a folder's unreadable frame does not stop the others)."""
        if not self.is_video:
            for frame in self.frames:
                try:
                    yield frame, read_image(frame.path)  # type: ignore[arg-type]
                except InputError as error:
                    yield frame, error
            return
        for frame, image in zip(self.frames, _decode(self.source)):
            yield frame, image


def open_clip(source: str | os.PathLike[str]) -> FrameSource:
    """The frames of a folder of images or of a video file (counted by decoding it once)."""
    path = Path(os.fspath(source))
    label = printable(os.fspath(source))
    if path.is_dir():
        files = image_files(path)
        if not files:
            raise InputError(f"{label}: no images in the folder (looked for "
                             f"{', '.join(sorted(IMAGE_SUFFIXES))})")
        return FrameSource(path, [Frame(i, f.stem, f) for i, f in enumerate(files)])
    if not path.exists():
        raise InputError(f"{label}: no such file or folder")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(f"{label}: neither a folder of frames nor a video file (looked for "
                         f"{', '.join(sorted(VIDEO_SUFFIXES))})")
    count = sum(1 for _ in _decode(path))
    if count == 0:
        raise InputError(f"{label}: the video has no frames")
    frames = [Frame(i, f"frame_{i + 1:06d}") for i in range(count)]
    return FrameSource(path, frames, _frame_rate(path))


def _av(what: str) -> Any:
    try:
        import av  # noqa: PLC0415 - the optional extra
    except ImportError:
        raise InputError(f"{what}: video files need PyAV: pip install 'gpuanalogy[video]' (or "
                         f"give a folder of frames)") from None
    return av


def _decode(path: Path) -> Iterator[np.ndarray]:
    """The frames of a video file as (H, W, 3) uint8 arrays."""
    label = printable(os.fspath(path))
    av = _av(label)
    try:
        with av.open(os.fspath(path)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, OSError, ValueError, IndexError) as error:
        raise InputError(f"{label}: cannot read the video: {error_reason(error)}") from None


def _frame_rate(path: Path) -> Fraction:
    av = _av(printable(os.fspath(path)))
    with av.open(os.fspath(path)) as container:
        rate = container.streams.video[0].average_rate
    return Fraction(rate) if rate else Fraction(25)


def write_video(path: str | os.PathLike[str], images: list[Path], fps: Fraction) -> None:
    """Encode the PNG frames ``images`` as an H.264 video (MPEG-4 part 2 where the FFmpeg
    build lacks H.264) at ``fps``, written to a temporary name and renamed into place."""
    label = printable(os.fspath(path))
    av = _av(label)
    first = read_image(images[0])
    height, width = (side + side % 2 for side in first.shape[:2])  # 4:2:0 needs even sides
    with atomic_path(path) as temp:
        with av.open(os.fspath(temp), mode="w", format="mp4") as container:
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            stream = container.add_stream(codec, rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for image_path in images:
                image = read_image(image_path)
                padded = np.pad(image, ((0, height - image.shape[0]),
                                        (0, width - image.shape[1]), (0, 0)), mode="edge")
                frame = av.VideoFrame.from_ndarray(padded, format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
