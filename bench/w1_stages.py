"""W1's stages: normalize, spectrum, summarize (benchmarks.md), and the numpy kernels they call.

An importable module, as a project's ``stages.py`` would be, so that workers import the stages by
reference (stages defined in a script's ``__main__`` travel by value with cloudpickle, a different
cost). The reference implementations in ``w1_three_stages.py`` call the same kernels.
"""

from __future__ import annotations

import numpy as np

from stagewise import stage


def normalize_array(x: np.ndarray) -> np.ndarray:
    """(x - mean) / std."""
    return (x - x.mean()) / x.std()


def spectrum_array(x: np.ndarray) -> np.ndarray:
    """abs(rfft2(x)) ** 2."""
    return np.abs(np.fft.rfft2(x)) ** 2


def summarize_arrays(arrays, scale: float) -> tuple[np.ndarray, dict]:
    """The mean spectrum over all files and a small JSON with ``scale * mean``."""
    total = None
    n = 0
    for a in arrays:
        total = a.copy() if total is None else total + a
        n += 1
    mean = total / n
    return mean, {"n": n, "scale": scale, "value": scale * float(mean.mean())}


@stage(inputs={"x": "raw"}, outputs={"norm": "norm/{i:04d}.npy"}, over=("i",))
def normalize(x: np.ndarray) -> np.ndarray:
    return normalize_array(x)


@stage(inputs={"norm": "normalize.norm"}, outputs={"spec": "spec/{i:04d}.npy"}, over=("i",))
def spectrum(norm: np.ndarray) -> np.ndarray:
    return spectrum_array(norm)


@stage(
    inputs={"spec": "spectrum.spec"},
    outputs={"mean": "summary/mean.npy", "summary": "summary/summary.json"},
)
def summarize(spec, *, scale: float = 1.0) -> dict:
    """Mean spectrum over all files.

    Args:
        scale: factor applied to the reported mean.
    """
    mean, info = summarize_arrays((h.read() for h in spec.values()), scale)
    return {"mean": mean, "summary": info}
