"""Blending a reconstruction with the original features (paper, section 4.3).

F_A'^{L-1} = F_A^{L-1} * W + R * (1 - W), with W = alpha * M and M a soft mask that is close to
1 where the response of F_A^{L-1} is strong (edges, textured structure) and close to 0 in flat
regions, so A keeps its structure where it has any and takes B''s appearance elsewhere.
"""
from __future__ import annotations

from typing import Any

from .config import Mask

# alpha for levels L-1 = 4, 3, 2, 1 (the official implementation's blend presets).
ALPHA_PRESETS: dict[int, tuple[float, float, float, float]] = {
    1: (0.7, 0.6, 0.5, 0.0),
    2: (0.8, 0.7, 0.6, 0.1),  # the paper's values
    3: (0.9, 0.8, 0.7, 0.2),  # the official default
}


def alpha_for_level(preset: int, level: int) -> float:
    """Blend weight alpha for the reconstructed level ``level`` (1..4) under ``preset`` (1..3)."""
    return ALPHA_PRESETS[preset][4 - level]


def response_mask(features: Any, *, kind: Mask = "sigmoid", k: float = 300.0,
                  tau: float = 0.05, xp: Any) -> Any:
    """Where the features respond strongly.

    Parameters
    ----------
    features : array, shape (C, H, W), float32
    kind : "sigmoid" for the paper's M = sigmoid(k (|F|^2 - tau)), "hard" for the official
        code's step |F|^2 > tau.
    k, tau : sigmoid slope and threshold; |F|^2 is summed over channels and min-max normalised
        to [0, 1] first.

    Returns
    -------
    mask : array, shape (1, H, W), float32 in [0, 1]
    """
    energy = xp.sum(features * features, axis=0, keepdims=True)
    low, high = energy.min(), energy.max()
    energy = (energy - low) / xp.maximum(high - low, xp.float32(1e-12))
    if kind == "hard":
        return (energy > tau).astype(xp.float32)
    # sigmoid(z) written as 0.5 (1 + tanh(z / 2)): no overflow for large |z|.
    return (0.5 * (1.0 + xp.tanh(0.5 * k * (energy - tau)))).astype(xp.float32)


def blend(structure: Any, reconstruction: Any, weight: Any) -> Any:
    """``structure * weight + reconstruction * (1 - weight)``; weight broadcasts over channels."""
    return structure * weight + reconstruction * (1.0 - weight)
