"""Gridding diagnosis of dilated convolution stacks: an exact verdict, its metrics, the HDC rule.

A stack *grids* when some input position inside its receptive field is reached by no
path (Yu & Koltun 2016; Wang et al. 2018, "Understanding Convolution for Semantic
Segmentation", arXiv:1702.08502).  :func:`check` answers exactly, for any kernel sizes,
strides and padding, and explains the answer; the result is a :class:`GriddingReport`.

Everything is computed for an **unbounded input** (no zero padding at any border), so
no path is lost and only the schedule matters.  The nD map is the outer product of one
1D map per axis, so every per-axis quantity below is exact for the nD field too.

The exact criterion (order-independent)
---------------------------------------
Along one axis, layer ``l`` (kernel ``K_l``, dilation ``d_l``, stride ``s_l``) moves a
path by ``t * e_l`` input positions, ``t = 0 .. K_l - 1``, where ``e_l = d_l * J_l`` is
its *effective dilation* and ``J_l`` the product of the strides of the layers before it.
The offsets reached are therefore the sumset ``A = S_1 + ... + S_L`` of the progressions
``S_l = {0, e_l, ..., (K_l - 1) e_l}``, whose span is ``R = 1 + sum_l (K_l - 1) e_l``.
A sumset does not depend on the order of its terms, hence neither does gridding.

**Theorem.** Drop the layers with ``K_l = 1`` and sort the others by effective dilation,
``e_(1) <= e_(2) <= ...``; let ``R_0 = 1`` and ``R_i = R_(i-1) + (K_(i) - 1) e_(i)``.  The
axis is gridding-free if and only if ``e_(i) <= R_(i-1)`` for every ``i``.  When it fails,
the first failing ``i`` gives the first hole, at offset ``R_(i-1)`` from the start of
the field.

*Proof.* If ``A_(i-1)`` (the sumset of the first ``i - 1`` sorted layers) is the interval
``[0, R_(i-1) - 1]`` and ``e_(i) <= R_(i-1)``, then ``A_i`` is the union of the translates
``A_(i-1) + t e_(i)``, ``t = 0 .. K_(i) - 1``; consecutive translates start at most
``R_(i-1)`` apart, so they overlap or touch and ``A_i = [0, R_i - 1]``.  By induction
the condition is sufficient.  Conversely let ``i`` be the first failure, so ``A_(i-1) =
[0, R_(i-1) - 1]`` and every later sorted layer has ``e >= e_(i) > R_(i-1)``.  Any
offset is ``a + b`` with ``a`` in ``A_(i-1)`` and ``b`` a sum of later moves; either
``b = 0`` and ``a + b <= R_(i-1) - 1``, or ``b >= e_(i)`` and ``a + b > R_(i-1)``.  So
``R_(i-1)`` is never reached, yet ``R_(i-1) < e_(i) <= R - 1`` lies inside the field.
Everything below ``R_(i-1)`` is reached, so it is the first hole.  QED.

The test costs ``O(L log L)`` and never builds a map; the property tests confirm it
against the exact map on random schedules.

>>> gridding_free([1, 2, 5]), gridding_free([2, 4, 8]), gridding_free([5, 1, 2])
(True, False, True)
>>> gridding_free([1, 3, 9]), gridding_free([1, 3, 10])
(True, False)

The result contract (``GriddingReport.to_dict()``, what ``rfmap check --json`` prints)
------------------------------------------------------------------------------------
These keys and their meanings are stable; the browser explorer reimplements them.
"Offset" always means a 0-based index into the unbounded 1D factor of an axis, i.e.
counted from the first cell of the receptive field along that axis.

``dilations``, ``kernel``, ``ndim``, ``layers``
    The schedule, as in :meth:`rfmap.PathMap.to_dict` (an int per layer, or a per-axis
    list where the axes differ; ``kernel`` is one int when all agree).
``gridding_free`` (bool)
    True iff every cell of the receptive field (unbounded input) has at least one path,
    i.e. iff the criterion above holds on every axis.
``receptive_field`` (list of int, per axis)
    ``R_a = 1 + sum_l (K_l - 1) * e_l`` along axis ``a``: the extent of the field.
``receptive_field_cells`` (int)
    ``prod_a R_a``, the number of cells of the field's bounding box.
``origin`` (list of int, per axis)
    Position of the field's first cell relative to the input position of the output
    unit (``PathMap.origin`` of the unbounded map): ``-(R - 1) // 2`` for odd kernels
    with 'same' padding, ``-(R - 1)`` for causal padding.
``reached`` (list of int or null, per axis)
    Number of offsets of the axis with at least one path.  ``null`` only for a
    gridding axis whose map exceeded the memory budget (see ``map_computed``).
``reached_cells`` (int or null)
    ``prod_a reached_a``: cells of the field with at least one path.
``holes`` (int or null)
    ``receptive_field_cells - reached_cells``: cells of the field with no path.  A cell
    is a hole iff at least one of its coordinates is a hole of its axis.
``holes_per_axis`` (list of int or null, per axis)
    ``R_a - reached_a``.
``hole_offsets`` (list of list of int or null, per axis)
    The offsets of the holes of each axis in increasing order, at most the first
    :data:`HOLE_OFFSETS_LIMIT` (1000) per axis; ``hole_offsets_truncated`` (list of
    bool) says where the list was cut.
``coverage`` (float or null)
    ``reached_cells / receptive_field_cells`` (the exact fraction, correctly rounded).
``peak_to_mean`` (float or null)
    Largest path count divided by the mean count over the *reached* cells:
    ``max * reached_cells / total`` where ``total = prod_l prod_a K_l,a`` is the number
    of paths.  1 means perfectly flat; it grows as the field gets peaked.
``min_nonzero_to_max`` (float or null)
    Smallest non-zero path count divided by the largest, in ``(0, 1]``.
``max_paths``, ``min_nonzero_paths``, ``total_paths`` (int or null)
    The exact integers behind the two ratios (``total_paths`` is never null).
``erf_std`` (list of float, per axis)
    Standard deviation (in input positions) of the all-ones stack's normalised path
    counts, in closed form: ``sqrt(sum_l e_l**2 * (K_l**2 - 1) / 12)``, because the
    offset is a sum of independent uniform choices ``t_l * e_l``.
``first_hole_layer`` (int or null)
    Taking the layers in the given order, the 1-based index of the first layer after
    which the partial stack has holes on some axis (later layers may close them:
    ``[1, 4, 2]`` has holes after layer 2 and none after layer 3); null if no prefix has
    holes.
``gaps`` (list, per axis, of an object or null)
    The criterion's witness on each gridding axis, null on a gridding-free one:
    ``layer`` (1-based index, in the given order, of the first failing layer in sorted
    order; ties in ``e`` go to the earliest layer), ``dilation`` (its effective dilation
    ``e``), ``span`` (``R_(i-1)``, the contiguous span reached by the layers sorted
    before it) and ``first_hole`` (the offset of the first hole, equal to ``span``).
``hdc`` (object)
    Wang et al.'s Hybrid Dilated Convolution rule as they state it, see
    :func:`hdc_rule`: ``applicable``, ``reason`` (why not, or null), ``passes`` (all
    axes have ``M_2 <= K``), ``coprime`` (the rates of every axis have no common factor
    > 1, their second condition), ``agrees`` (``passes == gridding_free``), and
    ``axes``: per axis ``{"kernel", "dilations", "M", "M2", "passes", "common_factor"}``
    with ``M = [M_1, ..., M_n]``.  ``passes``/``coprime``/``agrees`` are null and
    ``axes`` is empty when not applicable.
``suggestion`` (object or null)
    For a gridding schedule, the smallest change that fixes it, see
    :func:`rfmap.design.nearest_gridding_free`: ``dilations`` (the new schedule, added
    layers first), ``receptive_field`` (per axis, ``>=`` the original), ``added_layers``,
    ``changed_layers`` (1-based indices into the new schedule of the layers whose
    dilation differs from the original, added layers included), ``distance`` (total
    change ``sum |d' - d|`` over layers, taking per layer the largest change on any axis;
    an added layer counts from dilation 1) and ``optimal`` (whether the search proved it
    minimal).  Null when gridding-free, or when no
    suggestion is made (``suggestion_note`` says why).
``map_computed`` (bool)
    Whether the exact 1D maps were built (they are unless the field exceeds the
    ``max_bytes`` budget); without them the map-based fields of gridding axes are null.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .errors import MapTooLargeError
from .paths import axis_counts, check_allocation
from .specs import (
    ConvLayer,
    DescribesSchedule,
    ScheduleEntry,
    conv_stack,
    format_schedule,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "DEFAULT_CHECK_BYTES",
    "HOLE_OFFSETS_LIMIT",
    "AxisGap",
    "Comparison",
    "GriddingReport",
    "HDCAxis",
    "HDCRule",
    "axis_gap",
    "check",
    "check_layers",
    "compare",
    "effective_dilations",
    "erf_std",
    "gridding_free",
    "hdc_m",
    "hdc_rule",
]

#: Hole offsets listed per axis at most (the count is always exact).
HOLE_OFFSETS_LIMIT = 1000

#: Memory budget for the exact 1D maps behind the map-based metrics (64 MiB).
DEFAULT_CHECK_BYTES = 64 * 2**20

_INT64_LIMIT = 2**63 - 1


# -- the exact criterion -----------------------------------------------------------------


@dataclass(frozen=True)
class AxisGap:
    """The witness of gridding on one axis (see the module docstring).

    ``layer`` is 1-based in the given order; ``span`` is the contiguous span reached by
    the layers with smaller effective dilation; the first hole is at offset ``span``.
    """

    layer: int
    dilation: int
    span: int

    @property
    def first_hole(self) -> int:
        """Offset of the first hole from the start of the field."""
        return self.span

    def to_dict(self) -> dict[str, int]:
        return {
            "layer": self.layer,
            "dilation": self.dilation,
            "span": self.span,
            "first_hole": self.first_hole,
        }


def effective_dilations(layers: Sequence[ConvLayer], axis: int = 0) -> list[int]:
    """Effective dilation ``d_l * (product of earlier strides)`` of each layer on ``axis``.

    >>> effective_dilations(conv_stack([1, 1, 2], stride=[2, 1, 1], padding=1, ndim=1))
    [1, 2, 4]
    """
    out, jump = [], 1
    for layer in layers:
        out.append(layer.dilation[axis] * jump)
        jump *= layer.stride[axis]
    return out


def axis_gap(kernels: Sequence[int], dilations: Sequence[int]) -> AxisGap | None:
    """The first violation of the exact criterion on one axis, or None if gridding-free.

    ``kernels`` and ``dilations`` (effective dilations) are given per layer, in order.

    >>> axis_gap([3, 3, 3], [1, 2, 9])
    AxisGap(layer=3, dilation=9, span=7)
    >>> axis_gap([3, 3, 3], [2, 2, 2]) is None
    False
    >>> axis_gap([3, 3, 3], [1, 3, 9]) is None
    True
    """
    order = sorted(range(len(dilations)), key=lambda i: (dilations[i], i))
    span = 1
    for i in order:
        if kernels[i] == 1:
            continue
        if dilations[i] > span:
            return AxisGap(i + 1, int(dilations[i]), span)
        span += (kernels[i] - 1) * dilations[i]
    return None


def _axis_gaps(layers: Sequence[ConvLayer]) -> list[AxisGap | None]:
    return [
        axis_gap([layer.kernel_size[a] for layer in layers], effective_dilations(layers, a))
        for a in range(layers[0].ndim)
    ]


def gridding_free(
    dilations: Sequence[ScheduleEntry],
    kernel_size: int | Sequence[ScheduleEntry] = 3,
    *,
    ndim: int | None = None,
    stride: int | Sequence[ScheduleEntry] = 1,
) -> bool:
    """True iff the schedule's receptive field has no hole (exact, no map is built).

    >>> gridding_free([2, 2, 2]), gridding_free([1, 1, 2, 3, 5])
    (False, True)
    >>> gridding_free([1, 2, 4, 8], kernel_size=2)
    True
    """
    layers = conv_stack(dilations, kernel_size, ndim=ndim, stride=stride, padding=0)
    return all(gap is None for gap in _axis_gaps(layers))


def erf_std(layers: Sequence[ConvLayer], axis: int = 0) -> float:
    """Closed-form standard deviation of the all-ones stack's path counts along ``axis``.

    ``sqrt(sum_l e_l**2 * (K_l**2 - 1) / 12)`` with ``e_l`` the effective dilations.

    >>> round(erf_std(conv_stack([1, 1], ndim=1)), 6)
    1.154701
    """
    return math.sqrt(float(_variance(layers, axis)))


def _variance(layers: Sequence[ConvLayer], axis: int) -> Fraction:
    total = sum(
        e * e * (layer.kernel_size[axis] ** 2 - 1)
        for layer, e in zip(layers, effective_dilations(layers, axis), strict=True)
    )
    return Fraction(total, 12)


# -- the HDC rule ------------------------------------------------------------------------


@dataclass(frozen=True)
class HDCAxis:
    """The HDC rule on one axis: ``M = (M_1, ..., M_n)``, ``M2 = M_2``, ``passes = M_2 <= K``."""

    kernel: int
    dilations: tuple[int, ...]
    M: tuple[int, ...]
    passes: bool
    common_factor: int

    @property
    def M2(self) -> int:
        """``M_2``, the quantity the rule compares with the kernel size."""
        return self.M[1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel,
            "dilations": list(self.dilations),
            "M": list(self.M),
            "M2": self.M2,
            "passes": self.passes,
            "common_factor": self.common_factor,
        }


@dataclass(frozen=True)
class HDCRule:
    """Wang et al.'s Hybrid Dilated Convolution rule applied to a schedule, per axis.

    ``passes`` is their design goal ``M_2 <= K`` on every axis; ``coprime`` is their
    second condition (the rates share no factor > 1); ``agrees`` compares ``passes``
    with the exact answer.  Not ``applicable`` (and then ``None``) when the rule's
    assumptions fail: fewer than two layers, kernels that differ between layers, or
    strides other than 1.
    """

    applicable: bool
    reason: str | None
    axes: tuple[HDCAxis, ...]
    exact_gridding_free: bool

    @property
    def passes(self) -> bool | None:
        """Whether ``M_2 <= K`` on every axis (None when not applicable)."""
        return all(a.passes for a in self.axes) if self.applicable else None

    @property
    def coprime(self) -> bool | None:
        """Whether no axis's rates share a factor > 1 (None when not applicable)."""
        return all(a.common_factor == 1 for a in self.axes) if self.applicable else None

    @property
    def agrees(self) -> bool | None:
        """Whether the rule's verdict equals the exact answer (None when not applicable)."""
        return self.passes == self.exact_gridding_free if self.applicable else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "applicable": self.applicable,
            "reason": self.reason,
            "passes": self.passes,
            "coprime": self.coprime,
            "agrees": self.agrees,
            "axes": [a.to_dict() for a in self.axes],
        }


def hdc_m(rates: Sequence[int]) -> list[int]:
    """Wang et al.'s recursion ``M_i = max(M_(i+1) - 2 r_i, M_(i+1) - 2 (M_(i+1) - r_i), r_i)``.

    Returns ``[M_1, ..., M_n]`` with ``M_n = r_n`` ("the maximum distance between two
    non-zero values"); their design goal is ``M_2 <= K``.

    >>> hdc_m([1, 2, 5])[1], hdc_m([1, 2, 9])[1]
    (2, 5)
    """
    m = [0] * len(rates)
    m[-1] = int(rates[-1])
    for i in range(len(rates) - 2, -1, -1):
        nxt, r = m[i + 1], int(rates[i])
        m[i] = max(nxt - 2 * r, nxt - 2 * (nxt - r), r)
    return m


def hdc_rule(layers: Sequence[ConvLayer]) -> HDCRule:
    """Apply the HDC rule of Wang et al. (2018) to a stack, and compare with the truth.

    >>> rule = hdc_rule(conv_stack([2, 2, 2]))
    >>> rule.passes, rule.coprime, rule.agrees   # the paper's own gridding example
    (True, False, False)
    """
    layers = tuple(layers)
    exact = all(gap is None for gap in _axis_gaps(layers))
    reason = None
    if len(layers) < 2:
        reason = "the rule needs at least two layers (it tests M_2)"
    elif any(s != 1 for layer in layers for s in layer.stride):
        reason = "the rule is stated for stride-1 layers"
    elif any(len({layer.kernel_size[a] for layer in layers}) > 1 for a in range(layers[0].ndim)):
        reason = "the rule assumes one kernel size K for every layer"
    if reason is not None:
        return HDCRule(False, reason, (), exact)
    axes = []
    for a in range(layers[0].ndim):
        rates = [layer.dilation[a] for layer in layers]
        k = layers[0].kernel_size[a]
        m = hdc_m(rates)
        axes.append(HDCAxis(k, tuple(rates), tuple(m), m[1] <= k, math.gcd(*rates)))
    return HDCRule(True, None, tuple(axes), exact)


# -- the report --------------------------------------------------------------------------


@dataclass(frozen=True)
class _AxisMap:
    """The exact unbounded 1D map of one axis, reduced to what the report needs."""

    reached: int
    holes: tuple[int, ...]
    holes_total: int
    max: int
    min_nonzero: int


@dataclass(frozen=True)
class GriddingReport(DescribesSchedule):
    """The exact gridding diagnosis of a stack; see the module docstring for every field.

    Build it with :func:`check` or :func:`check_layers`.  ``to_dict()`` is what
    ``rfmap check --json`` prints; ``str(report)`` is the human explanation.
    """

    layers: tuple[ConvLayer, ...]
    gaps: tuple[AxisGap | None, ...]
    receptive_field: tuple[int, ...]
    origin: tuple[int, ...]
    total_paths: int
    erf_std: tuple[float, ...]
    first_hole_layer: int | None
    hdc: HDCRule
    axis_maps: tuple[_AxisMap | None, ...] = field(repr=False)
    suggestion: Any = None
    suggestion_note: str | None = None

    # -- verdict and counts ------------------------------------------------------------
    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.receptive_field)

    @property
    def gridding_free(self) -> bool:
        """True iff no cell of the receptive field is unreached."""
        return all(gap is None for gap in self.gaps)

    @property
    def map_computed(self) -> bool:
        """Whether the exact 1D maps were built."""
        return all(m is not None for m in self.axis_maps)

    @property
    def reached(self) -> tuple[int | None, ...]:
        """Reached offsets per axis (None for a gridding axis whose map was not built)."""
        out: list[int | None] = []
        for r, gap, m in zip(self.receptive_field, self.gaps, self.axis_maps, strict=True):
            out.append(m.reached if m is not None else (r if gap is None else None))
        return tuple(out)

    @property
    def receptive_field_cells(self) -> int:
        """Cells of the receptive field's bounding box."""
        return math.prod(self.receptive_field)

    @property
    def reached_cells(self) -> int | None:
        """Cells with at least one path."""
        reached = self.reached
        return None if None in reached else math.prod(r for r in reached if r is not None)

    @property
    def holes(self) -> int | None:
        """Cells of the field with no path."""
        reached = self.reached_cells
        return None if reached is None else self.receptive_field_cells - reached

    @property
    def holes_per_axis(self) -> tuple[int, ...] | None:
        """Unreached offsets per axis."""
        reached = self.reached
        if None in reached:
            return None
        return tuple(
            r - int(n) for r, n in zip(self.receptive_field, reached, strict=True) if n is not None
        )

    @property
    def hole_offsets(self) -> tuple[tuple[int, ...], ...] | None:
        """The first :data:`HOLE_OFFSETS_LIMIT` hole offsets of each axis."""
        out: list[tuple[int, ...]] = []
        for gap, m in zip(self.gaps, self.axis_maps, strict=True):
            if gap is None:
                out.append(())
            elif m is None:
                return None
            else:
                out.append(m.holes)
        return tuple(out)

    @property
    def hole_offsets_truncated(self) -> tuple[bool, ...] | None:
        """Per axis, whether :attr:`hole_offsets` lists fewer holes than there are."""
        per_axis = self.holes_per_axis
        offsets = self.hole_offsets
        if per_axis is None or offsets is None:
            return None
        return tuple(n > len(o) for n, o in zip(per_axis, offsets, strict=True))

    @property
    def coverage(self) -> float | None:
        """Reached cells / field cells."""
        reached = self.reached_cells
        return None if reached is None else reached / self.receptive_field_cells

    @property
    def max_paths(self) -> int | None:
        """Largest path count of the nD map."""
        if not self.map_computed:
            return None
        return math.prod(m.max for m in self.axis_maps if m is not None)

    @property
    def min_nonzero_paths(self) -> int | None:
        """Smallest non-zero path count of the nD map."""
        if not self.map_computed:
            return None
        return math.prod(m.min_nonzero for m in self.axis_maps if m is not None)

    @property
    def peak_to_mean_exact(self) -> Fraction | None:
        """``max * reached_cells / total`` as an exact fraction."""
        peak, reached = self.max_paths, self.reached_cells
        if peak is None or reached is None:
            return None
        return Fraction(peak * reached, self.total_paths)

    @property
    def peak_to_mean(self) -> float | None:
        """Largest count / mean count over reached cells (1 = flat)."""
        exact = self.peak_to_mean_exact
        return None if exact is None else float(exact)

    @property
    def min_nonzero_to_max(self) -> float | None:
        """Smallest non-zero count / largest count."""
        low, peak = self.min_nonzero_paths, self.max_paths
        return None if low is None or peak is None else float(Fraction(low, peak))

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON contract described in the module docstring."""
        offsets = self.hole_offsets
        return {
            "dilations": self.dilations,
            "kernel": self.kernel,
            "ndim": self.ndim,
            "layers": [layer.describe() for layer in self.layers],
            "gridding_free": self.gridding_free,
            "receptive_field": list(self.receptive_field),
            "receptive_field_cells": self.receptive_field_cells,
            "origin": list(self.origin),
            "reached": list(self.reached),
            "reached_cells": self.reached_cells,
            "holes": self.holes,
            "holes_per_axis": _list_or_none(self.holes_per_axis),
            "hole_offsets": None if offsets is None else [list(o) for o in offsets],
            "hole_offsets_truncated": _list_or_none(self.hole_offsets_truncated),
            "coverage": self.coverage,
            "peak_to_mean": self.peak_to_mean,
            "min_nonzero_to_max": self.min_nonzero_to_max,
            "max_paths": self.max_paths,
            "min_nonzero_paths": self.min_nonzero_paths,
            "total_paths": self.total_paths,
            "erf_std": list(self.erf_std),
            "first_hole_layer": self.first_hole_layer,
            "gaps": [None if g is None else g.to_dict() for g in self.gaps],
            "hdc": self.hdc.to_dict(),
            "suggestion": None if self.suggestion is None else self.suggestion.to_dict(),
            "suggestion_note": self.suggestion_note,
            "map_computed": self.map_computed,
        }

    def __str__(self) -> str:
        from .report import format_report

        return format_report(self)

    # -- display -----------------------------------------------------------------------
    def plot(self, ax: Axes | None = None, **kwargs: Any) -> Any:
        """Draw the field along each axis with its holes (see :func:`rfmap.plot.plot_report`)."""
        from .plot.compare import plot_report

        kwargs.setdefault("pyplot", ax is None)
        return plot_report(self, ax=ax, **kwargs)

    def _repr_html_(self) -> str:
        from .plot.compare import plot_report, report_html

        fig = cast("Figure", plot_report(self).figure) if self.map_computed else None
        return report_html(str(self), fig)


def _list_or_none(values: tuple[Any, ...] | None) -> list[Any] | None:
    return None if values is None else list(values)


def _axis_map(layers: Sequence[ConvLayer], axis: int, max_bytes: int | None) -> _AxisMap | None:
    bound = math.prod(layer.kernel_size[axis] for layer in layers)
    dtype: Any = np.int64 if bound <= _INT64_LIMIT else object
    from .specs import receptive_field_size

    extent = receptive_field_size(layers, axis)
    try:
        check_allocation(
            extent,
            8 if dtype is np.int64 else 44,
            DEFAULT_CHECK_BYTES if max_bytes is None else max_bytes,
            "the 1D field",
        )
    except MapTooLargeError:
        return None
    _, counts = axis_counts(layers, axis, None, dtype=dtype)
    nonzero = counts != 0
    holes = np.flatnonzero(~nonzero)
    reached = int(np.count_nonzero(nonzero))
    values = counts[nonzero]
    return _AxisMap(
        reached=reached,
        holes=tuple(int(h) for h in holes[:HOLE_OFFSETS_LIMIT]),
        holes_total=len(holes),
        max=int(values.max()),
        min_nonzero=int(values.min()),
    )


def _first_hole_layer(layers: Sequence[ConvLayer]) -> int | None:
    for depth in range(1, len(layers) + 1):
        if any(gap is not None for gap in _axis_gaps(layers[:depth])):
            return depth
    return None


def check_layers(
    layers: Sequence[ConvLayer], *, max_bytes: int | None = None, suggest: bool = True
) -> GriddingReport:
    """Diagnose an already built stack (see :func:`check`)."""
    layers = tuple(layers)
    if not layers:
        from .errors import InvalidSpecError

        raise InvalidSpecError("the stack must have at least one layer")
    ndim = layers[0].ndim
    from .specs import receptive_field_size

    gaps = tuple(_axis_gaps(layers))
    rf = tuple(receptive_field_size(layers, a) for a in range(ndim))
    origin = tuple(_origin(layers, a) for a in range(ndim))
    total = math.prod(math.prod(layer.kernel_size) for layer in layers)
    report = GriddingReport(
        layers=layers,
        gaps=gaps,
        receptive_field=rf,
        origin=origin,
        total_paths=total,
        erf_std=tuple(erf_std(layers, a) for a in range(ndim)),
        first_hole_layer=_first_hole_layer(layers),
        hdc=hdc_rule(layers),
        axis_maps=tuple(_axis_map(layers, a, max_bytes) for a in range(ndim)),
    )
    if suggest and not report.gridding_free:
        from .design import suggest_fix

        fix, note = suggest_fix(layers)
        report = _replace(report, suggestion=fix, suggestion_note=note)
    return report


def _origin(layers: Sequence[ConvLayer], axis: int) -> int:
    """Offset of the field's first cell relative to the unit, without building the map."""
    offset = 0
    for layer in reversed(layers):
        offset = offset * layer.stride[axis] - layer.pad(axis)[0]
    return offset


def _replace(report: GriddingReport, **changes: Any) -> GriddingReport:
    import dataclasses

    return dataclasses.replace(report, **changes)


def check(
    dilations: Sequence[ScheduleEntry],
    kernel_size: int | Sequence[ScheduleEntry] = 3,
    *,
    ndim: int | None = None,
    stride: int | Sequence[ScheduleEntry] = 1,
    padding: str | int | Sequence[object] = "same",
    max_bytes: int | None = None,
    suggest: bool = True,
) -> GriddingReport:
    """Decide exactly whether a dilation schedule grids, and explain where and why.

    Parameters
    ----------
    dilations, kernel_size, ndim, stride, padding
        The schedule, as :func:`rfmap.conv_stack` takes it (default 2D, kernel 3, 'same').
    max_bytes
        Budget for the exact 1D maps behind the map-based metrics (default 64 MiB); past
        it those metrics are ``None`` on gridding axes but the verdict stays exact.
    suggest
        Search the smallest change that removes the holes (see
        :func:`rfmap.design.nearest_gridding_free`).

    >>> r = check([1, 2, 9], ndim=1)
    >>> r.gridding_free, r.receptive_field, r.holes, r.hole_offsets
    (False, (25,), 4, ((7, 8, 16, 17),))
    """
    layers = conv_stack(dilations, kernel_size, ndim=ndim, stride=stride, padding=padding)
    return check_layers(layers, max_bytes=max_bytes, suggest=suggest)


# -- side-by-side comparison -------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Comparison:
    """Several schedules side by side: their exact reports and their maps at one size.

    ``reports[i]`` is the :class:`GriddingReport` of schedule ``i`` (unbounded input);
    ``maps[i]`` its :class:`~rfmap.PathMap` on a ``size`` input (for the figure).
    """

    reports: tuple[GriddingReport, ...]
    maps: tuple[Any, ...]
    size: tuple[int, ...]

    @property
    def names(self) -> list[str]:
        """Each schedule as its title form, e.g. ``'(1, 2, 5)'``."""
        return [format_schedule(r.layers) for r in self.reports]

    def to_dict(self) -> dict[str, Any]:
        """``{"size", "schedules": [report dict + "name" + "map" summary]}``."""
        out = []
        for name, report, pmap in zip(self.names, self.reports, self.maps, strict=True):
            entry = {"name": name, **report.to_dict()}
            entry["map"] = {
                "size": list(pmap.size),
                "unit": list(pmap.unit),
                "max": pmap.max,
                "support": pmap.support,
                "total": pmap.total,
            }
            out.append(entry)
        return {"size": list(self.size), "schedules": out}

    def plot(self, **kwargs: Any) -> Any:
        """The side-by-side figure (see :func:`rfmap.plot.plot_compare`), made with pyplot."""
        from .plot.compare import plot_compare

        kwargs.setdefault("pyplot", True)
        return plot_compare(self, **kwargs)

    def __str__(self) -> str:
        from .report import format_comparison

        return format_comparison(self)

    def _repr_png_(self) -> bytes:
        from .plot import figure_png, plot_compare

        return figure_png(plot_compare(self))


def compare(
    schedules: Sequence[Sequence[ScheduleEntry]],
    size: int | Sequence[int] = 33,
    kernel_size: int | Sequence[ScheduleEntry] = 3,
    *,
    ndim: int | None = None,
    padding: str | int | Sequence[object] = "same",
    max_bytes: int | None = None,
) -> Comparison:
    """Check several schedules and build their maps at one input size, for a side-by-side view.

    >>> c = compare([[2, 2, 2], [1, 2, 3], [1, 2, 5]], size=33)
    >>> [(r.gridding_free, r.receptive_field[0]) for r in c.reports]
    [(False, 13), (True, 13), (True, 17)]
    """
    from .paths import stack_path_map

    if isinstance(schedules, str) or not isinstance(schedules, Sequence) or not schedules:
        from .errors import InvalidSpecError

        raise InvalidSpecError(f"compare needs at least one schedule, got {schedules!r}")
    reports, maps = [], []
    for schedule in schedules:
        layers = conv_stack(schedule, kernel_size, ndim=ndim, padding=padding)
        reports.append(check_layers(layers, max_bytes=max_bytes, suggest=False))
        maps.append(stack_path_map(layers, size, max_bytes=max_bytes))
    if len({m.ndim for m in maps}) > 1:
        from .errors import InvalidSpecError

        raise InvalidSpecError(
            f"the schedules have different numbers of axes ({[m.ndim for m in maps]}); "
            "compare schedules of one dimensionality"
        )
    return Comparison(tuple(reports), tuple(maps), tuple(maps[0].counts.shape))
