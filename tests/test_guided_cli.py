"""Region masks, several exemplars, --transfer and .flo fields from the command line, the batch
CSV and the output folder."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gpuanalogy import AnalogyConfig
from gpuanalogy.app.main import main
from gpuanalogy.app.pair import read_regions
from gpuanalogy.app.pairs import read_pairs_csv
from gpuanalogy.app.resume import up_to_date
from gpuanalogy.backend import cpu_backend
from gpuanalogy.colour import transfer
from gpuanalogy.errors import InputError
from gpuanalogy.fields import Field, read_field
from gpuanalogy.images import read_labels
from gpuanalogy.nnf import random_nnf
from gpuanalogy.pipeline import outputs_from_fields, working_shape
from test_batch import picture

CPU = cpu_backend()


def labels_png(path: Path, shape, left=1, right=2, mode="L") -> str:
    ids = np.full(shape, left, np.uint8)
    ids[:, shape[1] // 2:] = right
    Image.fromarray(ids, mode="L").convert(mode).save(path)
    return str(path)


def test_label_files_read_as_their_values(tmp_path):
    grey = read_labels(labels_png(tmp_path / "g.png", (40, 36)))
    assert grey.shape == (40, 36) and grey[0].tolist() == [1] * 18 + [2] * 18
    palette = Image.new("P", (36, 32))
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.putpixel((1, 0), 1)
    palette.save(tmp_path / "p.png")
    colours = read_labels(tmp_path / "p.png")
    assert colours.shape == (32, 36, 3) and colours[0, 1].tolist() == [255, 0, 0]
    assert colours[0, 0].tolist() == [0, 0, 0]
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[0, 0, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    assert read_labels(tmp_path / "t.png")[:2, :2, 0].tolist() == [[200, 0], [0, 0]]
    np.save(tmp_path / "n.npy", np.arange(32 * 33).reshape(32, 33))
    np.testing.assert_array_equal(read_labels(tmp_path / "n.npy"),
                                  np.arange(32 * 33).reshape(32, 33))
    np.save(tmp_path / "f.npy", np.zeros((32, 33), np.float32))
    with pytest.raises(InputError, match=r"f\.npy: labels are"):
        read_labels(tmp_path / "f.npy")
    with pytest.raises(InputError, match=r"n\.npy: 33x32 is 1,056 pixels, more than the "
                                         r"limit of 1,000 \(max_pixels\)"):
        read_labels(tmp_path / "n.npy", max_pixels=1000)
    # a header declaring 40,000 x 40,000 int64 (12.8 GB) over a few bytes: refused from the
    # header, before any data is allocated or read
    huge = tmp_path / "huge.npy"
    with open(huge, "wb") as stream:
        np.lib.format.write_array_header_1_0(
            stream, {"descr": "<i8", "fortran_order": False, "shape": (40_000, 40_000)})
        stream.write(b"\0" * 64)
    with pytest.raises(InputError, match=r"huge\.npy: 40000x40000 is 1,600,000,000 pixels"):
        read_labels(huge)


def test_region_files_come_in_pairs_and_one_per_exemplar(tmp_path):
    one = labels_png(tmp_path / "r.png", (32, 32))
    assert read_regions(None, (), 1) is None
    with pytest.raises(InputError, match="need both sides"):
        read_regions(one, (), 1)
    with pytest.raises(InputError, match="1 label images for 2 exemplars"):
        read_regions(one, (one,), 2)
    regions = read_regions(one, (one, one), 2)
    assert len(regions.labels[1]) == 2 and regions.files == (one, (one, one))


@pytest.mark.parametrize("extra, says", [
    (["--regions-a", "{r}"], "need both sides"),
    (["--regions-a", "{r}", "--regions-b", "{r}", "{r}"], "2 label images for 1 exemplars"),
    (["--regions-a", "{lonely}", "--regions-b", "{r}"], "label 3 is not in"),
    (["--regions-a", "{r}", "--regions-b", "{small}"], "labels for a 64x64 image"),
])
def test_bad_regions_are_one_line_exit_2(tmp_path, capsys, extra, says):
    a, b = picture(tmp_path / "a.png", 0), picture(tmp_path / "b.png", 1)
    files = {"r": labels_png(tmp_path / "r.png", (64, 64)),
             "lonely": labels_png(tmp_path / "l.png", (64, 64), 1, 3),
             "small": labels_png(tmp_path / "s.png", (32, 64))}
    code = main(["run", str(a), str(b), "-o", str(tmp_path / "out"), "--device", "cpu",
                 *(word.format(**files) for word in extra)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and says in err and err.count("\n") == 0 and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_csv_lists_exemplars_and_regions_and_resume_compares_them(tmp_path):
    (tmp_path / "pairs.csv").write_text(
        "a,b_prime,regions_a,regions_b,transfer\n"
        "cat.png,ink.png;oil.png,cat_r.png,ink_r.png; oil_r.png,colour\n"
        "dog.png,ink.png,,,\n", encoding="utf-8")
    pairs = read_pairs_csv(tmp_path / "pairs.csv")
    first, second = pairs
    assert first.b_prime == tmp_path / "ink.png" and first.others == (tmp_path / "oil.png",)
    assert first.regions_a == tmp_path / "cat_r.png"
    assert first.regions_b == (tmp_path / "ink_r.png", tmp_path / "oil_r.png")
    assert first.config.transfer == "colour" and second.config.transfer == "all"
    assert len(first.inputs) == 3 and second.others == () and second.regions_a is None
    recorded = first.recorded_inputs()
    assert recorded["b_prime"] == [str(tmp_path / "ink.png"), str(tmp_path / "oil.png")]
    folder = tmp_path / "out" / first.name
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(
        {"files": [], "config": first.config.to_dict(), "inputs": recorded}))
    assert up_to_date(folder, first) == (True, "complete")
    (folder / "run.json").write_text(json.dumps(
        {"files": [], "config": first.config.to_dict(),
         "inputs": {**recorded, "regions_b": [str(tmp_path / "ink_r.png")]}}))
    assert up_to_date(folder, first) == (False, "its outputs were made from other input files")


def test_transfer_is_applied_to_the_outputs():
    rng = np.random.default_rng(0)
    a = (rng.random((60, 80, 3)) * 255).astype(np.uint8)
    b_prime = (rng.random((50, 70, 3)) * 255).astype(np.uint8)
    config = AnalogyConfig()
    work_a, work_b = working_shape(a.shape[:2], config), working_shape(b_prime.shape[:2], config)
    fields = (Field(random_nnf(work_a, work_b, 1, CPU), work_b),
              Field(random_nnf(work_b, work_a, 2, CPU), work_a))
    plain = outputs_from_fields(a, b_prime, *fields, config, CPU)
    colour = outputs_from_fields(a, b_prime, *fields, config.replace(transfer="colour"), CPU)
    texture = outputs_from_fields(a, b_prime, *fields, config.replace(transfer="texture"), CPU)
    np.testing.assert_array_equal(colour.a_prime, transfer(a, plain.a_prime, "colour"))
    np.testing.assert_array_equal(colour.b, transfer(b_prime, plain.b, "colour"))
    np.testing.assert_array_equal(texture.a_prime, transfer(a, plain.a_prime, "texture"))


@pytest.mark.slow
def test_run_with_two_exemplars_regions_transfer_and_flo_fields(tmp_path, capsys):
    a, b1, b2 = (str(picture(tmp_path / f"{n}.png", i, size=(64, 80)))
                 for i, n in enumerate(("a", "b1", "b2")))
    r = labels_png(tmp_path / "r.png", (64, 80))
    out = tmp_path / "out"
    code = main(["run", a, b1, b2, "-o", str(out), "--regions-a", r, "--regions-b", r, r,
                 "--transfer", "texture", "--field-format", "flo", "--ratio", "0.25",
                 "--lbfgs-iters", "2", "--iters", "1", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "run.json").read_text())
    expected = {"a_prime.png", "b_1.png", "b_2.png", "nnf_ab.flo", "nnf_ba_1.flo",
                "nnf_ba_2.flo", "nnf_ab_exemplar.npy", "nnf_ab_exemplar.png", "nnf_ab.png",
                "nnf_ba_1.png", "nnf_ba_2.png", "sheet.png"}
    assert expected <= set(record["files"])
    assert record["inputs"]["b_prime"] == [b1, b2] and record["inputs"]["regions_b"] == [r, r]
    assert record["config"]["transfer"] == "texture"
    index = np.load(out / "nnf_ab_exemplar.npy")
    field = read_field(out / "nnf_ab.flo")
    assert index.shape == (64, 80) and set(np.unique(index)) <= {0, 1}
    assert field.shape == (64, 80, 2) and field.min() >= 0 and field[..., 0].max() < 64
    assert read_field(out / "nnf_ba_2.flo").shape == (64, 80, 2)
