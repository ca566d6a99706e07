"""rfmap.design: the schedule search and the smallest fix, against brute-force enumeration.

The brute force decides gridding by enumerating every path (the sumset of the layers'
moves), never by the criterion the search relies on, and ranks by the documented keys.
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rfmap import InvalidSpecError, axis_counts, conv_stack
from rfmap.design import (
    Objective,
    design,
    max_receptive_field,
    nearest_gridding_free,
    suggest_fix,
)
from rfmap.errors import SearchTooLargeError
from rfmap.gridding import check


def path_counts_1d(schedule, k):
    """Path count per offset, by enumerating every tap choice (dict offset -> count)."""
    counts = Counter({0: 1})
    for d in schedule:
        nxt: Counter[int] = Counter()
        for offset, n in counts.items():
            for t in range(k):
                nxt[offset + t * d] += n
        counts = nxt
    return counts


@functools.cache
def gridding_free_multisets(n, k, cap):
    """Every gridding-free multiset of n dilations <= cap, with its exact path counts."""
    out = []
    for b in itertools.combinations_with_replacement(range(1, cap + 1), n):
        counts = path_counts_1d(b, k)
        if len(counts) == max(counts) + 1:
            out.append((b, max(counts.values())))
    return out


def brute_design(layers, k, cap, target, objective, top):
    limit = k ** (layers - 1) if cap is None else min(cap, k ** (layers - 1))
    ranked = []
    for b, peak in gridding_free_multisets(layers, k, limit):
        rf = 1 + (k - 1) * sum(b)
        if target is not None and rf < target:
            continue
        if objective == "rf":
            key = (-rf, -sum(x * x for x in b), b)
        else:
            key = (Fraction(peak * rf, k**layers), -rf, b)
        ranked.append(key)
    return [key[-1] for key in sorted(ranked)[:top]]


@pytest.mark.parametrize(
    ("layers", "k", "cap"),
    [
        (1, 3, None),
        (2, 3, None),
        (3, 3, None),
        (3, 2, None),
        (4, 2, None),
        (5, 2, None),
        (3, 4, None),
        (4, 3, 6),
        (5, 3, 4),
        (3, 3, 2),
        (4, 2, 3),
    ],
)
@pytest.mark.parametrize("objective", ["rf", "flat"])
def test_design_equals_brute_force(layers, k, cap, objective):
    top = 6
    expected = brute_design(layers, k, cap, None, objective, top)
    got = design(layers, k, max_dilation=cap, objective=objective, top=top)
    assert [c.dilations for c in got.candidates] == expected
    if objective == "rf":
        assert got.candidates[0].receptive_field == max_receptive_field(layers, k, cap)


@pytest.mark.parametrize(
    ("k", "target", "objective"),
    [(3, 10, "rf"), (3, 20, "flat"), (2, 9, "flat"), (3, 27, "flat"), (2, 30, "rf")],
)
def test_design_with_a_target_uses_the_shortest_depth(k, target, objective):
    depth = next(n for n in range(1, 10) if k**n >= target)
    got = design(target_rf=target, kernel_size=k, objective=objective, top=5)
    assert got.layers == depth and not got.depth_given
    assert [c.dilations for c in got.candidates] == brute_design(
        depth, k, None, target, objective, 5
    )
    assert all(c.receptive_field >= target for c in got.candidates)


def test_design_with_a_target_and_a_depth():
    got = design(4, target_rf=40, objective="flat", top=4)
    assert [c.dilations for c in got.candidates] == brute_design(4, 3, None, 40, "flat", 4)


def test_the_classic_optima():
    assert design(4).candidates[0].dilations == (1, 3, 9, 27)
    assert design(10, 2).candidates[0].dilations == tuple(2**i for i in range(10))
    best = design(12).candidates[0]
    assert best.receptive_field == 3**12 and best.peak_to_mean == 1
    assert max_receptive_field(12) == 3**12
    assert max_receptive_field(5, 3, 4) == 1 + 2 * (1 + 3 + 4 + 4 + 4)


def test_candidate_metrics_equal_check():
    for c in design(4, max_dilation=5, top=3).candidates:
        r = check(list(c.dilations), 3, ndim=1)
        assert r.gridding_free
        assert r.receptive_field == (c.receptive_field,)
        assert r.peak_to_mean_exact == c.peak_to_mean
        assert float(c.min_nonzero_to_max) == r.min_nonzero_to_max
        assert c.erf_std == r.erf_std[0]
        assert c.hdc_passes == r.hdc.passes


def test_result_dict():
    d = design(3, top=2).to_dict()
    assert d["optimal"] is True and d["objective"] == "rf" and d["layers"] == 3
    assert [c["dilations"] for c in d["candidates"]] == [[1, 3, 9], [1, 3, 8]]
    assert d["max_receptive_field"] == 27
    assert "<table>" in design(3)._repr_html_()


def test_fewer_candidates_than_asked():
    got = design(3, max_dilation=1, top=5)
    assert [c.dilations for c in got.candidates] == [(1, 1, 1)]


def test_bad_input():
    with pytest.raises(InvalidSpecError, match="layers must be an integer >= 1, got 0"):
        design(0)
    with pytest.raises(InvalidSpecError, match="kernel_size must be >= 2"):
        design(3, 1)
    with pytest.raises(InvalidSpecError, match=r"target_rf 100 is unreachable.* is 27"):
        design(3, target_rf=100)
    with pytest.raises(InvalidSpecError, match="unreachable with max dilation 1"):
        design(target_rf=10**6, kernel_size=2, max_dilation=1)
    with pytest.raises(InvalidSpecError, match="objective must be one of rf, flat"):
        design(3, objective="widest")
    with pytest.raises(InvalidSpecError, match="give layers"):
        design()
    with pytest.raises(InvalidSpecError, match="max_dilation must be an integer >= 1"):
        design(3, max_dilation=0)
    with pytest.raises(InvalidSpecError, match="top must be"):
        design(3, top=0)
    with pytest.raises(SearchTooLargeError, match="needs more than 1,000 nodes"):
        design(8, objective=Objective.FLAT, max_nodes=1000)
    with pytest.raises(InvalidSpecError, match="top must be at most 10,000, got 10,001"):
        design(3, top=10_001)


def test_the_metrics_of_many_deep_schedules_are_refused_before_they_are_built():
    # 3,000 schedules of 12 layers: their maps hold about 4.8e9 cells (seconds of work)
    with pytest.raises(SearchTooLargeError, match="the metrics of the 3,000 schedules found"):
        design(12, top=3000)
    # the same count of shallow schedules is cheap
    assert len(design(6, top=3000).candidates) == 3000


# -- the smallest fix --------------------------------------------------------------------------


def intersection(a, b):
    return sum((Counter(a) & Counter(b)).values())


def brute_fix(old, k):
    """The documented optimum, by enumerating every gridding-free multiset of each depth."""
    need = sum(old)
    for added in itertools.count():
        n = len(old) + added
        extended = sorted([1] * added + list(old))
        best = None
        for b, _ in gridding_free_multisets(n, k, k ** (n - 1)):
            if sum(b) < need:
                continue
            cost = sum(abs(x - y) for x, y in zip(extended, b, strict=True))
            key = (cost, n - intersection(extended, b), -sum(b), b)
            best = key if best is None or key < best else best
        if best is not None:
            return added, best


@pytest.mark.parametrize(
    ("old", "k"),
    [
        ([2, 2, 2], 3),
        ([2, 4, 8], 3),
        ([1, 2, 9], 3),
        ([2, 2, 2, 2], 3),
        ([3], 3),
        ([2, 3], 3),
        ([1, 2, 5], 2),
        ([5, 1], 3),
        ([1, 1, 6], 3),
        ([4, 4], 2),
        ([7], 2),
    ],
)
def test_fix_equals_brute_force(old, k):
    fix = nearest_gridding_free(old, k)
    added, (cost, changes, minus_total, best) = brute_fix(old, k)
    assert fix.optimal
    assert fix.added_layers == added
    assert tuple(sorted(fix.dilations)) == best
    assert fix.distance == cost
    extended = [1] * added + list(old)
    assert sum(abs(a - b) for a, b in zip(extended, fix.dilations, strict=True)) == cost
    # every changed original layer is one the best pairing could not keep
    changed_original = [i for i in fix.changed if i > added]
    assert len(changed_original) == sum(
        1 for a, b in zip(extended[added:], fix.dilations[added:], strict=True) if a != b
    )
    assert len(fix.dilations) - intersection(extended, fix.dilations) == changes
    assert fix.receptive_field == 1 - (k - 1) * minus_total
    assert fix.receptive_field >= 1 + (k - 1) * sum(old)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=3), st.sampled_from([2, 3]))
def test_fix_is_optimal_on_random_schedules(old, k):
    fix = nearest_gridding_free(old, k)
    added, (cost, _, minus_total, best) = brute_fix(old, k)
    assert (fix.added_layers, fix.distance, tuple(sorted(fix.dilations))) == (added, cost, best)
    assert fix.receptive_field == 1 - (k - 1) * minus_total
    # the fix has no holes (enumerated) and the unchanged layers kept their value
    counts = path_counts_1d(fix.dilations, k)
    assert len(counts) == max(counts) + 1
    extended = [1] * added + list(old)
    for i, (a, b) in enumerate(zip(extended, fix.dilations, strict=True), 1):
        assert (i in fix.changed) == (i <= added or a != b)


def test_fix_keeps_equal_values_in_place_and_sorts_ties():
    fix = nearest_gridding_free([2, 2, 2])
    assert fix.dilations == (1, 2, 3) and fix.changed == (1, 3)
    fix = nearest_gridding_free([9, 2, 1])  # 1,2,9 grids; 1,3,9 is one step away
    assert fix.dilations == (9, 3, 1) and fix.changed == (2,)
    # an added layer never takes the place of an original layer of the same value
    fix = nearest_gridding_free([1, 6])  # 13 > 9 = 3**2: add a layer
    assert fix.added_layers == 1 and fix.dilations[1] == 1 and 2 not in fix.changed


def test_fix_budget_returns_the_best_found():
    fix = nearest_gridding_free([2] * 8 + [300], 3, max_nodes=5)
    assert not fix.optimal
    counts = axis_counts(conv_stack(list(fix.dilations), 3, ndim=1), 0, None)[1]
    assert (counts != 0).all()
    assert fix.receptive_field >= 1 + 2 * (16 + 300)


def test_suggest_fix_explains_what_it_cannot_do():
    fix, note = suggest_fix(conv_stack([2, 2], kernel_size=[3, 5]))
    assert fix is None and "kernel sizes differ" in note
    fix, note = suggest_fix(conv_stack([2, 2], stride=[2, 1], padding=1))
    assert fix is None and "stride" in note


def test_fix_bad_input():
    with pytest.raises(InvalidSpecError, match="kernel_size must be an integer >= 2"):
        nearest_gridding_free([2, 2], 1)
    with pytest.raises(InvalidSpecError, match="dilations must be an integer >= 1, got 0"):
        nearest_gridding_free([2, 0])
    with pytest.raises(InvalidSpecError, match="at least one layer"):
        nearest_gridding_free([])


# -- the search against brute force on random configurations -------------------------------------

# Largest cap per depth that keeps the enumeration of multisets near 3,000.
_ENUMERABLE_CAP = {1: 400, 2: 76, 3: 24, 4: 14, 5: 10}


@functools.cache
def all_multisets(n, k, limit):
    """Every multiset of ``n`` dilations <= ``limit``: (b, gridding-free, rf, sum b^2, peak).

    The map is built with ``np.convolve`` of the dilated all-ones kernels (no rfmap code);
    gridding-free means no zero inside it.
    """
    import numpy as np

    out = []
    for b in itertools.combinations_with_replacement(range(1, limit + 1), n):
        counts = np.ones(1, dtype=np.int64)
        for d in b:
            kernel = np.zeros((k - 1) * d + 1, dtype=np.int64)
            kernel[::d] = 1
            counts = np.convolve(counts, kernel)
        free = bool((counts != 0).all())
        out.append((b, free, len(counts), sum(x * x for x in b), int(counts.max())))
    return out


def brute_ranking(n, k, cap, target, objective):
    """Every qualifying schedule, best first, by the documented keys."""
    # A gridding-free schedule's largest dilation is at most the field of the others
    # (<= k**(n-1)), else the offset just past that field is never reached.
    limit = k ** (n - 1) if cap is None else min(cap, k ** (n - 1))
    keys = []
    for b, free, rf, squares, peak in all_multisets(n, k, limit):
        if not free or (target is not None and rf < target):
            continue
        if objective == "rf":
            keys.append(((-rf, -squares, b), b))
        else:
            keys.append(((peak * rf, -rf, b), b))  # peak/mean = peak * rf / k**n
    return [b for _, b in sorted(keys)]


@st.composite
def design_cases(draw):
    n = draw(st.integers(1, 5))
    k = draw(st.integers(2, 5))
    most = _ENUMERABLE_CAP[n]
    if k ** (n - 1) <= most:
        cap = draw(st.none() | st.integers(1, most))
    else:
        cap = draw(st.integers(1, most))
    objective = draw(st.sampled_from(["rf", "flat"]))
    top = draw(st.integers(1, 8))
    return n, k, cap, objective, top


@settings(max_examples=300, deadline=None)
@given(design_cases(), st.data())
def test_design_equals_brute_force_on_random_configurations(case, data):
    n, k, cap, objective, top = case
    everything = brute_ranking(n, k, cap, None, objective)
    best_rf = max(1 + (k - 1) * sum(b) for b in everything)
    assert max_receptive_field(n, k, cap) == best_rf
    # no target, a reachable target, or an unreachable one
    target = data.draw(st.none() | st.integers(1, best_rf + 3), label="target")
    if target is not None and target > best_rf:
        with pytest.raises(InvalidSpecError, match=f"target_rf {target} is unreachable"):
            design(n, k, max_dilation=cap, target_rf=target, objective=objective, top=top)
        return
    got = design(n, k, max_dilation=cap, target_rf=target, objective=objective, top=top)
    expected = brute_ranking(n, k, cap, target, objective)[:top]
    assert [c.dilations for c in got.candidates] == expected
    assert got.layers == n and got.depth_given


@settings(max_examples=80, deadline=None)
@given(design_cases(), st.data())
def test_shortest_depth_for_a_target_equals_brute_force(case, data):
    n, k, cap, objective, top = case
    best = max(1 + (k - 1) * sum(b) for b in brute_ranking(n, k, cap, None, "rf"))
    shallower = (
        1 if n == 1 else max(1 + (k - 1) * sum(b) for b in brute_ranking(n - 1, k, cap, None, "rf"))
    )
    if best <= shallower:  # the cap stops the field from growing: n is never the shortest
        return
    target = data.draw(st.integers(shallower + 1, best), label="target")
    got = design(kernel_size=k, max_dilation=cap, target_rf=target, objective=objective, top=top)
    assert got.layers == n and not got.depth_given
    assert [c.dilations for c in got.candidates] == brute_ranking(n, k, cap, target, objective)[
        :top
    ]
