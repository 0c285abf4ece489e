"""Stages of the demo pipeline: simulate skies, observe them at several frequencies, summarise."""

from __future__ import annotations

import numpy as np

from stagewise import REJECT, Item, Result, stage


@stage(outputs={"sky": "sky/{split}/{sim:03d}.npy"}, over=("split", "sim"))
def simulate(item: Item, *, npix: int = 256, seed: int = 0) -> np.ndarray:
    """Draw a Gaussian sky for one simulation.

    Args:
        npix: number of pixels.
        seed: base random seed.
    """
    rng = np.random.default_rng([seed, item.sim, len(item.split)])
    return rng.normal(size=npix)


@stage(
    inputs={"sky": "simulate.sky", "mask": "mask"},
    outputs={"map": "maps/{split}/{freq}GHz/{sim:03d}.npy"},
    over=("split", "sim", "freq"),
)
def observe(item: Item, sky: np.ndarray, mask: np.ndarray, *, noise: float = 0.05, max_rms: float = 1.5):
    """Observe a sky at one frequency through the mask.

    Args:
        noise: noise level at 100 GHz.
        max_rms: quality cut: maps noisier than this are rejected.
    """
    rng = np.random.default_rng([item.sim, item.freq])
    observed = mask * (sky * (item.freq / 100.0) + rng.normal(scale=noise, size=sky.size))
    rms = float(np.sqrt(np.mean(observed**2)))
    if rms > max_rms:
        return REJECT
    return Result(observed, meta={"rms": rms})


@stage(inputs={"maps": "observe.map"}, outputs={"stats": "stats/{split}.json"}, over=("split",))
def summarize(maps, *, scale: float = 1.0) -> dict:
    """Average the maps of one split.

    Args:
        scale: factor applied to the reported mean.
    """
    values = [m.read() for m in maps.values()]
    return {
        "n_maps": len(values),
        "mean": scale * float(np.mean([v.mean() for v in values])),
        "keys": [list(k) for k in maps],
    }
