import dataclasses
import typing

import pytest

from gpuanalogy.config import PRESETS, AnalogyConfig, Preset, VideoConfig
from gpuanalogy.errors import InputError
from gpuanalogy.pipeline import working_shape


def test_defaults_are_the_official_settings():
    c = AnalogyConfig()
    assert (c.blend, c.ratio, c.patchmatch_iterations, c.lbfgs_iterations, c.lbfgs_history) == (3, 1.0, 10, 100, 4)
    assert c.patch_sizes == (5, 5, 3, 3, 3) and c.radii == (4, 4, 6, 6, None)
    assert (c.mask_k, c.mask_tau) == (300.0, 0.05)
    assert c.deconv_start == "own"     # L-BFGS starts from the structure's own features


# DESIGN.md step 6, written out here rather than read back from PRESETS.
OFFICIAL = {"photo2style": (3, 1.0, False), "style2style": (3, 1.0, False),
            "style2photo": (2, 0.5, True), "photo2photo": (3, 1.0, True)}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_presets_are_the_official_settings_and_can_be_overridden(name):
    c = AnalogyConfig.preset(name)
    assert (c.blend, c.ratio, c.refine) == OFFICIAL[name]
    assert c.subpixel is False        # our addition is never switched on by a preset
    # above the working size, the style uses' outputs keep the exemplar's texture
    assert c.upsample == ("cubic" if OFFICIAL[name][2] else "patchmatch")
    # photo2style makes A' alone, the others both analogies
    assert c.outputs == ("a_prime" if name == "photo2style" else "both")
    # everything else stays at the defaults
    assert (c.patch_sizes, c.lbfgs_iterations) == (AnalogyConfig().patch_sizes, 100)
    assert AnalogyConfig.preset(name, blend=1).blend == 1
    assert AnalogyConfig.preset(name, refine=not OFFICIAL[name][2]).refine is not OFFICIAL[name][2]


def test_every_preset_is_covered():
    assert set(PRESETS) == set(OFFICIAL)


@pytest.mark.parametrize("bad", [
    dict(blend=4), dict(ratio=0), dict(mask="soft"), dict(patchmatch_iterations=0),
    dict(upsample="linear"), dict(deconv_start="noise"), dict(nnf_init="zero"),
    dict(device="tpu"), dict(lbfgs_history=0), dict(output_patch_size=4),
    dict(output_patch_size=-1), dict(patch_sizes=(5, 5, 3, 3)), dict(patch_sizes=(5, 5, 3, 2, 3)),
    dict(radii=(4, 4, 6, 0, None)), dict(radii=(4, 4)), dict(min_side=0),
    dict(min_side=800), dict(max_area=100), dict(mask_k=0), dict(mask_tau=1.5)])
def test_bad_options_are_one_line_input_errors(bad):
    """Every field a caller can get wrong is refused when the config is made, in one line
    naming the field, never later deep inside a kernel."""
    with pytest.raises(InputError) as err:
        AnalogyConfig(**bad)
    assert "\n" not in str(err.value)
    assert next(iter(bad)) in str(err.value)


def test_every_preset_is_a_preset_name():
    assert tuple(PRESETS) == typing.get_args(Preset)


@pytest.mark.parametrize("kind", [AnalogyConfig, VideoConfig])
def test_every_field_with_a_list_of_values_takes_each_and_refuses_others(kind):
    """A field typed by one of config's lists accepts every value of its list and names the
    list in its refusal of anything else: the type is the one source of the list."""
    hints = typing.get_type_hints(kind)
    listed = {f.name: typing.get_args(hints[f.name]) for f in dataclasses.fields(kind)
              if typing.get_origin(hints[f.name]) is typing.Literal}
    assert listed, kind
    for name, values in listed.items():
        for value in values:
            assert getattr(kind(**{name: value}), name) == value
        with pytest.raises(InputError, match=f"{name}='other'.*{', '.join(values)}"):
            kind(**{name: "other"})


def test_unknown_preset():
    with pytest.raises(InputError, match="photo2style"):
        AnalogyConfig.preset("cartoon")


@pytest.mark.parametrize("shape, ratio, expected", [
    ((448, 448), 1.0, (448, 448)),        # inside every bound: unchanged
    ((256, 256), 0.5, (128, 128)),        # ratio applies after the size rule
    ((1400, 700), 1.0, (700, 350)),       # long side capped at 700
    ((100, 150), 1.0, (200, 300)),        # short side raised to 200
    ((700, 700), 1.0, (592, 592)),        # area capped at 350,000
])
def test_size_rule(shape, ratio, expected):
    h, w = working_shape(shape, AnalogyConfig(ratio=ratio))
    assert (h, w) == expected
    assert h * w <= 350_000 * ratio ** 2 + 2000
