"""The exact engine against hand-computed maps and a brute-force path enumeration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rfmap
from oracles import brute_force_counts, examples, paths_1d_unbounded
from rfmap import InvalidSpecError, MapTooLargeError, conv_stack, path_counts, path_map
from rfmap.paths import axis_counts, stack_path_map

# ---------------------------------------------------------------------------------------
# Hand-computed examples
# ---------------------------------------------------------------------------------------


def test_single_layer_is_the_kernel_footprint():
    expected = np.zeros((7, 7), dtype=np.int64)
    expected[2:5, 2:5] = 1
    assert (path_counts([1], size=7) == expected).all()


def test_two_layers_of_3x3_count_paths_like_a_binomial():
    # 1D: (1,1,1) * (1,1,1) = (1,2,3,2,1); 2D is its outer product.
    row = np.array([0, 1, 2, 3, 2, 1, 0])
    assert path_counts([1, 1], size=7, ndim=1).tolist() == row.tolist()
    assert (path_counts([1, 1], size=7) == np.outer(row, row)).all()


def test_dilation_two_leaves_holes():
    counts = path_counts([2, 2], size=9, ndim=1)
    #   offsets -4..4 from the centre: taps {-2,0,2} twice -> 1,2,3,2,1 on even offsets
    assert counts.tolist() == [1, 0, 2, 0, 3, 0, 2, 0, 1]


def test_boundary_truncation_loses_paths():
    # At size 3 a two-layer stack loses the paths through the padding.
    assert path_counts([1, 1], size=3, ndim=1).tolist() == [2, 3, 2]
    # Corner unit of a 5x5 input, one 3x3 layer: only 2x2 of the 3x3 window exists.
    counts = path_counts([1], size=5, unit=(0, 0))
    assert counts.sum() == 4 and counts[:2, :2].tolist() == [[1, 1], [1, 1]]


def test_even_kernel_same_padding_is_asymmetric_like_pytorch():
    # K=2, d=1: PyTorch pads left 0, right 1, so output i sees inputs i and i+1.
    assert path_counts([1], size=5, kernel_size=2, ndim=1).tolist() == [0, 0, 1, 1, 0]
    # K=4, d=2: total 6, left 3, right 3 -> taps at offsets -3,-1,1,3.
    assert path_counts([2], size=9, kernel_size=4, ndim=1).tolist() == [0, 1, 0, 1, 0, 1, 0, 1, 0]
    # K=2, d=3: total 3, left 1, right 2 -> offsets -1, +2.
    assert path_counts([3], size=7, kernel_size=2, ndim=1).tolist() == [0, 0, 1, 0, 0, 1, 0]


def test_causal_padding_looks_only_left():
    counts = path_counts([1, 2], size=8, kernel_size=2, ndim=1, padding="causal", unit=7)
    # taps {0,-1} then {0,-2}: offsets 0,-1,-2,-3 each once.
    assert counts.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_stride_and_explicit_padding():
    # Conv1d(k=3, stride=2, padding=1) then Conv1d(k=3, padding=1) on 8 inputs -> 4 outputs.
    layers = conv_stack([1, 1], ndim=1, stride=[2, 1], padding=1)
    pmap = stack_path_map(layers, 8, 1)
    # Unit 1 of layer 2 sees layer-1 outputs 0,1,2 -> inputs {-1,0,1},{1,2,3},{3,4,5}.
    assert pmap.counts.tolist() == [1, 2, 1, 2, 1, 1, 0, 0]
    assert pmap.unit == (1,)


def test_per_axis_dilation_and_kernel():
    counts = path_counts([(1, 2)], size=(5, 7), kernel_size=[(3, 2)])
    # rows: taps -1,0,1 around 2; cols: K=2 d=2 -> left pad 1 -> offsets -1,+1 around 3.
    expected = np.zeros((5, 7), dtype=np.int64)
    expected[1:4, [2, 4]] = 1
    assert (counts == expected).all()


def test_three_dimensional_map_is_outer_product_of_axes():
    counts = path_counts([1, 2], size=9, ndim=3)
    line = path_counts([1, 2], size=9, ndim=1)
    assert counts.shape == (9, 9, 9)
    assert (counts == np.multiply.outer(np.multiply.outer(line, line), line)).all()


def test_unbounded_map_spans_the_receptive_field():
    pmap = path_map([1, 2, 4], size=None, ndim=1)
    assert pmap.counts.shape == (15,)
    assert pmap.origin == (-7,)
    expected = paths_1d_unbounded([1, 2, 4], [3, 3, 3])
    assert {pmap.origin[0] + i: int(c) for i, c in enumerate(pmap.counts)} == expected
    assert pmap.total == 27 and pmap.unit is None


def test_unbounded_equals_a_large_enough_bounded_map():
    bounded = path_counts([1, 3, 2], size=41, kernel_size=[2, 4, 3], ndim=1)
    unbounded = path_map([1, 3, 2], size=None, kernel_size=[2, 4, 3], ndim=1)
    start = 20 + unbounded.origin[0]
    assert (bounded[start : start + len(unbounded.counts)] == unbounded.counts).all()
    assert bounded.sum() == unbounded.total


def test_metrics():
    pmap = path_map([1, 2, 4], size=21)
    assert pmap.receptive_field == (15, 15)
    assert pmap.support == 225
    assert pmap.max == int(pmap.counts.max()) == 9
    assert pmap.total == int(pmap.counts.sum()) == 27 * 27
    gridded = path_map([2, 2, 2], size=21)
    assert gridded.receptive_field == (13, 13)
    assert gridded.support == 49 == np.count_nonzero(gridded.counts)


def test_to_dict_is_json_ready_and_exact():
    data = path_map([1, 1], size=5, unit=(1, 3)).to_dict()
    assert data["counts"] == path_counts([1, 1], size=5, unit=(1, 3)).tolist()
    assert data["unit"] == [1, 3] and data["size"] == 5 and data["ndim"] == 2
    assert data["dilations"] == [1, 1] and data["kernel"] == 3
    assert all(type(v) is int for row in data["counts"] for v in row)
    assert path_map([(1, 2)], size=(3, 4)).to_dict()["size"] == [3, 4]


def test_array_protocol():
    pmap = path_map([1], size=3)
    assert np.asarray(pmap).tolist() == [[1, 1, 1]] * 3


# ---------------------------------------------------------------------------------------
# Exact integers: int64 while safe, Python ints beyond
# ---------------------------------------------------------------------------------------


def test_int64_while_safe():
    assert path_counts([1] * 10, size=21).dtype == np.int64


def test_switches_to_python_ints_before_overflow():
    # 2D, K=3, 20 layers: the total 9**20 exceeds 2**63 (and float64's 2**53).
    pmap = path_map([1] * 20, size=41)
    assert pmap.counts.dtype == object
    assert pmap.total == 9**20 > 2**63
    line = paths_1d_unbounded([1] * 20, [3] * 20)  # exact Python ints
    centre = line[0]
    assert pmap.counts[20, 20] == centre * centre
    assert pmap.max == centre * centre
    assert all(type(v) is int for v in pmap.counts.ravel()[:50])


def test_huge_1d_schedule_stays_exact():
    pmap = path_map([1] * 50, size=None, ndim=1)
    assert pmap.total == 3**50
    assert pmap.counts.dtype == object
    assert {pmap.origin[0] + i: c for i, c in enumerate(pmap.counts.tolist())} == (
        paths_1d_unbounded([1] * 50, [3] * 50)
    )


# ---------------------------------------------------------------------------------------
# Property tests against the brute-force enumeration of paths
# ---------------------------------------------------------------------------------------


@st.composite
def small_stacks(draw, max_ndim=2):
    ndim = draw(st.integers(1, max_ndim))
    n_layers = draw(st.integers(1, 3 if ndim == 2 else 4))
    dilations, kernels, strides, paddings = [], [], [], []
    for _ in range(n_layers):
        dilations.append(tuple(draw(st.integers(1, 3)) for _ in range(ndim)))
        kernels.append(tuple(draw(st.integers(1, 4)) for _ in range(ndim)))
        stride = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
        strides.append(stride)
        if all(s == 1 for s in stride):
            paddings.append(draw(st.sampled_from(["same", "valid", "causal", 0, 1, 2])))
        else:
            paddings.append(draw(st.sampled_from(["valid", "causal", 0, 1, 2])))
    layers = conv_stack(dilations, kernels, ndim=ndim, stride=strides, padding=paddings)
    size = tuple(draw(st.integers(1, 14)) for _ in range(ndim))
    return layers, size


@given(data=st.data(), stack=small_stacks())
@settings(max_examples=examples(1000))
def test_engine_equals_brute_force(data, stack):
    layers, size = stack
    try:
        out = rfmap.specs.output_sizes(layers, size)[-1]
    except InvalidSpecError:
        with pytest.raises(InvalidSpecError, match="too small"):
            stack_path_map(layers, size)
        return
    unit = tuple(data.draw(st.integers(0, n - 1)) for n in out)
    expected = brute_force_counts(layers, size, unit)
    pmap = stack_path_map(layers, size, unit)
    assert pmap.counts.shape == tuple(size)
    assert (pmap.counts == expected).all()
    assert pmap.total == sum(expected.ravel())
    assert pmap.support == np.count_nonzero(expected)


@given(
    dilations=st.lists(st.integers(1, 6), min_size=1, max_size=6),
    kernels=st.lists(st.integers(1, 5), min_size=6, max_size=6),
)
@settings(max_examples=examples(500))
def test_unbounded_1d_equals_path_enumeration(dilations, kernels):
    kernels = kernels[: len(dilations)]
    pmap = path_map(dilations, size=None, kernel_size=kernels, ndim=1)
    reached = paths_1d_unbounded(dilations, kernels)
    got = {pmap.origin[0] + i: c for i, c in enumerate(pmap.counts.tolist()) if c}
    assert got == reached
    assert pmap.total == math.prod(kernels)
    assert pmap.counts.shape[0] == rfmap.receptive_field_size(
        conv_stack(dilations, kernels, ndim=1)
    )


def test_axis_counts_returns_only_the_inside_part():
    # Unit 0 of a size-3 input: layer 2 sees layer-1 outputs {0, 1} (-1 is padding);
    # those see inputs {0, 1} and {0, 1, 2}.
    origin, values = axis_counts(conv_stack([1, 1], ndim=1), 0, 3, 0)
    assert origin == 0 and values.tolist() == [2, 2, 1]
    origin, values = axis_counts(conv_stack([1], ndim=1), 0, 9, 8)
    assert origin == 7 and values.tolist() == [1, 1]


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dilations": [1, 0]}, "dilations must be positive integers"),
        ({"dilations": [1, -2]}, "dilations must be positive integers"),
        ({"dilations": [1.5]}, "dilations must be"),
        ({"dilations": []}, "at least one layer"),
        ({"dilations": [1], "size": 0}, "size must be a positive integer"),
        ({"dilations": [1], "kernel_size": 0}, "kernel_size must be positive"),
        ({"dilations": [1], "ndim": 4}, "ndim must be 1, 2 or 3"),
        ({"dilations": [1], "unit": (21, 0)}, "outside the output grid"),
        ({"dilations": [1], "unit": (1,)}, "unit needs 2 indices"),
        ({"dilations": [1, 2], "kernel_size": [3, 3, 3]}, "3 entries but the schedule has 2"),
        ({"dilations": [(1, 2)], "ndim": 3}, "has 2 axes, expected 3"),
        ({"dilations": [1], "stride": 2}, "padding='same' needs stride 1"),
        ({"dilations": [1], "padding": "full"}, "padding must be one of"),
        ({"dilations": [1], "size": None, "unit": (0, 0)}, "unbounded"),
        ({"dilations": [1, 1], "size": 1, "padding": "valid"}, "too small"),
    ],
)
def test_bad_input_raises_one_clear_error(kwargs, message):
    with pytest.raises(InvalidSpecError, match=message):
        path_map(**kwargs)


def test_refuses_huge_maps_before_allocating():
    with pytest.raises(MapTooLargeError, match=r"200,000x200,000|cells"):
        path_map([1], size=200_000)
    with pytest.raises(MapTooLargeError, match="GiB"):
        path_map([1], size=1000, ndim=3, max_bytes=2**20)


# ---------------------------------------------------------------------------------------
# Long kernels, huge dilations, memory: regressions from the acceptance review
# ---------------------------------------------------------------------------------------


@st.composite
def long_kernel_stacks(draw):
    """1D stacks whose kernels are long enough for the prefix-sum path (> 32 taps)."""
    n_layers = draw(st.integers(1, 2))
    dilations = [draw(st.integers(1, 3)) for _ in range(n_layers)]
    kernels = [draw(st.integers(20, 80)) for _ in range(n_layers)]
    strides = [draw(st.integers(1, 2)) for _ in range(n_layers)]
    paddings = [
        draw(st.sampled_from(["same", "same", "causal", 40, "valid", 7] if s == 1 else [40, 3]))
        for s in strides
    ]
    layers = conv_stack(dilations, kernels, ndim=1, stride=strides, padding=paddings)
    return layers, draw(st.integers(1, 200))


@given(data=st.data(), stack=long_kernel_stacks())
@settings(max_examples=examples(200))
def test_long_kernels_equal_brute_force(data, stack):
    layers, size = stack
    try:
        out = rfmap.specs.output_sizes(layers, (size,))[-1]
    except InvalidSpecError:
        return
    unit = (data.draw(st.integers(0, out[0] - 1)),)
    expected = brute_force_counts(layers, (size,), unit)
    assert (stack_path_map(layers, size, unit).counts == expected).all()


@given(
    dilations=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    kernels=st.lists(st.integers(30, 70), min_size=3, max_size=3),
)
@settings(max_examples=examples(60))
def test_long_kernels_unbounded_equal_path_enumeration(dilations, kernels):
    kernels = kernels[: len(dilations)]
    pmap = path_map(dilations, size=None, kernel_size=kernels, ndim=1)
    got = {pmap.origin[0] + i: c for i, c in enumerate(pmap.counts.tolist()) if c}
    assert got == paths_1d_unbounded(dilations, kernels)


def test_long_kernels_with_python_ints():
    # 12 layers of 40 taps: 40**12 > 2**63 paths, so the prefix sums run on Python ints.
    pmap = path_map([1, 2] * 6, size=None, kernel_size=40, ndim=1)
    assert pmap.counts.dtype == object and pmap.total == 40**12
    got = {pmap.origin[0] + i: c for i, c in enumerate(pmap.counts.tolist()) if c}
    assert got == paths_1d_unbounded([1, 2] * 6, [40] * 12)


def _peak_bytes(func):
    import tracemalloc

    tracemalloc.start()
    try:
        result = func()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_huge_dilations_and_kernels_on_a_small_input_allocate_nothing_large():
    # Only the centre tap of a dilation far larger than the input lands inside it.
    counts, peak = _peak_bytes(lambda: path_counts([10**12], size=5))
    assert counts.tolist() == [[1 if (i, j) == (2, 2) else 0 for j in range(5)] for i in range(5)]
    assert peak < 2**20
    # A dilation past int64 is still an exact Python int.
    counts, peak = _peak_bytes(lambda: path_counts([10**20, 1], size=5, ndim=1))
    assert counts.tolist() == [0, 1, 1, 1, 0] and peak < 2**20
    # A kernel of 10**12 taps ('same'): every input position is one tap of the unit.
    counts, peak = _peak_bytes(lambda: path_counts([1, 1], size=6, kernel_size=10**12, ndim=1))
    assert counts.tolist() == [6] * 6 and peak < 2**20


def test_refusal_comes_before_any_allocation():
    def refuse():
        with pytest.raises(MapTooLargeError, match="GiB"):
            path_map([1], size=200_000)

    _, peak = _peak_bytes(refuse)
    assert peak < 2**20
    with pytest.raises(MapTooLargeError, match="1D factors"):
        path_map([1], size=None, kernel_size=10**11, ndim=1)


def test_memory_estimate_grows_with_the_size_of_python_ints():
    # 200 layers in 2D: every cell of a 41x41 map holds a ~600-bit integer, far more than
    # the 36 bytes of a small Python int; the budget must count what the map really takes.
    pmap, peak = _peak_bytes(lambda: path_map([1] * 200, size=41))
    assert pmap.counts.dtype == object and peak > 100_000
    with pytest.raises(MapTooLargeError):
        path_map([1] * 200, size=41, max_bytes=100_000)


def test_numpy_arrays_are_accepted_as_schedules_sizes_and_units():
    counts = path_counts(2 ** np.arange(3), size=np.int64(9), ndim=1)
    assert counts.tolist() == path_counts([1, 2, 4], size=9, ndim=1).tolist()
    a = path_counts(np.array([[1, 2], [2, 1]]), size=np.array([5, 6]), unit=np.array([1, 2]))
    b = path_counts([(1, 2), (2, 1)], size=(5, 6), unit=(1, 2))
    assert (a == b).all()
    assert (
        path_counts([1, 2], 9, kernel_size=np.array([3, 2])) == path_counts([1, 2], 9, [3, 2])
    ).all()


def test_non_integer_unit_is_named_as_such():
    with pytest.raises(InvalidSpecError, match="unit must be integer indices"):
        path_map([1], size=5, unit=(2, 2.0))


def test_exact_sum_never_overflows():
    from rfmap.paths import _exact_sum

    big = np.array([2**62, 2**62, 2**62], dtype=np.int64)  # int64's own sum would wrap
    assert _exact_sum(big) == 3 * 2**62
    assert _exact_sum(np.arange(5, dtype=np.int64)) == 10
    assert _exact_sum(np.zeros(0, dtype=np.int64)) == 0
    assert _exact_sum(np.array([2**70, 1], dtype=object)) == 2**70 + 1


# ---------------------------------------------------------------------------------------
# The full field and the input that clips it
# ---------------------------------------------------------------------------------------


def test_the_notebooks_fibonacci_field_is_clipped_by_its_input():
    m = path_map([1, 1, 2, 3, 5], size=21)
    assert m.full_receptive_field == (25, 25) and m.receptive_field == (21, 21) and m.clipped
    d = m.to_dict(counts=False)
    assert d["full_receptive_field"] == [25, 25] and d["clipped"] is True
    assert list(d)[-2:] == ["full_receptive_field", "clipped"]
    assert "full_receptive_field=[25, 25]" in repr(m)
    fits = path_map([1, 1, 2, 3, 5], size=25)
    assert fits.receptive_field == fits.full_receptive_field == (25, 25) and not fits.clipped
    assert "full_receptive_field" not in repr(fits)
    corner = path_map([1, 2, 4], size=21, unit=(0, 10))  # the border cuts one axis
    assert corner.receptive_field == (8, 15) and corner.clipped
    unbounded = path_map([1, 1, 2, 3, 5], size=None)
    assert unbounded.receptive_field == (25, 25) and not unbounded.clipped


def _extent(counts: np.ndarray, axis: int) -> int:
    other = tuple(a for a in range(counts.ndim) if a != axis)
    nonzero = np.flatnonzero(np.asarray(counts != 0).any(axis=other) if other else counts != 0)
    return int(nonzero[-1] - nonzero[0] + 1) if len(nonzero) else 0


@given(data=st.data(), stack=small_stacks())
@settings(max_examples=examples(300))
def test_clipped_is_the_brute_force_extent_falling_short_of_the_full_field(data, stack):
    layers, size = stack
    try:
        out = rfmap.specs.output_sizes(layers, size)[-1]
    except InvalidSpecError:
        return
    unit = tuple(data.draw(st.integers(0, n - 1)) for n in out)
    pmap = stack_path_map(layers, size, unit)
    expected = brute_force_counts(layers, size, unit)
    extent = tuple(_extent(expected, a) for a in range(len(size)))
    full = stack_path_map(layers, None).counts.shape  # the unbounded map: the whole field
    assert pmap.receptive_field == extent
    assert pmap.full_receptive_field == full
    assert pmap.clipped == (extent != full)
    assert all(e <= f for e, f in zip(extent, full, strict=True))
