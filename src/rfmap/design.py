"""Designing gridding-free dilation schedules, with optima proven by the search.

Two searches over *gridding-free* schedules of one kernel size ``K`` (stride 1):

- :func:`design` finds the best ``L``-layer schedules: the largest receptive field
  (objective ``rf``), or the flattest field (objective ``flat``, smallest peak-to-mean
  ratio); with ``target_rf`` only schedules reaching it count and, unless ``layers`` is
  given, the depth is the smallest that can reach it.
- :func:`nearest_gridding_free` finds the smallest change that removes the holes of a
  schedule while keeping its receptive field (what ``rfmap check`` suggests).

Both are depth-first branch and bound over **sorted** schedules ``b_1 <= ... <= b_L``.
This loses nothing: the receptive field, the holes and every path count are
order-independent (a sumset, see :mod:`rfmap.gridding`), and by the theorem there a
sorted schedule is gridding-free iff ``b_1 = 1`` and ``b_i <= 1 + (K - 1)(b_1 + ... +
b_(i-1))`` for every ``i``.  A schedule is reported in ascending order; any order of
its layers gives the same field.

Sound bounds (each proved where it is used):

- The receptive field is ``1 + (K - 1) * sum(b)``.  From a prefix with sum ``S`` the
  largest completion is the greedy one, ``b_j = min(D, 1 + (K - 1) S_(j-1))``: every
  completion has ``b_j`` at most that value, by induction on ``j``.  So the greedy
  completion bounds ``sum(b)`` and ``sum(b**2)`` from above, and is the unique best.
- Peak-to-mean is ``max * RF / K**L`` for a gridding-free schedule (every cell of the
  field reached, ``K**L`` paths).  Adding a layer never lowers the largest count (the
  path that takes tap 0 in the new layer keeps every old count), so ``max`` of any
  completion is at least ``max`` of the prefix, and ``RF`` at least the prefix's plus
  ``(K - 1) * b_i`` per remaining layer.

>>> best = design(4)
>>> best.candidates[0].dilations, best.candidates[0].receptive_field
((1, 3, 9, 27), 81)
>>> design(3, max_dilation=4).candidates[0].dilations
(1, 3, 4)

The function has the module's name: ``from rfmap.design import design``, or
``rfmap.design_schedules`` (the same function); the module can be called too,
``rfmap.design(4)``.
"""

from __future__ import annotations

import enum
import heapq
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from ._callable import make_callable
from .errors import InvalidSpecError, SearchTooLargeError
from .specs import ConvLayer

__all__ = [
    "DEFAULT_DESIGN_NODES",
    "DEFAULT_DESIGN_WORK",
    "DEFAULT_FIX_NODES",
    "MAX_DESIGN_LAYERS",
    "MAX_DESIGN_TOP",
    "Candidate",
    "DesignResult",
    "Fix",
    "Objective",
    "Suggestion",
    "design",
    "max_receptive_field",
    "nearest_gridding_free",
    "suggest_fix",
]

#: Search nodes :func:`design` may visit before refusing with SearchTooLargeError.
DEFAULT_DESIGN_NODES = 1_000_000

#: Path-count cells the flat search may update (its real cost), together with the
#: maps behind the metrics of the schedules returned, before refusing.
DEFAULT_DESIGN_WORK = 2_000_000_000

#: Search nodes :func:`nearest_gridding_free` visits before settling for its best so far.
DEFAULT_FIX_NODES = 100_000

#: Deepest schedule :func:`design` considers (also when searching the shortest depth).
MAX_DESIGN_LAYERS = 64

#: Most schedules :func:`design` returns (the search keeps them all in memory).
MAX_DESIGN_TOP = 10_000

_INT64_LIMIT = 2**63 - 1
_NODE_WORK = 3500  # the fixed cost of a search step (about 7 us), in cell updates (2 ns)
_MAP_CELLS_LIMIT = 2**23  # metrics of a designed schedule need its 1D map


class Objective(str, enum.Enum):
    """What :func:`design` optimises.

    ``rf``: the largest receptive field; ties go to the wider effective field (larger
    ``sum(b**2)``, i.e. larger ERF standard deviation), then to the lexicographically
    smaller schedule.  ``flat``: the smallest peak-to-mean ratio (the most even use of
    the field; 1 = every cell reached by the same number of paths); ties go to the larger
    receptive field, then to the lexicographically smaller schedule.
    """

    RF = "rf"
    FLAT = "flat"


# -- small exact helpers -------------------------------------------------------------------


def max_receptive_field(layers: int, kernel_size: int = 3, max_dilation: int | None = None) -> int:
    """Largest receptive field of a gridding-free ``layers``-deep schedule (exact).

    The greedy schedule ``b_i = min(D, 1 + (K - 1)(b_1 + ... + b_(i-1)))`` attains it,
    ``K**L`` without a cap.

    >>> max_receptive_field(3), max_receptive_field(3, max_dilation=4), max_receptive_field(10, 2)
    (27, 17, 1024)
    """
    _check_int(layers, "layers", 1)
    _check_int(kernel_size, "kernel_size", 1)
    if max_dilation is not None:
        _check_int(max_dilation, "max_dilation", 1)
    return 1 + (kernel_size - 1) * sum(_greedy(0, layers, kernel_size, max_dilation))


def _greedy(total: int, count: int, k: int, cap: int | None) -> list[int]:
    """The greedy (largest) completion of ``count`` layers after a prefix summing to ``total``."""
    out = []
    for _ in range(count):
        b = 1 + (k - 1) * total
        if cap is not None:
            b = min(b, cap)
        out.append(b)
        total += b
    return out


def _check_int(value: object, name: str, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise InvalidSpecError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _spread(counts: np.ndarray, k: int, e: int) -> np.ndarray:
    """Add one layer (kernel ``k``, dilation ``e``) to an unbounded 1D path-count map."""
    n = len(counts)
    out = np.zeros(n + (k - 1) * e, dtype=counts.dtype)
    for t in range(k):
        out[t * e : t * e + n] += counts
    return out


def _counts(schedule: Sequence[int], k: int) -> np.ndarray:
    dtype: Any = np.int64 if k ** len(schedule) <= _INT64_LIMIT else object
    counts = np.ones(1, dtype=dtype)
    for b in schedule:
        counts = _spread(counts, k, b)
    return counts


# -- designed schedules --------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One designed schedule (ascending) and its exact metrics.

    ``peak_to_mean`` and ``min_nonzero_to_max`` are exact fractions, ``None`` when the
    field is too large to build (over 2**23 cells).
    """

    dilations: tuple[int, ...]
    kernel: int
    receptive_field: int
    peak_to_mean: Fraction | None
    min_nonzero_to_max: Fraction | None
    erf_std: float

    @property
    def hdc_passes(self) -> bool | None:
        """Whether Wang et al.'s ``M_2 <= K`` test accepts the schedule."""
        if len(self.dilations) < 2:
            return None
        from .gridding import hdc_m

        return hdc_m(self.dilations)[1] <= self.kernel

    def to_dict(self) -> dict[str, Any]:
        return {
            "dilations": list(self.dilations),
            "kernel": self.kernel,
            "layers": len(self.dilations),
            "receptive_field": self.receptive_field,
            "peak_to_mean": None if self.peak_to_mean is None else float(self.peak_to_mean),
            "min_nonzero_to_max": (
                None if self.min_nonzero_to_max is None else float(self.min_nonzero_to_max)
            ),
            "erf_std": self.erf_std,
            "hdc_passes": self.hdc_passes,
        }


def _metric_cells(schedule: Sequence[int], k: int) -> int:
    """Cells :func:`_counts` writes to build a schedule's map (0 if the map is not built)."""
    length, cells = 1, 0
    for b in schedule:
        grown = length + (k - 1) * b
        cells += grown + k * length
        length = grown
    return cells if length <= _MAP_CELLS_LIMIT else 0


def _candidate(schedule: Sequence[int], k: int) -> Candidate:
    schedule = tuple(int(b) for b in schedule)
    rf = 1 + (k - 1) * sum(schedule)
    ptm = low = None
    if rf <= _MAP_CELLS_LIMIT:
        counts = _counts(schedule, k)
        peak = int(counts.max())
        low = Fraction(int(counts[counts != 0].min()), peak)
        ptm = Fraction(peak * rf, k ** len(schedule))
    std = math.sqrt(float(Fraction(sum(b * b for b in schedule) * (k * k - 1), 12)))
    return Candidate(schedule, k, rf, ptm, low, std)


@dataclass(frozen=True)
class DesignResult:
    """The top schedules found by :func:`design`, best first, proven optimal by the search.

    ``nodes`` counts the search nodes visited; ``layers`` is the depth searched (the
    shortest that reaches ``target_rf`` when the depth was not given).
    """

    layers: int
    kernel: int
    max_dilation: int | None
    target_rf: int | None
    objective: Objective
    top: int
    candidates: tuple[Candidate, ...]
    nodes: int
    depth_given: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": self.layers,
            "kernel": self.kernel,
            "max_dilation": self.max_dilation,
            "target_rf": self.target_rf,
            "objective": self.objective.value,
            "top": self.top,
            "depth_given": self.depth_given,
            "optimal": True,
            "nodes": self.nodes,
            "max_receptive_field": max_receptive_field(self.layers, self.kernel, self.max_dilation),
            "candidates": [c.to_dict() for c in self.candidates],
        }

    def __str__(self) -> str:
        from .report import format_design

        return format_design(self)

    def _repr_html_(self) -> str:
        from .plot.compare import design_html

        return design_html(self)


def design(
    layers: int | None = None,
    kernel_size: int = 3,
    *,
    max_dilation: int | None = None,
    target_rf: int | None = None,
    objective: Objective | str = Objective.RF,
    top: int = 5,
    max_nodes: int | None = None,
    max_work: int | None = None,
) -> DesignResult:
    """The best gridding-free schedules of ``layers`` layers of kernel ``kernel_size``.

    Parameters
    ----------
    layers
        Depth L (>= 1).  May be omitted with ``target_rf``: the shortest depth that can
        reach it is used.
    kernel_size
        K (>= 2), the same for every layer.
    max_dilation
        Largest dilation allowed (default: none).
    target_rf
        Only schedules whose receptive field is at least this count.
    objective
        ``"rf"`` (largest receptive field) or ``"flat"`` (smallest peak-to-mean); see
        :class:`Objective` for the tie-breaks.
    top
        How many schedules to return, best first (at most :data:`MAX_DESIGN_TOP`).
    max_nodes, max_work
        Refuse (:class:`~rfmap.errors.SearchTooLargeError`) rather than visit more search
        nodes, or update more path-count cells (the flat objective's real cost, and the
        maps behind the returned schedules' metrics); the
        defaults are :data:`DEFAULT_DESIGN_NODES` and :data:`DEFAULT_DESIGN_WORK`
        (a few seconds).

    >>> [c.dilations for c in design(3, top=3).candidates]
    [(1, 3, 9), (1, 3, 8), (1, 3, 7)]
    >>> r = design(target_rf=100, objective="flat", top=1)
    >>> r.layers, r.candidates[0].dilations, r.candidates[0].peak_to_mean
    (5, (1, 3, 9, 27, 81), Fraction(1, 1))
    """
    try:
        objective = Objective(objective)
    except ValueError:
        raise InvalidSpecError(
            f"objective must be one of {', '.join(o.value for o in Objective)}, got {objective!r}"
        ) from None
    _check_int(kernel_size, "kernel_size", 1)
    if kernel_size < 2:
        raise InvalidSpecError(
            f"kernel_size must be >= 2 to grow a receptive field, got {kernel_size}"
        )
    if max_dilation is not None:
        _check_int(max_dilation, "max_dilation", 1)
    _check_int(top, "top", 1)
    if top > MAX_DESIGN_TOP:
        raise InvalidSpecError(f"top must be at most {MAX_DESIGN_TOP:,}, got {top:,}")
    max_nodes = DEFAULT_DESIGN_NODES if max_nodes is None else max_nodes
    max_work = DEFAULT_DESIGN_WORK if max_work is None else max_work
    _check_int(max_nodes, "max_nodes", 1)
    _check_int(max_work, "max_work", 1)
    if target_rf is not None:
        _check_int(target_rf, "target_rf", 1)
    depth_given = layers is not None
    if layers is None:
        if target_rf is None:
            raise InvalidSpecError("give layers (the depth L >= 1), or target_rf to find it")
        layers = _shortest_depth(target_rf, kernel_size, max_dilation)
    _check_int(layers, "layers", 1)
    if layers > MAX_DESIGN_LAYERS:
        raise InvalidSpecError(f"layers must be at most {MAX_DESIGN_LAYERS}, got {layers}")
    best = max_receptive_field(layers, kernel_size, max_dilation)
    if target_rf is not None and best < target_rf:
        cap = "" if max_dilation is None else f", max dilation {max_dilation}"
        raise InvalidSpecError(
            f"target_rf {target_rf} is unreachable: the largest gridding-free receptive field "
            f"of {layers} layers of kernel {kernel_size}{cap} is {best}"
        )
    search = _DesignSearch(
        layers, kernel_size, max_dilation, target_rf, objective, top, max_nodes, max_work
    )
    schedules = search.run()
    search.charge_metrics(schedules)
    return DesignResult(
        layers=layers,
        kernel=kernel_size,
        max_dilation=max_dilation,
        target_rf=target_rf,
        objective=objective,
        top=top,
        candidates=tuple(_candidate(s, kernel_size) for s in schedules),
        nodes=search.nodes,
        depth_given=depth_given,
    )


def _shortest_depth(target: int, k: int, cap: int | None) -> int:
    total = 0
    for depth in range(1, MAX_DESIGN_LAYERS + 1):
        total += _greedy(total, 1, k, cap)[0]
        if 1 + (k - 1) * total >= target:
            return depth
    cap_text = "" if cap is None else f" with max dilation {cap}"
    raise InvalidSpecError(
        f"target_rf {target} is unreachable{cap_text}: it needs more than {MAX_DESIGN_LAYERS} "
        f"layers of kernel {k}"
    )


class _DesignSearch:
    """Depth-first branch and bound keeping the ``top`` best keys in a max-heap."""

    def __init__(
        self,
        depth: int,
        k: int,
        cap: int | None,
        target: int | None,
        objective: Objective,
        top: int,
        max_nodes: int,
        max_work: int,
    ) -> None:
        self.depth, self.k, self.cap, self.target = depth, k, cap, target
        self.objective, self.top = objective, top
        self.max_nodes, self.max_work = max_nodes, max_work
        self.nodes = self.work = 0
        # Heap of (negated key, schedule): the root is the worst of the kept ones.
        self.heap: list[tuple[Any, tuple[int, ...]]] = []
        self.dtype: Any = np.int64 if k**depth <= _INT64_LIMIT else object
        self.paths = k**depth

    def run(self) -> list[tuple[int, ...]]:
        ones = np.ones(1, dtype=self.dtype)
        self._visit([], 0, 0, ones)
        ranked = sorted(self.heap, key=lambda item: _negate(item[0]), reverse=False)
        return [schedule for _, schedule in ranked]

    # keys: smaller is better
    def _key(self, schedule: tuple[int, ...], total: int, squares: int, peak: int) -> tuple:
        rf = 1 + (self.k - 1) * total
        if self.objective is Objective.RF:
            return (-rf, -squares, schedule)
        # peak-to-mean = peak * rf / K**L; the denominator is the same for every leaf.
        return (peak * rf, -rf, schedule)

    def _worst(self) -> tuple | None:
        if len(self.heap) < self.top:
            return None
        return _negate(self.heap[0][0])

    def _offer(self, key: tuple, schedule: tuple[int, ...]) -> None:
        item = (_negate(key), schedule)
        if len(self.heap) < self.top:
            heapq.heappush(self.heap, item)
        elif key < _negate(self.heap[0][0]):
            heapq.heapreplace(self.heap, item)

    def _pruned(self, depth: int, total: int, squares: int, low: int, peak: int) -> bool:
        """Whether no completion of a prefix (``depth`` layers, sum ``total``, sum of
        squares ``squares``, last value ``low``, largest count ``peak``) can enter the top."""
        if self.objective is Objective.FLAT:
            self._spend(0, _NODE_WORK)
        rest = self.depth - depth
        greedy = _greedy(total, rest, self.k, self.cap)
        rf_ub = 1 + (self.k - 1) * (total + sum(greedy))
        if self.target is not None and rf_ub < self.target:
            return True
        worst = self._worst()
        if worst is None:
            return False
        if self.objective is Objective.RF:
            bound: tuple = (-rf_ub, -(squares + sum(b * b for b in greedy)))
        else:
            rf_lb = 1 + (self.k - 1) * (total + rest * low)
            if self.target is not None:
                rf_lb = max(rf_lb, self.target)
            bound = (max(self.paths, peak * rf_lb), -rf_ub)
        return bound > worst[: len(bound)]

    def charge_metrics(self, schedules: Sequence[tuple[int, ...]]) -> None:
        """Refuse before building the maps behind the returned schedules' metrics if they
        would take the work past the budget (a large ``top`` of deep schedules would)."""
        cells = sum(_metric_cells(schedule, self.k) for schedule in schedules)
        if self.work + cells // 2 > self.max_work:  # a map cell costs about half a unit
            raise SearchTooLargeError(
                f"the metrics of the {len(schedules):,} schedules found need the maps of "
                f"{cells:,} path-count cells, more than the {self.max_work:,} cell updates "
                f"allowed; ask for fewer schedules"
            )
        self.work += cells // 2

    def _spend(self, nodes: int, work: int) -> None:
        self.nodes += nodes
        self.work += work
        if self.nodes > self.max_nodes or self.work > self.max_work:
            what = (
                f"{self.max_nodes:,} nodes"
                if self.nodes > self.max_nodes
                else f"{self.max_work:,} cell updates"
            )
            raise SearchTooLargeError(
                f"the {self.objective.value} search for {self.depth} layers of kernel {self.k} "
                f"needs more than {what}; narrow it with a max dilation or a target "
                f"receptive field, ask for fewer schedules, or use objective rf"
            )

    def _visit(self, prefix: list[int], total: int, squares: int, counts: np.ndarray) -> None:
        self._spend(1, len(counts) * self.k + _NODE_WORK if self.objective is Objective.FLAT else 1)
        i = len(prefix)
        flat = self.objective is Objective.FLAT
        if i == self.depth:
            if self.target is not None and 1 + (self.k - 1) * total < self.target:
                return
            peak = int(counts.max()) if flat else 0
            self._offer(self._key(tuple(prefix), total, squares, peak), tuple(prefix))
            return
        low = prefix[-1] if prefix else 1
        if self._pruned(i, total, squares, low, int(counts.max()) if flat else 0):
            return
        high = 1 + (self.k - 1) * total
        if self.cap is not None:
            high = min(high, self.cap)
        if flat and i == self.depth - 1 and self.dtype is np.int64:
            self._last_layer(prefix, total, counts, low, high)
            return
        peak = int(counts.max()) if flat else 0
        for b in range(high, low - 1, -1):
            if flat:
                # The parent's peak bounds the child's from below: prune before spreading.
                if self._pruned(i + 1, total + b, squares + b * b, b, peak):
                    continue
                child = _spread(counts, self.k, b)
            else:
                # The rf bound only gets worse as b decreases: stop at the first pruned child.
                if self._pruned(i + 1, total + b, squares + b * b, b, 0):
                    break
                child = counts
            prefix.append(b)
            self._visit(prefix, total + b, squares + b * b, child)
            prefix.pop()

    def _last_layer(
        self, prefix: list[int], total: int, counts: np.ndarray, low: int, high: int
    ) -> None:
        """Evaluate every last layer ``b`` in ``[low, high]`` (flat objective), in chunks.

        ``b = high`` (disjoint copies of the prefix's field) goes first; then ascending
        chunks, skipped or stopped by the bound ``peak * rf >= prefix peak * rf(b)``.
        """
        if self.target is not None:
            low = max(low, -((1 - self.target) // (self.k - 1)) - total)
        if low > high:
            return
        peak = int(counts.max())
        order = [(high, high)]
        if low < high:
            order.append((low, high - 1))
        for first, last in order:
            start = first
            while start <= last:
                worst = self._worst()
                if worst is not None:
                    bound = (
                        max(self.paths, peak * (1 + (self.k - 1) * (total + start))),
                        -(1 + (self.k - 1) * (total + last)),
                    )
                    if bound > worst[:2]:
                        break  # the bound only grows with b
                width = len(counts) + (self.k - 1) * last
                rows = max(1, min(last - start + 1, (1 << 21) // width))
                values = np.arange(start, start + rows)
                self._spend(rows, rows * width * self.k + _NODE_WORK)
                self._offer_leaves(prefix, total, values, _last_layer_peaks(counts, self.k, values))
                start += rows

    def _offer_leaves(
        self, prefix: list[int], total: int, values: np.ndarray, peaks: np.ndarray
    ) -> None:
        rfs = 1 + (self.k - 1) * (total + values)
        products = peaks.astype(object) * rfs.astype(object)
        worst = self._worst()
        for b, product, rf in zip(values.tolist(), products.tolist(), rfs.tolist(), strict=True):
            if worst is not None and (product, -rf) > worst[:2]:
                continue
            schedule = (*prefix, b)
            self._offer((product, -rf, schedule), schedule)
            worst = self._worst()


def _last_layer_peaks(counts: np.ndarray, k: int, values: np.ndarray) -> np.ndarray:
    """Largest count after adding one layer of dilation ``b``, for every ``b`` in ``values``."""
    n = len(counts)
    out = np.empty(len(values), dtype=np.int64)
    width = n + (k - 1) * int(values.max())
    rows_per_chunk = max(1, (1 << 22) // width)
    columns = np.arange(n)
    for start in range(0, len(values), rows_per_chunk):
        chunk = values[start : start + rows_per_chunk]
        grid = np.zeros((len(chunk), width), dtype=np.int64)
        rows = np.arange(len(chunk))[:, None]
        for t in range(k):
            grid[rows, t * chunk[:, None] + columns[None, :]] += counts[None, :]
        out[start : start + len(chunk)] = grid.max(axis=1)
    return out


def _negate(key: tuple) -> tuple:
    """Map a key to one that orders in reverse (for the max-heap); an involution."""
    return tuple(_Reversed(v) if not isinstance(v, _Reversed) else v.value for v in key)


class _Reversed:
    """Wraps a value so that comparisons are reversed."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Reversed) -> bool:
        return bool(other.value < self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and bool(self.value == other.value)

    def __hash__(self) -> int:  # pragma: no cover - never hashed
        return hash(self.value)


# -- the smallest fix of a gridding schedule ------------------------------------------------


@dataclass(frozen=True)
class Fix:
    """The smallest change that removes the holes of a 1D schedule (:func:`nearest_gridding_free`).

    ``dilations`` is the new schedule, ``added_layers`` new layers first, then the
    original layers in their order; ``distance`` is ``sum |new - old|`` with an added
    layer counted from dilation 1; ``changed`` are the 1-based positions (in the new
    schedule) that differ from the old, added layers included.
    """

    dilations: tuple[int, ...]
    kernel: int
    receptive_field: int
    added_layers: int
    changed: tuple[int, ...]
    distance: int
    optimal: bool
    nodes: int


def nearest_gridding_free(
    dilations: Sequence[int], kernel_size: int = 3, *, max_nodes: int = DEFAULT_FIX_NODES
) -> Fix:
    """The gridding-free schedule closest to ``dilations`` with at least its receptive field.

    Among gridding-free schedules of the same depth ``L`` whose receptive field is at
    least the original's (or, if none exists, of the smallest depth ``L + m`` that has
    one, the ``m`` added layers counted as dilation 1), it minimises, in order: the total
    change ``sum |b - a|`` under the best pairing of old and new layers (sorted against
    sorted), the number of changed layers, minus the receptive field, and the sorted
    schedule lexicographically.  All four depend on the multisets only, because the field
    does.  Unchanged values keep their positions; the others are paired in sorted order.
    The branch and bound is exact (``optimal=True``) unless it visits ``max_nodes`` nodes.

    >>> fix = nearest_gridding_free([2, 2, 2])
    >>> fix.dilations, fix.receptive_field, fix.changed, fix.distance
    ((1, 2, 3), 13, (1, 3), 2)
    >>> nearest_gridding_free([2, 4, 8]).dilations   # 29 > 27 = 3**3: one layer more
    (1, 2, 4, 8)
    """
    _check_int(kernel_size, "kernel_size", 2)
    old = [int(d) for d in dilations]
    if not old:
        raise InvalidSpecError("dilations must name at least one layer, got an empty schedule")
    for d in old:
        _check_int(d, "dilations", 1)
    k = kernel_size
    need = sum(old)  # receptive field >= original  <=>  sum(b) >= sum(a)
    added = 0
    while sum(_greedy(0, len(old) + added, k, None)) < need:
        added += 1
    extended = [1] * added + old
    search = _FixSearch(sorted(extended), k, need, max_nodes)
    best = search.run()
    new = _assign(old, added, best)
    changed = tuple(
        i + 1 for i, (a, b) in enumerate(zip(extended, new, strict=True)) if i < added or a != b
    )
    distance = sum(abs(a - b) for a, b in zip(extended, new, strict=True))
    return Fix(
        dilations=tuple(new),
        kernel=k,
        receptive_field=1 + (k - 1) * sum(new),
        added_layers=added,
        changed=changed,
        distance=distance,
        optimal=search.optimal,
        nodes=search.nodes,
    )


def _assign(old: list[int], added: int, sorted_new: Sequence[int]) -> list[int]:
    """Place the new values: equal values stay put, the rest pair up in sorted order."""
    extended = [1] * added + old
    pool = Counter(sorted_new)
    out: list[int | None] = [None] * len(extended)
    # Original layers keep their value first, then the added ones.
    for i in list(range(added, len(extended))) + list(range(added)):
        if pool[extended[i]] > 0:
            pool[extended[i]] -= 1
            out[i] = extended[i]
    rest_positions = sorted(
        (i for i in range(len(extended)) if out[i] is None),
        key=lambda i: (extended[i], i < added, i),
    )
    rest_values = sorted(pool.elements())
    for i, value in zip(rest_positions, rest_values, strict=True):
        out[i] = value
    # Layers that had the same value are interchangeable: give them their new values in
    # ascending order, so [2, 2, 2] becomes [1, 2, 3] rather than [2, 1, 3] (added layers
    # and original ones are kept apart).
    result = [int(v) for v in out if v is not None]
    for key in {(v, i < added) for i, v in enumerate(extended)}:
        group = [i for i in range(len(extended)) if (extended[i], i < added) == key]
        for i, new in zip(group, sorted(result[i] for i in group), strict=True):
            result[i] = new
    return result


class _FixSearch:
    """Branch and bound over sorted gridding-free ``b`` with ``sum(b) >= need``."""

    def __init__(self, old_sorted: list[int], k: int, need: int, max_nodes: int) -> None:
        self.a = old_sorted
        self.k, self.need, self.max_nodes = k, need, max_nodes
        self.n = len(old_sorted)
        self.nodes = 0
        self.optimal = True
        self.best_key: tuple | None = None
        self.best: list[int] = []
        self.powers = [k**r for r in range(self.n + 1)]
        self.old_counts = Counter(old_sorted)

    def _min_next(self, total: int, rest_after: int) -> int:
        """Smallest next value that keeps ``sum >= need`` reachable."""
        p = self.powers[rest_after]
        tail = (p - 1) // (self.k - 1)
        return -((tail - self.need) // p) - total  # ceil((need - tail) / p) - total

    def _lower_bound(self, i: int, total: int, low: int) -> int:
        """Least extra cost of any completion: values >= low and a sum reaching ``need``."""
        rest = self.a[i:]
        floor_cost = sum(max(0, low - a) for a in rest)
        floor_sum = sum(max(a, low) for a in rest)
        return floor_cost + max(0, self.need - total - floor_sum)

    def _leaf_key(self, b: list[int], cost: int) -> tuple:
        common = sum((Counter(b) & self.old_counts).values())
        return (cost, self.n - common, -sum(b), tuple(b))

    def run(self) -> list[int]:
        self._greedy_incumbent()
        try:
            self._visit([], 0, 0)
        except _Budget:
            self.optimal = False
        return self.best

    def _bounds(self, prefix: list[int], total: int) -> tuple[int, int]:
        i = len(prefix)
        low = max(prefix[-1] if prefix else 1, self._min_next(total, self.n - i - 1))
        high = 1 + (self.k - 1) * total
        return low, high

    def _greedy_incumbent(self) -> None:
        prefix: list[int] = []
        total = cost = 0
        for i in range(self.n):
            low, high = self._bounds(prefix, total)
            b = min(max(self.a[i], low), high)
            prefix.append(b)
            total += b
            cost += abs(b - self.a[i])
        self.best_key = self._leaf_key(prefix, cost)
        self.best = prefix

    def _budget(self) -> int:
        """The incumbent's cost: subtrees that must cost more are pruned."""
        return self.best_key[0] if self.best_key is not None else math.inf  # type: ignore[return-value]

    def _visit(self, prefix: list[int], total: int, cost: int) -> None:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise _Budget
        i = len(prefix)
        if i == self.n:
            key = self._leaf_key(prefix, cost)
            if self.best_key is None or key < self.best_key:
                self.best_key, self.best = key, list(prefix)
            return
        budget = self._budget()
        low, high = self._bounds(prefix, total)
        if low > high or cost + self._lower_bound(i, total, low) > budget:
            return
        target = self.a[i]
        start = min(max(target, low), high)
        # Values in order of increasing |b - a_i|: start, then outwards.
        down, up = start - 1, start + 1
        self._descend(prefix, total, cost, start)
        while True:
            choices = []
            if down >= low:
                choices.append(down)
            if up <= high:
                choices.append(up)
            if not choices:
                break
            b = min(choices, key=lambda v: (abs(v - target), v))
            if cost + abs(b - target) > self._budget():
                break
            if b == down:
                down -= 1
            else:
                up += 1
            self._descend(prefix, total, cost, b)

    def _descend(self, prefix: list[int], total: int, cost: int, b: int) -> None:
        self.nodes += 1  # every value tried counts, pruned or not, so the budget bounds time
        if self.nodes > self.max_nodes:
            raise _Budget
        step = cost + abs(b - self.a[len(prefix)])
        if step + self._lower_bound(len(prefix) + 1, total + b, b) > self._budget():
            return
        prefix.append(b)
        self._visit(prefix, total + b, step)
        prefix.pop()


class _Budget(Exception):
    """Raised inside the fix search when it runs out of nodes."""


@dataclass(frozen=True)
class Suggestion:
    """A fix for a (possibly nD) stack: what ``rfmap check`` suggests (see :class:`Fix`).

    ``dilations`` has one entry per layer (an int, or a per-axis tuple where the axes
    differ); ``distance`` sums, over layers, the largest change on any axis.
    """

    dilations: tuple[int | tuple[int, ...], ...]
    receptive_field: tuple[int, ...]
    added_layers: int
    changed_layers: tuple[int, ...]
    distance: int
    optimal: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "dilations": [d if isinstance(d, int) else list(d) for d in self.dilations],
            "receptive_field": list(self.receptive_field),
            "added_layers": self.added_layers,
            "changed_layers": list(self.changed_layers),
            "distance": self.distance,
            "optimal": self.optimal,
        }


def suggest_fix(layers: Sequence[ConvLayer]) -> tuple[Suggestion | None, str | None]:
    """The smallest fix of a gridding stack (per axis, see :func:`nearest_gridding_free`).

    Returns ``(suggestion, None)``, or ``(None, why not)`` for stacks outside the search's
    assumptions (strides other than 1, kernel sizes that differ between layers).

    >>> from rfmap import conv_stack
    >>> fix, note = suggest_fix(conv_stack([2, 2, 2, 2]))
    >>> fix.dilations, fix.receptive_field
    ((1, 2, 2, 3), (17, 17))
    """
    from .gridding import axis_gap

    layers = tuple(layers)
    ndim = layers[0].ndim
    if any(s != 1 for layer in layers for s in layer.stride):
        return None, "no suggestion for strided stacks (the search assumes stride 1)"
    kernels = []
    for a in range(ndim):
        sizes = {layer.kernel_size[a] for layer in layers}
        if len(sizes) > 1:
            return None, "no suggestion when kernel sizes differ between layers"
        kernels.append(sizes.pop())
    per_axis: list[list[int]] = []
    fixes: list[Fix | None] = []
    for a in range(ndim):
        rates = [layer.dilation[a] for layer in layers]
        if axis_gap([kernels[a]] * len(rates), rates) is None:
            fixes.append(None)
        else:
            same = next(
                (i for i in range(a) if per_axis[i] == rates and kernels[i] == kernels[a]), None
            )
            fixes.append(
                fixes[same] if same is not None else nearest_gridding_free(rates, kernels[a])
            )
        per_axis.append(rates)
    added = max(f.added_layers for f in fixes if f is not None)
    columns = []
    for a in range(ndim):
        f = fixes[a]
        if f is None:
            columns.append([1] * added + per_axis[a])
        else:
            columns.append([1] * (added - f.added_layers) + list(f.dilations))
    old_columns = [[1] * added + per_axis[a] for a in range(ndim)]
    entries: list[int | tuple[int, ...]] = []
    changed = []
    distance = 0
    for i in range(len(columns[0])):
        values = tuple(col[i] for col in columns)
        entries.append(values[0] if len(set(values)) == 1 else values)
        diffs = [abs(col[i] - old[i]) for col, old in zip(columns, old_columns, strict=True)]
        distance += max(diffs)
        if i < added or any(diffs):
            changed.append(i + 1)
    rf = tuple(1 + (kernels[a] - 1) * sum(columns[a]) for a in range(ndim))
    optimal = (
        all(f.optimal for f in fixes if f is not None)
        and len({f.added_layers for f in fixes if f is not None}) == 1
    )
    return Suggestion(tuple(entries), rf, added, tuple(changed), distance, optimal), None


make_callable(__name__, "design")
