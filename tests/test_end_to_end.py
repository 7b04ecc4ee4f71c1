"""The whole method on small pairs (the one slow test of the suite)."""
import numpy as np
import pytest
from skimage import data
from skimage.transform import resize

from gpuanalogy import AnalogyConfig, analogy
from gpuanalogy.pipeline import SizeNotice

pytestmark = pytest.mark.slow

SMALL = dict(min_side=32, device="cpu", lbfgs_iterations=30)


def _photo(size):
    return (resize(data.astronaut()[30:330, 100:400], size, order=3, anti_aliasing=True) * 255
            ).astype(np.uint8)


def _psnr(x, y):
    mse = np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2)
    return np.inf if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def model():
    from gpuanalogy.features import VGG19
    return VGG19(None, "cpu")


def test_identity_pair_from_a_random_start_recovers_the_identity(model):
    a = _photo((64, 64))
    result = analogy(a, a, AnalogyConfig(nnf_init="random", seed=3, **SMALL), model=model)
    rows, cols = np.mgrid[0:64, 0:64]
    hit = (result.nnf_ab[..., 0] == rows) & (result.nnf_ab[..., 1] == cols)
    hit_ba = (result.nnf_ba[..., 0] == rows) & (result.nnf_ba[..., 1] == cols)
    interior = (slice(4, -4), slice(4, -4))
    assert hit[interior].mean() >= 0.98
    assert hit_ba[interior].mean() >= 0.98
    assert _psnr(result.a_prime, a) >= 35
    assert _psnr(result.b, a) >= 35


def test_pairs_of_different_size_and_aspect(model):
    a = _photo((48, 72))
    b_prime = (resize(data.chelsea(), (64, 40), order=3, anti_aliasing=True) * 255).astype(np.uint8)
    events = []
    result = analogy(a, b_prime, AnalogyConfig(**SMALL), model=model, on_progress=events.append)
    assert result.a_prime.shape == (48, 72, 3) and result.a_prime.dtype == np.uint8
    assert result.b.shape == (64, 40, 3) and result.b.dtype == np.uint8
    assert result.nnf_ab.shape == (48, 72, 2) and result.nnf_ab.dtype == np.float32
    assert result.nnf_ba.shape == (64, 40, 2)
    assert (result.nnf_ab[..., 0] >= 0).all() and (result.nnf_ab[..., 0] <= 63).all()
    assert (result.nnf_ab[..., 1] >= 0).all() and (result.nnf_ab[..., 1] <= 39).all()
    assert {"features", "patchmatch", "deconvolution", "output"} <= set(result.timings)
    assert [e.level for e in events if e.stage == "patchmatch"] == [5, 4, 3, 2, 1]
    assert len(result.deconvolutions) == 5    # the adaptive stop warps level 4, B's level 3 too
    # A' takes its colours from B': its mean colour moves toward B''s.
    assert np.abs(result.a_prime.mean((0, 1)) - b_prime.mean((0, 1))).sum() < \
        np.abs(a.mean((0, 1)) - b_prime.mean((0, 1))).sum()


def test_inputs_reduced_by_the_size_rule_are_announced(model):
    a = _photo((96, 80))
    with pytest.warns(SizeNotice) as notices:
        analogy(a, a, AnalogyConfig(ratio=0.5, **{**SMALL, "lbfgs_iterations": 1}), model=model)
    messages = sorted(str(n.message) for n in notices)
    assert [m.split(" (")[0] for m in messages] == [
        "a: 80x96 is processed at 40x48", "b_prime: 80x96 is processed at 40x48"]


def test_outputs_come_back_to_the_input_size_by_cubic_resize_or_by_the_field(model):
    a = _photo((96, 96))
    config = AnalogyConfig(ratio=0.5, **{**SMALL, "lbfgs_iterations": 10})
    with pytest.warns(SizeNotice):
        cubic = analogy(a, a, config, model=model)
    with pytest.warns(SizeNotice):
        field = analogy(a, a, config.replace(upsample="nnf"), model=model)
    np.testing.assert_array_equal(cubic.nnf_ab, field.nnf_ab)   # the same search either way
    interior = (slice(6, -6), slice(6, -6))
    # "nnf": A's own full-size pixels, voted through the (identity) field.
    assert _psnr(field.a_prime[interior], a[interior]) >= 35
    # "cubic" (official): A' is voted at 48 x 48 and resized, so it is A through that round trip.
    round_trip = resize(resize(a / 255.0, (48, 48), order=3, anti_aliasing=True), (96, 96),
                        order=3) * 255
    assert _psnr(cubic.a_prime[interior], round_trip[interior]) >= 33
    assert _psnr(cubic.a_prime[interior], a[interior]) < _psnr(field.a_prime[interior],
                                                               a[interior])
    # "patchmatch": the field refined at 96 x 96 on image patches still finds A's own pixels.
    with pytest.warns(SizeNotice):
        refined = analogy(a, a, config.replace(upsample="patchmatch"), model=model)
    assert _psnr(refined.a_prime[interior], a[interior]) >= 35
    assert _psnr(refined.b[interior], a[interior]) >= 35


@pytest.mark.parametrize("start", ["own", "warped"])
def test_each_deconvolution_starts_where_the_config_says(model, monkeypatch, start):
    import gpuanalogy.levels as levels
    from gpuanalogy.checks import to_float_image

    starts = []
    real = levels.deconvolve

    def spy(subnet, x0, target, **options):
        starts.append(model.backend.to_numpy(x0).copy())
        return real(subnet, x0, target, **options)

    monkeypatch.setattr(levels, "deconvolve", spy)
    a = _photo((48, 48))
    b_prime = np.ascontiguousarray(a[::-1])          # a different layout of the same content
    analogy(a, b_prime, AnalogyConfig(deconv_start=start, lbfgs_stop="official",
                                      **{**SMALL, "lbfgs_iterations": 1}), model=model)
    own = {side: levels.pyramid(model, model.backend.asarray(to_float_image(x, name=side)))
           for side, x in (("a", a), ("b_prime", b_prime))}
    # Per level L = 5..2: the A' run (structure A), then the B run (structure B').
    expected = [own[side][level - 2] for level in (5, 4, 3, 2) for side in ("a", "b_prime")]
    assert len(starts) == 8
    for got, structure in zip(starts, expected):
        assert got.shape == structure.shape
        # "own" (official): the structure image's own features at L-2, the image itself at L=2.
        assert np.array_equal(got, model.backend.to_numpy(structure)) == (start == "own")


def test_the_adaptive_stop_warps_the_top_level_on_both_sides_and_b_below_it(model):
    """Under the adaptive stop relu4_1 of A' and of B, and relu3_1 of B, are no deconvolution's:
    each is the other image's own features voted through the field of the level above
    upsampled there, blended with the structure image's as a reconstruction is; A''s relu3_1
    is deconvolved, and the official stop deconvolves every level."""
    from gpuanalogy.blending import alpha_for_level, blend, response_mask

    a = _photo((40, 48))
    b_prime = np.ascontiguousarray(a[::-1])
    for stop, runs in (("official", [2, 2, 2, 2, 0]), ("adaptive", [0, 1, 2, 2, 0])):
        config = AnalogyConfig(lbfgs_stop=stop, **{**SMALL, "lbfgs_iterations": 2})
        steps = []
        result = analogy(a, b_prime, config, model=model, on_level=steps.append)
        assert [len(s.deconvolutions) for s in steps] == runs
        assert result.warped == ([] if stop == "official" else
                                 [(4, "a_prime"), (4, "b"), (3, "b")])
    p = steps[0].pyramids

    def warp_blend(level, field, structure, appearance):
        hwc = np.ascontiguousarray(appearance[level].transpose(1, 2, 0))
        warped = field.vote(hwc, config.patch_sizes[level - 1], model.backend)
        weight = np.float32(alpha_for_level(config.blend, level)) * response_mask(
            structure[level], kind=config.mask, k=config.mask_k, tau=config.mask_tau, xp=np)
        return blend(structure[level], warped.transpose(2, 0, 1), weight)

    top, below = steps[0], steps[1]
    for level, field, structure, appearance, rebuilt in (
            (4, top.next_ab, p.a, p.b_prime, p.a_prime), (4, top.next_ba, p.b_prime, p.a, p.b),
            (3, below.next_ba, p.b_prime, p.a, p.b)):
        np.testing.assert_allclose(rebuilt[level], warp_blend(level, field, structure,
                                                              appearance), atol=1e-6)
        assert not np.allclose(rebuilt[level], structure[level], atol=1e-3)   # the warp took part
    assert not np.allclose(p.a_prime[3], warp_blend(3, below.next_ab, p.a, p.b_prime),
                           atol=1e-3)   # A''s relu3_1 is its deconvolution's


def test_subpixel_alignment_recovers_a_half_pixel_shift_across_a_re_tone(model):
    from scipy import ndimage

    a = _photo((56, 56))
    grid = np.stack(np.mgrid[0:56, 0:56], axis=-1).astype(np.float64)
    shift = np.array([0.5, -0.5])                    # B'(y) = retone(A(y - shift))
    moved = np.stack([ndimage.map_coordinates(a[..., c] / 255.0, (grid - shift).transpose(2, 0, 1),
                                              order=3, mode="reflect") for c in range(3)], -1)
    b_prime = np.clip(moved[..., [2, 0, 1]], 0, 1).astype(np.float32)   # channels swapped
    errors = {}
    for subpixel in (False, True):
        result = analogy(a, b_prime, AnalogyConfig(subpixel=subpixel, **SMALL), model=model)
        assert ("subpixel" in result.timings) == subpixel
        inside = (result.nnf_ab[..., 0] <= 55) & (result.nnf_ab[..., 1] <= 55)
        assert inside.all() and (result.nnf_ab >= 0).all()
        error = np.linalg.norm(result.nnf_ab - (grid + shift), axis=-1)[8:-8, 8:-8]
        errors[subpixel] = np.median(error)
    # Whole pixels are at least 0.7 px from a (0.5, -0.5) shift; the alignment gets close.
    assert errors[False] >= 0.7
    assert errors[True] <= 0.25


def test_on_level_sees_every_level_and_previews_vote_at_the_input_size(model):
    from gpuanalogy.pipeline import level_preview

    a = _photo((40, 48))
    b_prime = np.ascontiguousarray(a[::-1])
    config = AnalogyConfig(**{**SMALL, "lbfgs_iterations": 2})
    steps, previews = [], {}

    def on_level(step):
        steps.append(step)
        previews[step.level] = level_preview(step, config)

    result = analogy(a, b_prime, config, model=model, on_level=on_level)
    assert [s.level for s in steps] == [5, 4, 3, 2, 1]
    assert [len(s.deconvolutions) for s in steps] == [0, 1, 2, 2, 0]   # level 4, B's 3 warped
    assert [s.warped for s in steps] == [((4, "a_prime"), (4, "b")), ((3, "b"),), (), (), ()]
    assert result.warped == [(4, "a_prime"), (4, "b"), (3, "b")]
    for coarse, fine in zip(steps, steps[1:]):   # each level starts where the last handed on
        assert np.array_equal(coarse.next_ab.values, fine.start_ab.values)
        assert fine.pyramids.a_prime[fine.level].shape == fine.pyramids.a[fine.level].shape
    assert np.array_equal(steps[-1].nnf_ab.values, result.nnf_ab.astype(np.int32))
    assert "on_level" in result.timings
    for a_prime, b in previews.values():
        assert a_prime.shape == a.shape and b.shape == b_prime.shape
    np.testing.assert_array_equal(previews[1][0], result.a_prime)   # level 1 is the output


def test_refined_outputs_above_the_working_size_keep_the_inputs_detail(model):
    a = _photo((96, 96))
    config = AnalogyConfig(ratio=0.5, refine=True, **{**SMALL, "lbfgs_iterations": 10})
    with pytest.warns(SizeNotice):
        guided = analogy(a, a, config, model=model)
    with pytest.warns(SizeNotice):
        full = analogy(a, a, config.replace(refine_upsample="wls"), model=model)
    interior = (slice(6, -6), slice(6, -6))
    for result in (guided, full):
        assert result.a_prime_refined.shape == a.shape and result.b_refined.shape == a.shape
    # The identity pair: the refined A' is A with its own detail, where the unrefined A' went
    # through the working size; the WLS solve over every pixel agrees.
    psnr = _psnr(guided.a_prime_refined[interior], a[interior])
    assert psnr >= 35
    assert psnr > _psnr(guided.a_prime[interior], a[interior]) + 3
    assert _psnr(guided.b_refined[interior], full.b_refined[interior]) >= 33
