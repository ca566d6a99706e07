"""The exact engine against PyTorch autograd in float64: the seed notebook's method.

Every comparison is ``==`` on integers: the float64 gradients are exact here because the
generated stacks keep every count far below 2**53 (checked in each test).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch", reason="PyTorch is needed for the autograd oracle")

from oracles import examples  # noqa: E402
from rfmap import conv_stack, path_counts, stack_path_map  # noqa: E402
from rfmap.gradient import autograd_path_counts, build_network, seed_gradient  # noqa: E402
from rfmap.plot import GALLERY_SCHEDULES  # noqa: E402
from rfmap.specs import output_sizes  # noqa: E402

FLOAT64_EXACT = 2**53


def _as_exact_ints(grad: np.ndarray) -> np.ndarray:
    assert np.abs(grad).max() < FLOAT64_EXACT
    ints = np.rint(grad)
    assert (ints == grad).all(), "a float64 gradient that is not an integer"
    return ints.astype(np.int64)


@pytest.mark.parametrize("schedule", GALLERY_SCHEDULES)
def test_seed_notebook_figures_are_reproduced_exactly(schedule):
    """The notebook's own code path (float32, 21x21, centre pixel) gives the same integers."""
    grad = seed_gradient(schedule, 21)
    assert (_as_exact_ints(grad.astype(np.float64)) == path_counts(list(schedule), 21)).all()


def test_fibonacci_frames_match_autograd():
    fib = [1, 1, 2, 3, 5]
    for depth in range(1, 6):
        layers = conv_stack(fib[:depth])
        assert (_as_exact_ints(autograd_path_counts(layers, 21)) == path_counts(fib[:depth])).all()


def test_network_is_the_notebooks():
    net = build_network(conv_stack([1, 2]))
    conv = net[1]
    assert isinstance(conv, torch.nn.Conv2d)
    assert conv.kernel_size == (3, 3) and conv.dilation == (2, 2) and conv.padding == "same"
    assert conv.bias is None and bool((conv.weight == 1).all())


@st.composite
def stacks(draw, ndim):
    """Random stacks: per-layer/per-axis kernels (even ones too), dilations, strides, paddings."""
    max_layers = {1: 6, 2: 4, 3: 3}[ndim]
    n_layers = draw(st.integers(1, max_layers))
    dilations, kernels, strides, paddings = [], [], [], []
    for _ in range(n_layers):
        per_axis = draw(st.booleans())

        def value(strategy, per_axis=per_axis):
            if per_axis:
                return tuple(draw(strategy) for _ in range(ndim))
            return (draw(strategy),) * ndim

        dilations.append(value(st.integers(1, 5)))
        kernels.append(value(st.integers(1, 5)))
        stride = value(st.integers(1, 3)) if draw(st.integers(0, 3)) == 0 else (1,) * ndim
        strides.append(stride)
        choices = (
            ["valid", "causal", 0, 1, 3]
            if max(stride) > 1
            else ["same", "same", "valid", "causal", 2]
        )
        paddings.append(draw(st.sampled_from(choices)))
    layers = conv_stack(dilations, kernels, ndim=ndim, stride=strides, padding=paddings)
    max_size = {1: 60, 2: 24, 3: 12}[ndim]
    size = tuple(draw(st.integers(1, max_size)) for _ in range(ndim))
    return layers, size


def _check_against_autograd(data, layers, size):
    try:
        out = output_sizes(layers, size)[-1]
    except Exception:
        return False
    unit = tuple(data.draw(st.integers(0, n - 1), label="unit") for n in out)
    exact = stack_path_map(layers, size, unit)
    grad = autograd_path_counts(layers, size, unit)
    assert exact.counts.dtype == np.int64
    assert (exact.counts == _as_exact_ints(grad)).all()
    return True


@given(data=st.data(), stack=stacks(1))
@settings(max_examples=examples(800))
def test_1d_equals_autograd(data, stack):
    _check_against_autograd(data, *stack)


@given(data=st.data(), stack=stacks(2))
@settings(max_examples=examples(800))
def test_2d_equals_autograd(data, stack):
    _check_against_autograd(data, *stack)


@given(data=st.data(), stack=stacks(3))
@settings(max_examples=examples(200))
def test_3d_equals_autograd(data, stack):
    _check_against_autograd(data, *stack)


@given(
    dilations=st.lists(st.integers(1, 8), min_size=1, max_size=8),
    size=st.integers(1, 64),
    kernel=st.integers(1, 6),
    data=st.data(),
)
@settings(max_examples=examples(200))
def test_same_padding_schedules_any_unit(dilations, size, kernel, data):
    """The notebook's setting (stride 1, 'same'), with any kernel and any output unit."""
    unit = (data.draw(st.integers(0, size - 1)), data.draw(st.integers(0, size - 1)))
    layers = conv_stack(dilations, kernel)
    grad = autograd_path_counts(layers, size, unit)
    assert (stack_path_map(layers, size, unit).counts == _as_exact_ints(grad)).all()


def test_large_counts_agree_below_2_53():
    # 2D, K=3, 18 layers: the centre count is ~4e14, past 2**32 yet exact in float64.
    layers = conv_stack([1, 2, 3] * 6)
    grad = autograd_path_counts(layers, 81)
    exact = stack_path_map(layers, 81).counts
    assert 2**48 < exact.max() < 2**53
    assert (exact == _as_exact_ints(grad)).all()


@given(
    dilations=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    kernels=st.lists(st.integers(30, 70), min_size=3, max_size=3),
    padding=st.sampled_from(["same", "valid", "causal", 20]),
    size=st.integers(1, 200),
    data=st.data(),
)
@settings(max_examples=examples(80))
def test_long_kernels_equal_autograd(dilations, kernels, padding, size, data):
    """Kernels of more than 32 taps take the engine's prefix-sum path."""
    layers = conv_stack(dilations, kernels[: len(dilations)], ndim=1, padding=padding)
    _check_against_autograd(data, layers, (size,))
