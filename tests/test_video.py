"""The coherence machinery of a clip: on a pure shift, each frame's fields are the previous
frame's moved by the shift; a chain resumed from saved fields stays coherent; frames come and go
one at a time."""
from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from gpuanalogy import AnalogyConfig, VideoConfig, video_analogy
from gpuanalogy.errors import InputError
from gpuanalogy.video import Clip

SHIFT = 16          # a multiple of relu5_1's stride, so every level sees a whole-cell shift
SIZE = 96
CONFIG = AnalogyConfig(min_side=32, device="cpu", lbfgs_iterations=30)


def frame(t: int) -> np.ndarray:
    """Frame t of a camera panning right over the astronaut photo by SHIFT pixels a frame."""
    photo = data.astronaut()
    return photo[100:100 + SIZE, 100 + SHIFT * t:100 + SHIFT * t + SIZE]


def exemplar() -> np.ndarray:
    return data.chelsea()[50:200, 100:250]


def moved_fraction(now: np.ndarray, before: np.ndarray, border: int = 8) -> float:
    """Share of interior pixels p with now(p) == before(p + (0, SHIFT))."""
    inside = now[border:-border, border:-border - SHIFT]
    shifted = before[border:-border, border + SHIFT:-border]
    return float((inside == shifted).all(-1).mean())


@pytest.fixture(scope="module")
def model():
    from gpuanalogy.features import VGG19

    return VGG19(None, "cpu")


@pytest.mark.slow
def test_on_a_pure_shift_each_frames_fields_are_the_previous_ones_moved(model):
    taken = []

    def frames():
        for t in range(3):
            taken.append(t)
            yield frame(t)

    results = []
    for done in video_analogy(frames(), exemplar(), CONFIG, model=model):
        assert len(taken) == len(results) + 1       # one frame read per result, no read-ahead
        results.append(done)
    assert [r.warm for r in results] == [False, True, True]
    for before, now in zip(results, results[1:]):
        assert moved_fraction(now.result.nnf_ab, before.result.nnf_ab) >= 0.95
        assert "motion" in now.result.timings
        assert now.result.a_prime.shape == (SIZE, SIZE, 3)
    warm = [d.stats for d in results[1].result.deconvolutions]
    assert all(s.iterations <= VideoConfig().lbfgs_iterations for s in warm)

    # A chain resumed from frame 1's saved fields goes on as coherently.
    clip = Clip(exemplar(), CONFIG, model=model)
    clip.resume_after(frame(1), results[1].result.nnf_ab, results[1].result.nnf_ba)
    resumed = clip.frame(frame(2))
    assert resumed.warm
    assert moved_fraction(resumed.result.nnf_ab, results[1].result.nnf_ab) >= 0.9
    with pytest.raises(InputError, match=r"frame 9: 80x96 differs from the clip's frame size 96x96"):
        clip.frame(frame(3)[:, :80], name="frame 9")


def test_video_settings_are_checked():
    with pytest.raises(InputError, match="keep_margin"):
        VideoConfig(keep_margin=1.0)
    with pytest.raises(InputError, match="motion='flow'"):
        VideoConfig(motion="flow")


def test_a_warm_frame_of_a_prime_alone_runs_only_its_deconvolutions_under_the_clips_rule(model):
    """With ``outputs="a_prime"`` and the adaptive stop, the warm frame deconvolves A' alone,
    each run under the clip's rule with the warm cap; both fields still come back."""
    config = CONFIG.replace(outputs="a_prime", lbfgs_stop="adaptive", lbfgs_iterations=4,
                            patchmatch_iterations=2, min_side=32)
    video = VideoConfig(lbfgs_iterations=3, patchmatch_iterations=1)
    clip = Clip(exemplar(), config, video=video, model=model)
    clip.frame(frame(0)[:64, :64])
    warm = clip.frame(frame(1)[:64, :64])
    assert warm.warm and warm.result.b is None and warm.result.nnf_ba is not None
    runs = warm.result.deconvolutions
    assert [(d.level, d.output) for d in runs] == [(lv, "a_prime") for lv in (4, 3, 2, 1)]
    assert warm.result.warped == [(lv, "b") for lv in (4, 3, 2, 1)]   # the clip deconvolves A''s
    assert all((d.stats.rule, d.stats.max_iterations) == ("adaptive", 3) for d in runs)
    assert all(1 <= d.stats.iterations <= 3 and d.stats.stop for d in runs)


def test_a_clip_of_both_outputs_deconvolves_the_levels_a_single_pair_warps(model):
    """A single pair under the adaptive stop warps relu4_1 of both outputs and B's relu3_1;
    a clip deconvolves them all, first frame and warm frames, so each frame's solution is
    carried to the next."""
    config = CONFIG.replace(outputs="both", lbfgs_stop="adaptive", lbfgs_iterations=3,
                            patchmatch_iterations=1, min_side=32)
    video = VideoConfig(lbfgs_iterations=2, patchmatch_iterations=1)
    clip = Clip(exemplar(), config, video=video, model=model)
    for n in (0, 1):
        result = clip.frame(frame(n)[:64, :64]).result
        assert result.warped == []
        assert sorted((d.level, d.output) for d in result.deconvolutions) == sorted(
            (lv, side) for lv in (4, 3, 2, 1) for side in ("a_prime", "b"))
