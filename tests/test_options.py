"""The one table of options: flags, CSV columns, the config mapping and the README agree."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from gpuanalogy.app.main import build_parser
from gpuanalogy.app.options import (
    CSV_COLUMNS, OPTIONS, VIDEO_OPTIONS, config_from_options, csv_header_name, csv_overrides,
    result_key)
from gpuanalogy.config import AnalogyConfig
from gpuanalogy.errors import InputError

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_lists_every_option():
    text = README.read_text(encoding="utf-8")
    # The batch CSV's optional columns, as the README lists them after "optionally".
    columns = re.search(r"optionally\s*`([a-z_,]+)`", text)
    assert columns, "README.md lists no batch CSV columns"
    listed = set(columns.group(1).split(","))
    for option in OPTIONS:
        assert option.flag in text, f"README.md does not mention {option.flag}"
        assert (option.name in listed) is option.csv, f"README's CSV columns and {option.name}"
    for flag in ("--save-levels", "--debug"):
        assert flag in text
    for option in VIDEO_OPTIONS:
        assert option.flag in text, f"README.md does not mention {option.flag}"


@pytest.mark.parametrize("command", ["run", "batch", "demo"])
def test_every_command_takes_every_option(command):
    parser = build_parser()
    words = {"run": ["a.png", "b.png", "-o", "out"], "batch": ["pairs.csv", "-o", "out"],
             "demo": []}[command]
    args = parser.parse_args([command, *words])
    for option in OPTIONS:
        if option.inputs and command == "demo":     # input files: the demo has its own pair
            assert not hasattr(args, option.name)
            continue
        assert getattr(args, option.name) is None   # not given: the preset or default decides


def test_every_field_an_option_names_exists_and_options_map_onto_it():
    fields = {f.name for f in dataclasses.fields(AnalogyConfig)}
    assert {o.field for o in OPTIONS if o.field} <= fields
    args = build_parser().parse_args(
        ["run", "a", "b", "-o", "o", "--iters", "3", "--lbfgs-iters", "7", "--optimizer",
         "scipy", "--no-refine", "--subpixel", "--device", "cpu", "--preset", "photo2photo"])
    config = config_from_options(vars(args))
    assert (config.patchmatch_iterations, config.lbfgs_iterations, config.optimizer,
            config.refine, config.subpixel, config.device, config.blend) == (
        3, 7, "scipy", False, True, "cpu", 3)


def test_csv_columns_come_from_the_table():
    assert CSV_COLUMNS[:3] == ("a", "b_prime", "name")
    assert set(CSV_COLUMNS[3:]) == {o.name for o in OPTIONS if o.csv}
    assert "device" not in CSV_COLUMNS and "optimizer" in CSV_COLUMNS
    assert csv_header_name(" LBFGS-Iterations ") == "lbfgs_iters"
    assert csv_overrides({"iters": "4", "refine": "yes", "optimizer": "scipy", "seed": ""},
                         "x") == {"patchmatch_iterations": 4, "refine": True,
                                  "optimizer": "scipy"}
    with pytest.raises(InputError, match="x: seed='one' is not a whole number"):
        csv_overrides({"seed": "one"}, "x")


def test_the_resume_key_leaves_out_only_what_does_not_change_the_images():
    key = result_key(AnalogyConfig(device="cuda"))
    assert "device" not in key
    assert key == result_key(AnalogyConfig(device="cpu"))
    assert key != result_key(AnalogyConfig(device="cpu", optimizer="scipy"))
    assert result_key(AnalogyConfig().to_dict()) == key
