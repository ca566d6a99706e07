"""ERF metrics against brute force, hand-computed maps and closed forms (numpy only)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rfmap import RFMapError, conv_stack, stack_path_map
from rfmap.erf_metrics import (
    TWO_SIGMA_SHARE,
    area_ratios,
    central_extent,
    erf_metrics,
    gaussian_fit,
    log_normalise,
    uniform_stack_sigma,
)

# -- oracles ----------------------------------------------------------------------------


def brute_area(values, threshold, centre):
    """Grow a centred square one ring at a time, summing the clipped block directly."""
    data = np.abs(np.asarray(values, dtype=np.float64))
    total = data.sum()
    half = 0
    while True:
        block = tuple(
            slice(max(0, c - half), min(n, c + half + 1))
            for c, n in zip(centre, data.shape, strict=True)
        )
        inside = data[block]
        covers_all = inside.size == data.size
        if inside.sum() >= threshold * total * (1 - 1e-12) or covers_all:
            return 2 * half + 1, inside.size / data.size
        half += 1


def replknet_get_rectangle(data, thresh):
    """RepLKNet's erf/analyze_erf.py get_rectangle, re-typed (2D, in-bounds squares only)."""
    h, w = data.shape
    all_sum = np.sum(data)
    for i in range(1, h // 2):
        selected = data[h // 2 - i : h // 2 + 1 + i, w // 2 - i : w // 2 + 1 + i]
        if np.sum(selected) / all_sum > thresh:
            return i * 2 + 1, (i * 2 + 1) / h * (i * 2 + 1) / w
    return None


maps = st.integers(1, 3).flatmap(
    lambda ndim: st.tuples(*[st.integers(1, 9)] * ndim).flatmap(
        lambda shape: st.tuples(
            st.just(shape),
            st.integers(0, 2**32 - 1),
            st.tuples(*[st.integers(0, n - 1) for n in shape]),
        )
    )
)


# -- area ratios --------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(maps, st.lists(st.floats(0.01, 1.0), min_size=1, max_size=4))
def test_area_ratios_match_brute_force(case, thresholds):
    shape, seed, centre = case
    rng = np.random.default_rng(seed)
    data = rng.exponential(size=shape) * (rng.random(shape) < 0.7)
    if data.sum() == 0:
        data[centre] = 1.0
    got = area_ratios(data, thresholds, centre)
    for item, t in zip(got, thresholds, strict=True):
        side, ratio = brute_area(data, t, centre)
        assert item.side == side
        assert item.ratio == pytest.approx(ratio, rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(9, 31), st.integers(0, 2**32 - 1), st.sampled_from([0.2, 0.3, 0.5, 0.99]))
def test_area_ratios_agree_with_replknet_where_it_answers(n, seed, t):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n] - n // 2
    data = np.exp(-(yy**2 + xx**2) / (2 * (n / 6) ** 2)) * rng.uniform(0.5, 1.5, (n, n))
    data = log_normalise(data * 100)
    theirs = replknet_get_rectangle(data, t)
    ours = area_ratios(data, (t,))[0]
    if theirs is not None and ours.side > 1:  # RepLKNet starts at side 3 and stops early
        assert (ours.side, ours.ratio) == (theirs[0], pytest.approx(theirs[1], rel=1e-12))


def test_area_ratios_agree_with_replknet_on_a_gaussian():
    yy, xx = np.mgrid[:41, :41] - 20
    data = log_normalise(1000 * np.exp(-(yy**2 + xx**2) / (2 * 6.0**2)))
    # 99 % needs the whole map, past RepLKNet's last square (it returns None there).
    assert replknet_get_rectangle(data, 0.99) is None
    assert area_ratios(data, (0.99,))[0].ratio == 1.0
    for t in (0.2, 0.3, 0.5):
        side, ratio = replknet_get_rectangle(data, t)
        ours = area_ratios(data, (t,))[0]
        assert (ours.side, ours.ratio) == (side, pytest.approx(ratio, rel=1e-12))


def test_area_ratios_by_hand():
    delta = np.zeros((5, 5))
    delta[2, 2] = 1.0
    assert [(a.side, a.ratio) for a in area_ratios(delta, (0.2, 1.0))] == [(1, 0.04), (1, 0.04)]
    ones = np.ones((5, 5))
    # 1/25 < 0.2 <= 9/25: side 3; 0.99 needs the whole map: side 5.
    assert [(a.side, a.ratio) for a in area_ratios(ones, (0.2, 0.99))] == [(3, 0.36), (5, 1.0)]
    # A square past the border is clipped: centre (0, 0) of a 4x4 ones map, side 3 covers 4.
    assert area_ratios(np.ones((4, 4)), (0.25,), centre=(0, 0))[0].ratio == 0.25
    # 1D: [1, 2, 1] centred; half the total needs the centre only.
    assert area_ratios(np.array([1.0, 2.0, 1.0]), (0.5, 0.51))[0].side == 1
    assert area_ratios(np.array([1.0, 2.0, 1.0]), (0.51,))[0].side == 3


def test_area_ratios_of_zero_map_and_bad_input():
    assert area_ratios(np.zeros((3, 3)), (0.5,))[0].side is None
    with pytest.raises(RFMapError, match="thresholds must be shares"):
        area_ratios(np.ones((3, 3)), (0.0,))
    with pytest.raises(RFMapError, match="outside the map"):
        area_ratios(np.ones((3, 3)), (0.5,), centre=(3, 0))
    with pytest.raises(RFMapError, match="NaN"):
        area_ratios(np.array([[np.nan, 1.0]]), (0.5,))
    with pytest.raises(RFMapError, match="1D, 2D or 3D"):
        area_ratios(np.ones((2, 2, 2, 2)), (0.5,))
    with pytest.raises(RFMapError, match="empty"):
        area_ratios(np.ones((0, 3)), (0.5,))


def test_signed_maps_are_measured_by_magnitude():
    data = np.array([[0.0, -3.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert area_ratios(data, (0.5,)) == area_ratios(np.abs(data), (0.5,))


# -- log-normalised map -----------------------------------------------------------------


def test_log_normalise_by_hand():
    assert log_normalise(np.array([0.0, 9.0, 99.0])).tolist() == [0.0, 0.5, 1.0]
    assert log_normalise(np.zeros(4)).tolist() == [0.0] * 4
    assert log_normalise(np.array([-9.0, 0.0])).tolist() == [1.0, 0.0]


# -- Gaussian fit and the closed form ---------------------------------------------------


def test_gaussian_fit_by_hand():
    fit = gaussian_fit(np.array([1.0, 2.0, 1.0]))
    assert fit.centre == (1.0,) and fit.sigma[0] ** 2 == pytest.approx(0.5, abs=1e-15)
    # Two point masses 4 apart, equal weight: mean between them, sigma 2.
    fit = gaussian_fit(np.array([[1.0, 0, 0, 0, 1.0]]))
    assert fit.centre == (0.0, 2.0) and fit.sigma == (0.0, 2.0)
    assert gaussian_fit(np.zeros((3, 3))) is None


def test_gaussian_fit_r2_tells_gaussians_from_boxes():
    x = np.arange(61) - 30.0
    gauss = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 5.0**2))
    fit = gaussian_fit(gauss)
    assert fit.r2 > 0.999999 and fit.sigma == pytest.approx((5.0, 5.0), rel=1e-6)
    box = np.zeros((61, 61))
    box[20:41, 20:41] = 1.0
    assert gaussian_fit(box).r2 < 0.9


def test_uniform_stack_sigma_by_hand():
    # One 3-tap layer: variance (9 - 1) / 12 = 2/3; dilation 2 scales it by 4.
    assert uniform_stack_sigma(conv_stack([1], ndim=1)) == (math.sqrt(2 / 3),)
    assert uniform_stack_sigma(conv_stack([2], ndim=1)) == (math.sqrt(8 / 3),)
    # A stride-2 first layer doubles the spacing of the second layer's taps.
    layers = conv_stack([1, 1], ndim=1, stride=[2, 1], padding=1)
    assert uniform_stack_sigma(layers)[0] == pytest.approx(math.sqrt(2 / 3 + 4 * 2 / 3))


stacks = st.integers(1, 4).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(1, 4), min_size=n, max_size=n),
        st.lists(st.integers(1, 5), min_size=n, max_size=n),
        st.lists(st.integers(1, 3), min_size=n, max_size=n),
    )
)


@settings(max_examples=60, deadline=None)
@given(stacks)
def test_fitted_sigma_of_exact_path_map_is_the_closed_form(stack):
    """The unbounded path-count map is the distribution of a sum of uniform taps."""
    dilations, kernels, strides = stack
    layers = conv_stack(dilations, kernels, ndim=1, stride=strides, padding=0)
    pmap = stack_path_map(layers, None)
    fit = gaussian_fit(pmap.counts.astype(np.float64))
    assert fit.sigma[0] == pytest.approx(uniform_stack_sigma(layers)[0], rel=1e-9, abs=1e-12)


# -- extents and the bundle --------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(maps, st.floats(0.05, 1.0))
def test_central_extent_is_the_area_of_each_marginal(case, share):
    shape, seed, centre = case
    rng = np.random.default_rng(seed)
    data = rng.exponential(size=shape) + 1e-3
    extent = central_extent(data, share, centre)
    for axis in range(len(shape)):
        marginal = data.sum(axis=tuple(a for a in range(len(shape)) if a != axis))
        side, _ = brute_area(marginal, share, (centre[axis],))
        assert extent[axis] == min(side, shape[axis])


def test_erf_metrics_bundle():
    data = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0])
    m = erf_metrics(data, theoretical_rf=(3, 6))
    assert m.shape == (3, 3) and m.centre == (1, 1) and m.total == 16.0 and m.peak == 4.0
    assert m.raw_area_ratios[0].side == 1  # 4/16 >= 20 %
    assert m.area_ratios[0].side == 3  # log10(5)/sum(log10(x+1)) < 20 %
    assert m.extent == (3, 3)  # the centre row holds 50 % < 95.45 %
    assert m.extent_over_rf == (1.0, 0.5)
    assert m.ratio(0.99) == 1.0
    with pytest.raises(RFMapError, match="was not measured"):
        m.ratio(0.42)
    d = m.to_dict()
    assert d["extent_over_rf"] == [1.0, 0.5] and d["gaussian"]["sigma"][0] == pytest.approx(
        0.5**0.5
    )
    with pytest.raises(RFMapError, match="theoretical_rf"):
        erf_metrics(data, theoretical_rf=(3,))
    assert erf_metrics(np.zeros((4, 4))).gaussian is None


def test_two_sigma_share():
    assert abs(TWO_SIGMA_SHARE - 0.9544997361) < 1e-10
