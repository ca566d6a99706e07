"""rfmap.gridding: the exact gridding criterion, the report's metrics and the HDC rule.

Oracles: hand-computed fields; the sumset of the layers' moves enumerated in plain
Python (``reachable``); the engine's exact maps (``rfmap.axis_counts``/``path_map``,
themselves checked against autograd in test_paths_autograd.py); Wang et al.'s published
examples.
"""

from __future__ import annotations

import itertools
import json
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oracles import brute_force_counts, paths_1d_unbounded
from rfmap import InvalidSpecError, axis_counts, conv_stack, path_map
from rfmap.gridding import (
    HOLE_OFFSETS_LIMIT,
    axis_gap,
    check,
    check_layers,
    compare,
    effective_dilations,
    gridding_free,
    hdc_m,
    hdc_rule,
)

# -- independent oracles -------------------------------------------------------------------


def reachable(dilations, kernels):
    """Offsets reached (from the field's first cell) by enumerating every tap choice."""
    offsets = {0}
    for d, k in zip(dilations, kernels, strict=True):
        offsets = {o + t * d for o in offsets for t in range(k)}
    return offsets


def oracle_free(dilations, kernels):
    offsets = reachable(dilations, kernels)
    return len(offsets) == max(offsets) + 1


schedules = st.lists(st.integers(1, 12), min_size=1, max_size=5)


# -- hand-checked examples -----------------------------------------------------------------


def test_two_two_two_grids_every_other_offset():
    r = check([2, 2, 2], ndim=1)
    assert r.gridding_free is False
    assert r.receptive_field == (13,)
    assert r.reached == (7,)
    assert r.hole_offsets == ((1, 3, 5, 7, 9, 11),)
    assert r.holes == 6
    assert r.origin == (-6,)
    # counts 1 3 6 7 6 3 1 on the even offsets: peak 7, 27 paths over 7 cells
    assert r.max_paths == 7 and r.min_nonzero_paths == 1 and r.total_paths == 27
    assert r.peak_to_mean_exact == Fraction(7 * 7, 27)
    assert r.gaps[0].to_dict() == {"layer": 1, "dilation": 2, "span": 1, "first_hole": 1}
    assert r.first_hole_layer == 1


def test_one_two_nine_first_hole_after_the_span_of_one_and_two():
    # {0,1,2} + {0,2,4} = 0..6, then steps of 9 jump over 7 and 8
    r = check([1, 2, 9], ndim=1)
    assert r.hole_offsets == ((7, 8, 16, 17),)
    assert r.gaps[0].layer == 3 and r.gaps[0].span == 7 and r.gaps[0].first_hole == 7
    assert r.first_hole_layer == 3


def test_2d_holes_are_cells_with_any_hole_coordinate():
    r = check([2, 2, 2])
    assert r.receptive_field == (13, 13)
    assert r.receptive_field_cells == 169
    assert r.reached_cells == 49
    assert r.holes == 120
    assert r.coverage == 49 / 169
    counts = path_map([2, 2, 2], size=None).counts
    assert int(np.count_nonzero(counts)) == 49


def test_holes_closed_by_a_later_layer():
    r = check([1, 4, 2], ndim=1)
    assert r.gridding_free is True
    assert r.first_hole_layer == 2  # (1, 4) alone has holes; 2 fills them


def test_per_axis_dilations():
    r = check([2, (1, 3)])
    assert r.gaps[0] is None and r.gaps[1] is not None
    assert r.receptive_field == (7, 11)
    assert r.reached == (7, 9)
    assert r.hole_offsets == ((), (1, 9))
    assert r.holes == 7 * 11 - 7 * 9


def test_strides_scale_the_dilation_of_later_layers():
    # a 1x1 stride-2 layer then a kernel-3 layer: offsets 0, 2, 4 -> holes
    layers = conv_stack([1, 1], kernel_size=[1, 3], stride=[2, 1], padding=0, ndim=1)
    assert effective_dilations(layers) == [1, 2]
    r = check_layers(layers)
    assert r.hole_offsets == ((1, 3),)
    _, counts = axis_counts(layers, 0, None)
    assert counts.tolist() == [1, 0, 1, 0, 1]
    assert r.hdc.applicable is False and "stride" in r.hdc.reason
    assert r.suggestion is None and "stride" in r.suggestion_note


def test_causal_padding_moves_the_origin_only():
    same = check([1, 2, 4], 2, ndim=1)
    causal = check([1, 2, 4], 2, ndim=1, padding="causal")
    # even kernels: PyTorch's 'same' pads d // 2 on the left, the rest on the right
    assert causal.origin == (-7,) and same.origin == (-(0 + 1 + 2),)
    assert causal.to_dict()["hole_offsets"] == same.to_dict()["hole_offsets"]


@pytest.mark.parametrize(
    ("dilations", "kernels", "strides", "padding"),
    [
        ([1, 2], [3, 3], [2, 1], 1),
        ([1, 1, 3], [2, 3, 3], [1, 2, 1], [0, 1, 2]),
        ([2, 1], [4, 2], [1, 1], "same"),
        ([1, 3], [3, 2], [1, 1], "causal"),
    ],
)
def test_origin_and_field_equal_the_engine(dilations, kernels, strides, padding):
    layers = conv_stack(dilations, kernels, stride=strides, padding=padding, ndim=1)
    origin, counts = axis_counts(layers, 0, None)
    r = check_layers(layers)
    assert r.origin == (origin,) and r.receptive_field == (len(counts),)
    assert r.hole_offsets == (tuple(int(i) for i in np.flatnonzero(counts == 0)),)


def test_kernel_one_layers_never_matter():
    assert gridding_free([5, 1], kernel_size=[1, 3], ndim=1)
    assert axis_gap([1, 3], [5, 2]) is not None


# -- the criterion against the exact map ---------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(schedules, st.data())
def test_criterion_equals_the_enumerated_sumset(dilations, data):
    kernels = data.draw(
        st.lists(st.integers(1, 4), min_size=len(dilations), max_size=len(dilations))
    )
    expected = oracle_free(dilations, kernels)
    assert (axis_gap(kernels, dilations) is None) == expected
    assert gridding_free(dilations, kernels, ndim=1) == expected


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3)), min_size=1, max_size=4
    )
)
def test_criterion_with_strides_and_any_kernel_equals_the_enumerated_paths(specs):
    # (dilation, kernel, stride) per layer; the oracle walks every path back through the
    # strides on a finite input (no padding), so it never uses effective dilations.
    dilations = [d for d, _, _ in specs]
    kernels = [k for _, k, _ in specs]
    strides = [s for _, _, s in specs]
    layers = conv_stack(dilations, kernels, stride=strides, padding=0, ndim=1)
    extent = 1 + sum((k - 1) * e for k, e in zip(kernels, effective_dilations(layers), strict=True))
    counts = brute_force_counts(layers, (extent + 3 * max(strides),), (0,))
    nonzero = [i for i, c in enumerate(counts.tolist()) if c]
    assert nonzero[0] == 0 and nonzero[-1] == extent - 1
    holes = tuple(i for i in range(extent) if counts[i] == 0)
    r = check_layers(layers)
    assert r.gridding_free == (not holes)
    assert gridding_free(dilations, kernels, ndim=1, stride=strides) == (not holes)
    assert r.receptive_field == (extent,) and r.hole_offsets == (holes,)
    if holes:
        assert r.gaps[0].first_hole == holes[0]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3)),
        min_size=1,
        max_size=3,
    )
)
def test_per_axis_dilations_and_kernels_equal_the_enumerated_2d_paths(specs):
    # (dilation_y, dilation_x, kernel_y, kernel_x) per layer, stride 1, no padding
    layers = conv_stack(
        [(dy, dx) for dy, dx, _, _ in specs], [(ky, kx) for _, _, ky, kx in specs], padding=0
    )
    extent = tuple(
        1 + sum((layer.kernel_size[a] - 1) * layer.dilation[a] for layer in layers)
        for a in range(2)
    )
    counts = brute_force_counts(layers, extent, (0, 0))
    reached = int(np.count_nonzero(counts))
    r = check_layers(layers)
    assert r.receptive_field == extent
    assert r.gridding_free == (reached == extent[0] * extent[1])
    assert r.holes == extent[0] * extent[1] - reached
    assert r.max_paths == max(counts.ravel().tolist())
    if r.suggestion is not None:  # one kernel size per axis for every layer
        new = list(r.suggestion.dilations)
        fixed = check(new, [layers[0].kernel_size] * len(new), ndim=2)
        assert fixed.gridding_free
        assert all(a >= b for a, b in zip(fixed.receptive_field, extent, strict=True))


@settings(max_examples=150, deadline=None)
@given(schedules, st.data())
def test_report_metrics_equal_the_exact_map(dilations, data):
    k = data.draw(st.integers(2, 4))
    r = check(dilations, k, ndim=1)
    reached = paths_1d_unbounded(dilations, [k] * len(dilations))
    first = min(reached)
    field = max(reached) - first + 1
    assert r.receptive_field == (field,)
    assert r.origin == (first,)
    holes = sorted(o - first for o in range(first, first + field) if o not in reached)
    assert r.reached == (len(reached),)
    assert r.hole_offsets == (tuple(holes[:HOLE_OFFSETS_LIMIT]),)
    assert r.gridding_free == (not holes)
    counts = list(reached.values())
    assert r.max_paths == max(counts) and r.min_nonzero_paths == min(counts)
    assert r.total_paths == sum(counts)
    assert r.peak_to_mean == float(Fraction(max(counts) * len(counts), sum(counts)))
    assert r.min_nonzero_to_max == float(Fraction(min(counts), max(counts)))
    if holes:
        assert r.gaps[0].first_hole == holes[0]
    # the closed-form ERF variance equals the map's variance, exactly
    total = sum(counts)
    mean = Fraction(sum(o * c for o, c in reached.items()), total)
    var = Fraction(sum(o * o * c for o, c in reached.items()), total) - mean * mean
    assert r.erf_std[0] == math.sqrt(float(var))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), st.integers(2, 3))
def test_first_hole_layer_is_the_first_prefix_with_holes(dilations, k):
    expected = next(
        (i for i in range(1, len(dilations) + 1) if not oracle_free(dilations[:i], [k] * i)),
        None,
    )
    assert check(dilations, k, ndim=1, suggest=False).first_hole_layer == expected


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 7), min_size=2, max_size=4))
def test_the_report_does_not_depend_on_the_layer_order(dilations):
    first = check(dilations, ndim=1, suggest=False).to_dict()
    for order in itertools.permutations(dilations):
        other = check(list(order), ndim=1, suggest=False).to_dict()
        for key in (
            "gridding_free",
            "receptive_field",
            "reached",
            "hole_offsets",
            "coverage",
            "peak_to_mean",
            "min_nonzero_to_max",
            "erf_std",
            "origin",
        ):
            assert other[key] == first[key], key


def test_2d_metrics_against_the_2d_map():
    for schedule in ([1, 2, 5], [2, 2, 2], [1, (2, 3), 4]):
        r = check(schedule)
        m = path_map(schedule, size=None)
        assert r.receptive_field == m.receptive_field
        assert r.reached_cells == m.support
        assert r.max_paths == m.max and r.total_paths == m.total
        nonzero = m.counts[m.counts != 0]
        assert r.min_nonzero_paths == int(nonzero.min())
        assert r.holes == m.counts.size - m.support


def test_long_schedules_are_decided_without_the_map():
    doubling = [2**i for i in range(45)]  # a field of 2**46 - 1 cells
    r = check(doubling, ndim=1)
    assert r.gridding_free and not r.map_computed
    assert r.reached == r.receptive_field and r.holes == 0 and r.coverage == 1.0
    assert r.peak_to_mean is None
    bad = check([2, *doubling[1:]], ndim=1, suggest=False)
    assert not bad.gridding_free and bad.gaps[0].layer == 1
    assert bad.reached == (None,) and bad.holes is None and bad.hole_offsets is None
    assert json.loads(json.dumps(bad.to_dict()))["holes"] is None


def test_map_budget_is_respected():
    r = check([1, 10], ndim=1, max_bytes=8)
    assert not r.map_computed and not r.gridding_free and r.holes is None


def test_hole_offsets_are_capped_but_counted():
    r = check([3000], ndim=1)
    assert r.receptive_field == (6001,)
    assert r.holes_per_axis == (6001 - 3,)
    assert len(r.hole_offsets[0]) == HOLE_OFFSETS_LIMIT
    assert r.hole_offsets_truncated == (True,)


# -- the HDC rule --------------------------------------------------------------------------


def test_wang_et_al_published_examples():
    # "for kernel size K = 3, an r = [1, 2, 5] pattern works as M2 = 2; an r = [1, 2, 9]
    # pattern does not work as M2 = 5"
    assert hdc_m([1, 2, 5])[1] == 2
    assert hdc_m([1, 2, 9])[1] == 5
    assert check([1, 2, 5]).hdc.passes is True and check([1, 2, 5]).gridding_free
    assert check([1, 2, 9]).hdc.passes is False and not check([1, 2, 9]).gridding_free
    # the paper's gridding example r = 2 in every layer, and [2, 4, 8] (common factor 2)
    assert check([2, 4, 8]).hdc.passes is False and check([2, 4, 8]).hdc.coprime is False
    assert check([1, 2, 3]).gridding_free  # their HDC figure


def test_hdc_recursion_by_hand():
    # M_3 = 9; M_2 = max(9 - 4, 9 - 2*(9 - 2), 2) = 5; M_1 = max(5 - 2, 5 - 2*4, 1) = 3
    assert hdc_m([1, 2, 9]) == [3, 5, 9]
    assert hdc_m([7]) == [7]
    # descending rates, where the middle term M_(i+1) - 2 (M_(i+1) - r_i) is the largest:
    # M_2 = max(1 - 4, 1 - 2*(1 - 2), 2) = 3; M_1 = max(3 - 18, 3 - 2*(3 - 9), 9) = 15
    assert hdc_m([9, 2, 1]) == [15, 3, 1]
    # M_1 = max(2 - 10, 2 - 2*(2 - 5), 5) = 8
    assert hdc_m([5, 2]) == [8, 2]


@pytest.mark.parametrize(
    ("schedule", "k", "rule", "truth"),
    [
        ([2, 2, 2], 3, True, False),  # the paper's own gridding figure passes M_2 <= K
        ([2, 3], 3, True, False),  # coprime, passes, yet offset 1 is never reached
        ([1, 4, 2], 3, False, True),  # order-dependent: sorted it passes
        ([1, 6, 1, 1], 3, False, True),
        ([1, 2, 5], 2, True, False),  # kernel 2, ascending from 1, still wrong
        ([1, 1, 4], 2, True, False),
        ([1, 1, 7], 4, False, True),  # kernel 4: the rule is too strict
        ([1, 2, 9], 4, False, True),
    ],
)
def test_schedules_where_the_rule_and_the_truth_disagree(schedule, k, rule, truth):
    assert oracle_free(schedule, [k] * len(schedule)) is truth
    r = check(schedule, k, ndim=1, suggest=False)
    assert r.gridding_free is truth
    assert r.hdc.passes is rule
    assert r.hdc.agrees is False
    assert r.to_dict()["hdc"]["agrees"] is False


def test_ascending_kernel_3_schedules_from_1_agree_with_the_rule():
    # Where they disagree for K = 3 it is because of r_1 != 1 or the order (exhaustive
    # over L <= 4, dilations <= 9).
    for length in (2, 3, 4):
        for r in itertools.combinations_with_replacement(range(1, 10), length):
            if r[0] != 1:
                continue
            assert hdc_rule(conv_stack(list(r), ndim=1)).agrees, r


def test_hdc_not_applicable():
    assert hdc_rule(conv_stack([2], ndim=1)).applicable is False
    rule = hdc_rule(conv_stack([1, 2], kernel_size=[3, 5], ndim=1))
    assert rule.applicable is False and rule.passes is None and rule.agrees is None
    assert rule.to_dict()["axes"] == []


# -- the contract ----------------------------------------------------------------------------

CONTRACT_KEYS = {
    "dilations",
    "kernel",
    "ndim",
    "layers",
    "gridding_free",
    "receptive_field",
    "receptive_field_cells",
    "origin",
    "reached",
    "reached_cells",
    "holes",
    "holes_per_axis",
    "hole_offsets",
    "hole_offsets_truncated",
    "coverage",
    "peak_to_mean",
    "min_nonzero_to_max",
    "max_paths",
    "min_nonzero_paths",
    "total_paths",
    "erf_std",
    "first_hole_layer",
    "gaps",
    "hdc",
    "suggestion",
    "suggestion_note",
    "map_computed",
}


def test_to_dict_keys_are_the_documented_contract():
    d = check([2, 2, 2]).to_dict()
    assert set(d) == CONTRACT_KEYS
    assert set(d["hdc"]) == {"applicable", "reason", "passes", "coprime", "agrees", "axes"}
    assert set(d["hdc"]["axes"][0]) == {"kernel", "dilations", "M", "M2", "passes", "common_factor"}
    assert set(d["suggestion"]) == {
        "dilations",
        "receptive_field",
        "added_layers",
        "changed_layers",
        "distance",
        "optimal",
    }
    assert json.loads(json.dumps(d)) == d
    import rfmap.gridding

    for key in CONTRACT_KEYS:
        assert f"``{key}``" in rfmap.gridding.__doc__, key


def test_suggestion_fixes_and_keeps_the_field():
    r = check([2, 2, 2, 2])
    fix = r.suggestion
    assert fix.dilations == (1, 2, 2, 3)
    assert fix.changed_layers == (1, 4) and fix.distance == 2 and fix.optimal
    assert fix.receptive_field == (17, 17) == r.receptive_field
    assert check(list(fix.dilations)).gridding_free
    assert check([1, 2, 5]).suggestion is None
    assert check([2, 2], suggest=False).suggestion is None


def test_suggestion_for_different_axes():
    r = check([2, (1, 3)])
    fix = r.suggestion
    assert fix.added_layers == 1
    assert check(list(fix.dilations)).gridding_free
    assert all(n >= o for n, o in zip(fix.receptive_field, r.receptive_field, strict=True))


def test_bad_input_is_one_clear_error():
    with pytest.raises(InvalidSpecError, match=r"dilations must be positive integers, got 0"):
        check([1, 0, 2])
    with pytest.raises(InvalidSpecError, match="at least one layer"):
        check([])
    with pytest.raises(InvalidSpecError, match="at least one layer"):
        check_layers([])


def test_str_and_html_render():
    r = check([1, 2, 9])
    text = str(r)
    assert "GRIDDING" in text and "fix: 1,3,9" in text
    assert "<img" in r._repr_html_()


def test_compare():
    c = compare([[2, 2, 2], [1, 2, 3], [1, 2, 5]], size=33)
    assert c.names == ["(2, 2, 2)", "(1, 2, 3)", "(1, 2, 5)"]
    d = c.to_dict()
    assert d["size"] == [33, 33]
    assert [s["gridding_free"] for s in d["schedules"]] == [False, True, True]
    assert d["schedules"][0]["map"]["support"] == 49
    with pytest.raises(InvalidSpecError, match="different numbers of axes"):
        compare([[1, 2], [(1, 2, 3)]], size=9)
    with pytest.raises(InvalidSpecError, match="at least one schedule"):
        compare([], size=9)
