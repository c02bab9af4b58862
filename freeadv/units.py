"""Perturbation sizes: the paper writes them in 0-255 pixel units (eps 8 means 8/255); models see
images in [0, 1]. Configs, attack ids and the CLI use pixel units; this is the one conversion."""
from __future__ import annotations

PIXEL_LEVELS = 255


def to_unit(pixels: float) -> float:
    """A size in pixel units as a size in the [0, 1] space the models and attacks work in."""
    return pixels / PIXEL_LEVELS
