"""Metrics of effective receptive fields (numpy only).

An effective receptive field (ERF) map holds, per input position, how much that
position contributes to one output unit (Luo et al. 2016).  This module measures such
maps as the large-kernel papers do (RepLKNet, Ding et al. 2022):

- :func:`log_normalise`: ``log10(x + 1) / max``, the map they plot;
- :func:`area_ratios`: the high-contribution area ratio, the smallest centred square
  holding a share ``t`` of the total, over the input area;
- :func:`gaussian_fit`: a Gaussian fitted to the map (centre and sigma per axis);
- :func:`central_extent`: per axis, the smallest centred interval holding 95.45 % of
  the contribution (two sigmas of a Gaussian), to compare with the theoretical field;
- :func:`uniform_stack_sigma`: the closed-form sigma of a stack of uniform kernels.

Every function takes an n-dimensional array (1D, 2D or 3D maps), never imports
torch, and returns plain numbers or frozen dataclasses with ``to_dict()``.

>>> m = np.zeros((5, 5)); m[2, 2] = 4.0; m[2, 3] = 1.0
>>> area_ratios(m, (0.5, 0.9))
(AreaRatio(threshold=0.5, side=1, ratio=0.04), AreaRatio(threshold=0.9, side=3, ratio=0.36))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import RFMapError
from .specs import ConvLayer

__all__ = [
    "DEFAULT_THRESHOLDS",
    "TWO_SIGMA_SHARE",
    "AreaRatio",
    "ERFMetrics",
    "GaussianFit",
    "area_ratios",
    "central_extent",
    "erf_metrics",
    "gaussian_fit",
    "log_normalise",
    "uniform_stack_sigma",
]

#: The thresholds RepLKNet reports (Table 4 of Ding et al. 2022).
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.2, 0.3, 0.5, 0.99)

#: Share of a Gaussian within two sigmas of its mean: ``erf(sqrt(2))``.
TWO_SIGMA_SHARE = math.erf(math.sqrt(2.0))


def _as_map(values: Any, name: str = "map") -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if not 1 <= array.ndim <= 3:
        raise RFMapError(f"{name} must be a 1D, 2D or 3D array, got shape {list(array.shape)}")
    if array.size == 0:
        raise RFMapError(f"{name} is empty (shape {list(array.shape)})")
    if not np.isfinite(array).all():
        raise RFMapError(f"{name} holds NaN or infinite values")
    return array


def _contribution(values: Any, name: str = "map") -> np.ndarray:
    """The map as non-negative contributions (signed maps are measured by magnitude)."""
    return np.abs(_as_map(values, name))


def _centre(shape: tuple[int, ...], centre: Sequence[int] | None) -> tuple[int, ...]:
    if centre is None:
        return tuple(n // 2 for n in shape)
    centre = tuple(int(c) for c in centre)
    if len(centre) != len(shape) or not all(0 <= c < n for c, n in zip(centre, shape, strict=True)):
        raise RFMapError(f"centre {list(centre)} is outside the map of shape {list(shape)}")
    return centre


def log_normalise(values: Any) -> np.ndarray:
    """``log10(|x| + 1)`` rescaled to a maximum of 1: the map RepLKNet plots and measures.

    An all-zero map stays all zero.

    >>> log_normalise(np.array([0.0, 9.0, 99.0])).tolist()
    [0.0, 0.5, 1.0]
    """
    logged = np.log10(_contribution(values) + 1.0)
    top = logged.max()
    return logged / top if top > 0 else logged


@dataclass(frozen=True)
class AreaRatio:
    """The smallest centred square (cube, interval) holding ``threshold`` of the total.

    ``side`` is its side in input pixels (odd, centred on the centre pixel); ``ratio`` is
    the area of the square, clipped to the map, over the area of the map.  ``side`` is
    ``None`` for an all-zero map.
    """

    threshold: float
    side: int | None
    ratio: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"threshold": self.threshold, "side": self.side, "ratio": self.ratio}


def _centred_sums(values: np.ndarray, centre: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Sums and clipped volumes of the centred cubes of half-width 0, 1, 2, ...

    Uses an n-dimensional summed-area table, so all half-widths cost one pass.
    """
    table = values
    for axis in range(values.ndim):
        table = np.cumsum(table, axis=axis)
    table = np.pad(table, [(1, 0)] * values.ndim)
    reach = max(max(c, n - 1 - c) for c, n in zip(centre, values.shape, strict=True))
    half = np.arange(reach + 1)
    lows = [np.clip(c - half, 0, n) for c, n in zip(centre, values.shape, strict=True)]
    highs = [np.clip(c + half + 1, 0, n) for c, n in zip(centre, values.shape, strict=True)]
    sums = np.zeros(len(half))
    for corner in range(2**values.ndim):
        index = []
        sign = 1
        for axis in range(values.ndim):
            if corner >> axis & 1:
                index.append(lows[axis])
                sign = -sign
            else:
                index.append(highs[axis])
        sums += sign * table[tuple(index)]
    volume = np.prod([h - lo for h, lo in zip(highs, lows, strict=True)], axis=0).astype(np.float64)
    return sums, volume


def area_ratios(
    values: Any,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    centre: Sequence[int] | None = None,
) -> tuple[AreaRatio, ...]:
    """High-contribution area ratios of a map, for each threshold.

    For each ``t`` the smallest centred square (side 1, 3, 5, ...) whose sum is at least
    ``t`` of the map's total; its area (clipped to the map) over the map's area.  This is
    RepLKNet's ``get_rectangle``, except that it starts at side 1, uses ``>=``, and lets
    the square reach past the border (clipped) so that every threshold has an answer.
    Pass :func:`log_normalise` of a map to measure as RepLKNet does.

    Parameters
    ----------
    values
        A 1D, 2D or 3D map (magnitudes are used).
    thresholds
        Shares of the total in ``(0, 1]``.
    centre
        Index of the centre pixel; default ``n // 2`` per axis, as RepLKNet.

    >>> area_ratios(np.ones((4, 4)), (0.5,))
    (AreaRatio(threshold=0.5, side=3, ratio=0.5625),)
    """
    data = _contribution(values)
    for t in thresholds:
        if not 0 < t <= 1:
            raise RFMapError(f"thresholds must be shares in (0, 1], got {t!r}")
    where = _centre(data.shape, centre)
    total = float(data.sum())
    if total <= 0:
        return tuple(AreaRatio(float(t), None, None) for t in thresholds)
    sums, volume = _centred_sums(data, where)
    shares = sums / total
    out = []
    for t in thresholds:
        # Floating-point sums of the whole map may fall a hair short of the total.
        reached = np.flatnonzero(shares >= float(t) * (1 - 1e-12))
        half = int(reached[0]) if len(reached) else len(shares) - 1
        out.append(AreaRatio(float(t), 2 * half + 1, float(volume[half] / data.size)))
    return tuple(out)


def central_extent(
    values: Any, share: float = TWO_SIGMA_SHARE, centre: Sequence[int] | None = None
) -> tuple[int, ...]:
    """Per axis, the side of the smallest centred interval holding ``share`` of the total.

    Measured on the marginal sums along each axis; with the default share (95.45 %) it is
    four sigmas of a Gaussian map, the size Luo et al. compare with the theoretical field.
    Zero for an all-zero map.

    >>> central_extent(np.array([0.0, 1.0, 2.0, 1.0, 0.0]), share=0.5)
    (1,)
    """
    data = _contribution(values)
    where = _centre(data.shape, centre)
    if not 0 < share <= 1:
        raise RFMapError(f"share must be in (0, 1], got {share!r}")
    out = []
    for axis in range(data.ndim):
        others = tuple(a for a in range(data.ndim) if a != axis)
        marginal = data.sum(axis=others) if others else data
        ratio = area_ratios(marginal, (share,), (where[axis],))[0]
        out.append(0 if ratio.side is None else min(ratio.side, data.shape[axis]))
    return tuple(out)


@dataclass(frozen=True)
class GaussianFit:
    """An axis-aligned Gaussian fitted to a map.

    ``centre`` and ``sigma`` are per axis, in input pixels: the mean and standard
    deviation of the map read as a distribution (the maximum-likelihood Gaussian).
    ``r2`` is the coefficient of determination of that Gaussian (scaled to the map's
    total) against the map: 1 for a perfect Gaussian, lower for other shapes.
    """

    centre: tuple[float, ...]
    sigma: tuple[float, ...]
    r2: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"centre": list(self.centre), "sigma": list(self.sigma), "r2": self.r2}


def gaussian_fit(values: Any) -> GaussianFit | None:
    """Fit an axis-aligned Gaussian to a map by its moments; ``None`` for an all-zero map.

    The fitted sigma of a stack of uniform kernels equals :func:`uniform_stack_sigma`
    exactly, as long as the input holds the whole receptive field.

    >>> fit = gaussian_fit(np.array([1.0, 2.0, 1.0]))
    >>> fit.centre, round(fit.sigma[0] ** 2, 12)
    ((1.0,), 0.5)
    """
    data = _contribution(values)
    total = float(data.sum())
    if total <= 0:
        return None
    centre: list[float] = []
    sigma: list[float] = []
    densities = []
    for axis in range(data.ndim):
        others = tuple(a for a in range(data.ndim) if a != axis)
        marginal = data.sum(axis=others) if others else data
        x = np.arange(data.shape[axis], dtype=np.float64)
        weights = marginal / total
        mean = float(weights @ x)
        var = float(weights @ (x - mean) ** 2)
        centre.append(mean)
        sigma.append(math.sqrt(max(var, 0.0)))
        densities.append(_discrete_gaussian(x, mean, math.sqrt(max(var, 0.0))))
    model = densities[0]
    for density in densities[1:]:
        model = np.multiply.outer(model, density)
    model = model * total
    residual = float(((data - model) ** 2).sum())
    spread = float(((data - data.mean()) ** 2).sum())
    r2 = 1.0 - residual / spread if spread > 0 else 1.0
    return GaussianFit(tuple(centre), tuple(sigma), r2)


def _discrete_gaussian(x: np.ndarray, mean: float, sigma: float) -> np.ndarray:
    """A Gaussian density sampled on the pixel grid, normalised to sum to one."""
    if sigma == 0:
        out = np.zeros_like(x)
        out[int(np.argmin(np.abs(x - mean)))] = 1.0
        return out
    density = np.exp(-0.5 * ((x - mean) / sigma) ** 2)
    return density / density.sum()


def uniform_stack_sigma(layers: Sequence[ConvLayer]) -> tuple[float, ...]:
    """Closed-form sigma per axis of a stack of uniform (all-equal) kernels, linear, no bias.

    Each layer adds the variance of ``k`` equally weighted taps spaced ``dilation`` apart,
    ``dilation**2 * (k**2 - 1) / 12``, scaled by the squared jump (product of the earlier
    strides): the map is the distribution of a sum of independent uniform offsets.

    >>> from rfmap import conv_stack
    >>> uniform_stack_sigma(conv_stack([1, 1, 1]))  # three 3x3 layers: sqrt(3 * 8 / 12)
    (1.4142135623730951, 1.4142135623730951)
    """
    layers = tuple(layers)
    if not layers:
        raise RFMapError("the stack must have at least one layer")
    out = []
    for axis in range(layers[0].ndim):
        var, jump = 0.0, 1
        for layer in layers:
            k, d = layer.kernel_size[axis], layer.dilation[axis]
            var += jump**2 * d**2 * (k**2 - 1) / 12
            jump *= layer.stride[axis]
        out.append(math.sqrt(var))
    return tuple(out)


@dataclass(frozen=True)
class ERFMetrics:
    """The measures of one ERF map (see :func:`erf_metrics`).

    ``area_ratios`` are RepLKNet's (measured on the ``log10(x + 1)`` normalised map);
    ``raw_area_ratios`` the same squares measured on the raw contributions;
    ``extent`` the per-axis side holding 95.45 % of the contribution; and, when the
    theoretical receptive field is known, ``extent_over_rf`` = ``extent / receptive field``.
    """

    shape: tuple[int, ...]
    centre: tuple[int, ...]
    total: float
    peak: float
    area_ratios: tuple[AreaRatio, ...]
    raw_area_ratios: tuple[AreaRatio, ...]
    gaussian: GaussianFit | None
    extent: tuple[int, ...]
    theoretical_rf: tuple[int, ...] | None = None

    @property
    def extent_over_rf(self) -> tuple[float, ...] | None:
        """ERF size over theoretical RF size, per axis (``None`` when the RF is unknown)."""
        if self.theoretical_rf is None:
            return None
        return tuple(e / r for e, r in zip(self.extent, self.theoretical_rf, strict=True))

    def ratio(self, threshold: float) -> float | None:
        """RepLKNet's area ratio at ``threshold`` (one of the measured thresholds)."""
        for item in self.area_ratios:
            if math.isclose(item.threshold, threshold):
                return item.ratio
        measured = [item.threshold for item in self.area_ratios]
        raise RFMapError(f"threshold {threshold!r} was not measured; measured: {measured}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "shape": list(self.shape),
            "centre": list(self.centre),
            "total": self.total,
            "peak": self.peak,
            "area_ratios": [a.to_dict() for a in self.area_ratios],
            "raw_area_ratios": [a.to_dict() for a in self.raw_area_ratios],
            "gaussian": None if self.gaussian is None else self.gaussian.to_dict(),
            "extent": list(self.extent),
            "theoretical_rf": None if self.theoretical_rf is None else list(self.theoretical_rf),
            "extent_over_rf": None if self.extent_over_rf is None else list(self.extent_over_rf),
        }


def erf_metrics(
    values: Any,
    *,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    centre: Sequence[int] | None = None,
    theoretical_rf: Sequence[int] | None = None,
) -> ERFMetrics:
    """All metrics of an ERF map.

    Parameters
    ----------
    values
        The accumulated contribution map (1D, 2D or 3D; magnitudes are used).
    thresholds
        Shares for the area ratios (RepLKNet's 20, 30, 50 and 99 % by default).
    centre
        Centre pixel of the squares and extents; default ``n // 2`` per axis.
    theoretical_rf
        The analytic receptive field per axis, when known, for ``extent_over_rf``.

    The centre holds 4/16 of this map but only 18 % of its log-normalised form, so the
    20 % square is one pixel on the raw map and the whole map on RepLKNet's:

    >>> m = erf_metrics(np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]))
    >>> m.raw_area_ratios[0].side, m.area_ratios[0].side, m.ratio(0.2), m.extent
    (1, 3, 1.0, (3, 3))
    """
    data = _contribution(values)
    where = _centre(data.shape, centre)
    rf = None
    if theoretical_rf is not None:
        rf = tuple(int(r) for r in theoretical_rf)
        if len(rf) != data.ndim or min(rf) < 1:
            raise RFMapError(
                f"theoretical_rf needs {data.ndim} positive sizes, got {list(theoretical_rf)}"
            )
    return ERFMetrics(
        shape=tuple(data.shape),
        centre=where,
        total=float(data.sum()),
        peak=float(data.max()),
        area_ratios=area_ratios(log_normalise(data), thresholds, where),
        raw_area_ratios=area_ratios(data, thresholds, where),
        gaussian=gaussian_fit(data),
        extent=central_extent(data, centre=where),
        theoretical_rf=rf,
    )
