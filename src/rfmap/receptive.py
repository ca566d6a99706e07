"""Analytic receptive fields of a layer graph (pure Python and numpy; no torch).

A model is an :class:`~rfmap.graph.RFGraph`: nodes, and edges that say per spatial axis
which source positions one unit reads (a :class:`~rfmap.windows.Window`).  Two
independent computations run on that graph:

* a forward algebra over paths (Araujo et al., Distill 2019, extended to DAGs): per
  axis the effective stride (jump), the box of output unit 0 (start, receptive field,
  effective padding), the smallest and largest receptive field over all paths and
  whether all paths are aligned -- exact integers, in one pass over the graph;
* where a window is not a convolution's (upsampling, attention inside windows, measured
  ops...), the first and last input position read by *every* unit of every node, in one
  forward pass (memoised per axis), so the per-layer table costs O(n) window operations;
  and the exact support of one unit (:func:`~rfmap.graph.unit_support`) for its box.

:func:`layers_rf` analyses a plain stack of :class:`~rfmap.specs.ConvLayer`;
:func:`rfmap.trace.model_rf` builds the graph of any PyTorch model.

>>> from rfmap.specs import conv_stack
>>> r = layers_rf(conv_stack([1, 2, 4], ndim=1), size=32)
>>> r.receptive_field, r.stride, r.padding
((15,), (1,), (7,))
>>> r.input_box((10,)), r.input_box((0,)), r.input_box((0,), clip=False)
(((3, 18),), ((0, 8),), ((-7, 8),))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from .errors import InvalidSpecError
from .graph import Edge, Node, RFGraph, support_mask, unit_bounds, unit_support
from .specs import ConvLayer, output_sizes
from .windows import (
    _NONE,
    _TAP_LOOP,
    BROADCAST,
    IDENTITY,
    Adaptive,
    Conv,
    Digits,
    Jump,
    PadMode,
    Resample,
    ResampleMode,
    Table,
    Transposed,
    Whole,
    Window,
    _fold_pairs,
    _jump,
)

__all__ = [
    "BROADCAST",
    "IDENTITY",
    "Adaptive",
    "Conv",
    "Digits",
    "Edge",
    "Jump",
    "LayerRF",
    "Node",
    "PadMode",
    "RFGraph",
    "ReceptiveField",
    "Resample",
    "ResampleMode",
    "Table",
    "Transposed",
    "Whole",
    "Window",
    "format_table",
    "graph_rf",
    "layers_graph",
    "layers_rf",
    "measured_receptive_field",
    "support_mask",
    "unit_bounds",
    "unit_support",
]

# -- the forward algebra over paths -----------------------------------------------------

# Per axis and per jump J (a path class), the extremes over all paths of that class of:
# start of unit 0, end of unit 0, width (end - start), and start + end (twice the centre).
# Every window adds the same amount to a quantity for all paths of a class, so the
# extremes stay exact.  J == 0 is the class of paths through a Whole window.
_SMIN, _EMAX, _WMIN, _WMAX, _CMIN, _CMAX = range(6)


@dataclass
class _AxisPaths:
    classes: dict[Jump, list[int]] | None  # None: irregular (some window is not affine)
    jumps: frozenset[Jump]
    whole: bool


def _merge(into: dict[Jump, list[int]], jump: Jump, b: list[int]) -> None:
    old = into.get(jump)
    if old is None:
        into[jump] = list(b)
        return
    for i in (_SMIN, _WMIN, _CMIN):
        old[i] = min(old[i], b[i])
    for i in (_EMAX, _WMAX, _CMAX):
        old[i] = max(old[i], b[i])


def _through(paths: _AxisPaths, window: Window) -> _AxisPaths:
    if type(window) is Conv and window.kernel == window.stride == 1 and window.offset == 0:
        return paths  # the identity (activations, norms, 1x1 convolutions): unchanged
    whole = paths.whole or window.is_global
    scale = window.scale
    if isinstance(scale, int):
        jumps = frozenset(j * scale for j in paths.jumps)
    else:
        jumps = frozenset(_jump(Fraction(j) * scale) for j in paths.jumps)
    if paths.classes is None:
        return _AxisPaths(None, jumps, whole)
    out: dict[Jump, list[int]] = {}
    aff = window.affine()
    for j, b in paths.classes.items():
        if j == 0:
            _merge(out, 0, b)
            continue
        if isinstance(window, Whole):
            grow = int(j) * (window.size - 1)
            _merge(
                out,
                0,
                [
                    b[_SMIN],
                    b[_EMAX] + grow,
                    b[_WMIN] + grow,
                    b[_WMAX] + grow,
                    b[_CMIN] + grow,
                    b[_CMAX] + grow,
                ],
            )
            continue
        if aff is None:
            return _AxisPaths(None, jumps, whole)
        k, s, d, off = aff
        a, ext = int(j) * off, int(j) * (k - 1) * d
        _merge(
            out,
            int(j) * s,
            [
                b[_SMIN] + a,
                b[_EMAX] + a + ext,
                b[_WMIN] + ext,
                b[_WMAX] + ext,
                b[_CMIN] + 2 * a + ext,
                b[_CMAX] + 2 * a + ext,
            ],
        )
    return _AxisPaths(out, jumps, whole)


class _Axes:
    """``padding``, ``local_padding`` and ``is_global`` from the stored fields."""

    start: tuple[int, ...]
    global_axes: tuple[bool, ...]
    local_start: tuple[int | None, ...] | None

    @property
    def padding(self) -> tuple[int, ...]:
        """Effective padding per axis (Araujo et al.): how far unit 0's box starts before
        the input, ``-start``."""
        return tuple(-s for s in self.start)

    @property
    def local_padding(self) -> tuple[int | None, ...] | None:
        """Effective padding of the local paths (those through no global op), per axis."""
        if self.local_start is None:
            return None
        return tuple(None if s is None else -s for s in self.local_start)

    @property
    def is_global(self) -> bool:
        """Whether some op (global pooling, Linear, ...) reads a whole input axis."""
        return any(self.global_axes)


@dataclass(frozen=True)
class LayerRF(_Axes):
    """One row of the per-layer table: the receptive field of one node's output.

    ``receptive_field``, ``stride`` (jump) and ``start`` are per input axis; ``start``
    is the first input position read by unit 0 (``-padding``).  On a *global* axis
    (some op read it whole) they describe the input positions really read (the whole
    input, normally); ``unbounded_receptive_field`` is the hull of every path on an
    unbounded input, and ``local_receptive_field``/``local_start`` are those of the
    local paths only (through no global op; None on an axis without one).
    ``min_receptive_field``, ``max_path_receptive_field`` and ``aligned`` are over the
    local paths; they are None where a non-convolutional window (upsampling, irregular
    adaptive pool, measured op) makes them undefined, per axis where no local path
    exists.
    """

    name: str
    op: str
    shape: tuple[int, ...] | None
    receptive_field: tuple[int, ...]
    stride: tuple[Jump, ...]
    start: tuple[int, ...]
    min_receptive_field: tuple[int | None, ...] | None
    max_path_receptive_field: tuple[int | None, ...] | None
    aligned: bool | None
    global_axes: tuple[bool, ...]
    exact: bool
    measured: bool
    unbounded_receptive_field: tuple[int, ...] | None = None
    local_receptive_field: tuple[int | None, ...] | None = None
    local_start: tuple[int | None, ...] | None = None
    min_unit_receptive_field: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready row."""
        return {
            "name": self.name,
            "op": self.op,
            "shape": None if self.shape is None else list(self.shape),
            "receptive_field": list(self.receptive_field),
            "stride": [_json_jump(j) for j in self.stride],
            "start": list(self.start),
            "padding": list(self.padding),
            "min_receptive_field": _json_list(self.min_receptive_field),
            "max_path_receptive_field": _json_list(self.max_path_receptive_field),
            "unbounded_receptive_field": _json_list(self.unbounded_receptive_field),
            "min_unit_receptive_field": _json_list(self.min_unit_receptive_field),
            "local_receptive_field": _json_list(self.local_receptive_field),
            "local_padding": _json_list(self.local_padding),
            "aligned": self.aligned,
            "global": list(self.global_axes),
            "exact": self.exact,
            "measured": self.measured,
        }


def _json_jump(j: Jump) -> int | str:
    return j if isinstance(j, int) else f"{j.numerator}/{j.denominator}"


def _json_list(values: tuple[int | None, ...] | None) -> list[int | None] | None:
    return None if values is None else list(values)


def _unclipped_box(classes: Mapping[Jump, list[int]], unit: int) -> tuple[int, int]:
    starts = [b[_SMIN] + int(j) * unit for j, b in classes.items()]
    stops = [b[_EMAX] + int(j) * unit + 1 for j, b in classes.items()]
    return min(starts), max(stops)


def _edge_bounds(
    window: Window,
    a: int,
    b: int,
    src_start: int,
    src_lo: np.ndarray,
    src_hi: np.ndarray,
    size: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The extremes of what units ``a..b-1`` read through ``window`` from a source whose
    units ``src_start, ...`` have the extremes ``src_lo``, ``src_hi``.

    ``size`` is the source extent: positions outside it are padding (dropped, or folded
    for reflect/replicate/circular windows).  ``size=None``: an unbounded input, the
    source arrays cover every position read.
    """
    n = b - a
    count = len(src_lo)
    if isinstance(window, Whole):
        return (
            np.full(n, src_lo[-src_start : window.size - src_start].min(initial=_NONE)),
            np.full(n, src_hi[-src_start : window.size - src_start].max(initial=-_NONE)),
        )
    zeros = size is None or window.pad_mode is PadMode.ZEROS
    if isinstance(window, Conv) and zeros:
        k, stride, d, offset = window.affine()
        if (k, stride, d, offset) == (1, 1, 1, 0) and (a, b) == (src_start, src_start + count):
            return src_lo, src_hi  # the identity (activations, norms, additions...)
        if stride > 0 and k <= _TAP_LOOP:
            # one strided slice per tap: the units whose tap falls inside the source
            lo = np.full(n, _NONE, dtype=np.int64)
            hi = np.full(n, -_NONE, dtype=np.int64)
            for t in range(k):
                base = a * stride + offset + t * d - src_start  # unit a reads index base
                u0 = max(0, -(base // stride))
                u1 = min(n, (count - 1 - base) // stride + 1)
                if u1 > u0:
                    read = slice(u0 * stride + base, (u1 - 1) * stride + base + 1, stride)
                    np.minimum(lo[u0:u1], src_lo[read], out=lo[u0:u1])
                    np.maximum(hi[u0:u1], src_hi[read], out=hi[u0:u1])
            return lo, hi
    units = np.arange(a, b, dtype=np.int64)
    lo = np.full(n, _NONE, dtype=np.int64)
    hi = np.full(n, -_NONE, dtype=np.int64)
    which, found = window.pairs(units)
    if size is not None:
        which, found = _fold_pairs(which, found, size, window.pad_mode)
    index = found - src_start
    inside = (index >= 0) & (index < count)
    which, index = which[inside], index[inside]
    np.minimum.at(lo, which, src_lo[index])
    np.maximum.at(hi, which, src_hi[index])
    return lo, hi


class _Analysis:
    """The forward algebra of a whole graph, and the rows built from it."""

    def __init__(self, graph: RFGraph) -> None:
        self.graph = graph
        self.paths: dict[str, tuple[_AxisPaths, ...]] = {}
        self._clipped: dict[int, dict[str, tuple[int, np.ndarray, np.ndarray]]] = {}
        self._unbounded: dict[int, dict[str, tuple[int, np.ndarray, np.ndarray]]] = {}
        self._unbounded_local: dict[int, dict[str, tuple[int, np.ndarray, np.ndarray]]] = {}
        self._rows: dict[tuple[int, ...], tuple[Any, ...]] = {}
        self.exact: dict[str, bool] = {}
        for node in graph.nodes.values():
            if node.name == graph.input:
                self.paths[node.name] = tuple(
                    _AxisPaths({1: [0, 0, 0, 0, 0, 0]}, frozenset({1}), False)
                    for _ in range(graph.ndim)
                )
                self.exact[node.name] = True
                continue
            axes = []
            for axis in range(graph.ndim):
                if len(node.edges) == 1:
                    # shared with the source when the window is the identity (never
                    # changed in place: merges always go into a new dict)
                    edge = node.edges[0]
                    axes.append(_through(self.paths[edge.source][axis], edge.windows[axis]))
                    continue
                classes: dict[Jump, list[int]] | None = {}
                jumps: set[Jump] = set()
                whole = False
                for edge in node.edges:
                    p = _through(self.paths[edge.source][axis], edge.windows[axis])
                    jumps |= p.jumps
                    whole |= p.whole
                    if p.classes is None or classes is None:
                        classes = None
                    else:
                        for j, b in p.classes.items():
                            _merge(classes, j, b)
                axes.append(_AxisPaths(classes, frozenset(jumps), whole))
            self.paths[node.name] = tuple(axes)
            self.exact[node.name] = not node.measured and all(
                self.exact[e.source] for e in node.edges
            )

    def box(self, name: str, unit: Sequence[int], clip: bool) -> tuple[tuple[int, int], ...]:
        """Half-open input box ``(start, stop)`` per axis read by ``unit`` of ``name``."""
        paths = self.paths[name]
        if not clip and all(p.classes for p in paths):
            # convolution windows never read nothing: each axis is exact on its own
            return tuple(
                _unclipped_box(p.classes, u)  # type: ignore[arg-type]
                for p, u in zip(paths, unit, strict=True)
            )
        support = unit_support(self.graph, name, unit, clip)
        return tuple((int(s[0]), int(s[-1]) + 1) if len(s) else (0, 0) for s in support)

    def clipped(self, name: str, axis: int) -> tuple[np.ndarray, np.ndarray]:
        """First and last *real* input position (clipped, folded) read by every unit of
        ``name`` along ``axis`` (``lo > hi``: the unit reads nothing).

        A forward pass over the graph, memoised per axis: a unit's support is the union
        of the supports of the source units it reads, so its extremes are the extremes
        of theirs.
        """
        memo = self._clipped.setdefault(axis, {})
        if name not in memo:
            # nodes are in topological order: continue where the last call stopped
            nodes = list(self.graph.nodes.values())
            for node in nodes[len(memo) :]:
                memo[node.name] = self._forward_node(node, axis, memo, None)
                if node.name == name:
                    break
        _, lo, hi = memo[name]
        return lo, hi

    def unbounded(self, name: str, axis: int, local: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """First and last input position read by every unit of ``name`` along ``axis``
        on an unbounded input (padding positions count; ``lo > hi``: reads nothing).

        Every node gets its units over a range wide enough for what the nodes after it
        read beyond its border (one backward pass over the ranges), then one forward
        pass gives the extremes of every unit of every node: O(n) window operations
        for the whole table, whatever windows the graph holds.  With ``local`` only the
        paths through no global window count (the local field of a model with global
        branches, such as DeepLabV3's image pooling).
        """
        memos = self._unbounded_local if local else self._unbounded
        memo = memos.get(axis)
        if memo is None:
            ranges = self._ranges(axis)
            memo = {}
            for node in self.graph.nodes.values():
                memo[node.name] = self._forward_node(
                    node, axis, memo, ranges[node.name], local=local
                )
            memos[axis] = memo
        start, lo, hi = memo[name]
        n = self.graph.nodes[name].extents[axis]
        return lo[-start : n - start], hi[-start : n - start]

    def _ranges(self, axis: int) -> dict[str, tuple[int, int]]:
        """The units ``[a, b)`` of every node whose unbounded extremes are needed: its
        own grid and what the nodes that read it read beyond its border."""
        need = {name: (0, node.extents[axis]) for name, node in self.graph.nodes.items()}
        for node in reversed(list(self.graph.nodes.values())):
            a, b = need[node.name]
            units = np.arange(a, b, dtype=np.int64)
            for edge in node.edges:
                lo, hi = edge.windows[axis].bounds(units)
                read = lo <= hi
                if read.any():
                    sa, sb = need[edge.source]
                    need[edge.source] = (
                        min(sa, int(lo[read].min())),
                        max(sb, int(hi[read].max()) + 1),
                    )
        return need

    def _forward_node(
        self,
        node: Node,
        axis: int,
        memo: dict[str, tuple[int, np.ndarray, np.ndarray]],
        units: tuple[int, int] | None,
        local: bool = False,
    ) -> tuple[int, np.ndarray, np.ndarray]:
        """``(start, lo, hi)`` for the units ``start, start+1, ...`` of ``node``: its own
        grid, clipped to real positions (``units=None``), or the range ``units`` on an
        unbounded input."""
        a, b = (0, node.extents[axis]) if units is None else units
        if node.name == self.graph.input:
            positions = np.arange(a, b, dtype=np.int64)
            return a, positions, positions.copy()
        if not node.edges:
            return a, np.full(b - a, _NONE, dtype=np.int64), np.full(b - a, -_NONE, dtype=np.int64)
        lo = hi = None
        for edge in node.edges:
            if local and edge.windows[axis].is_global:
                continue
            e_lo, e_hi = _edge_bounds(
                edge.windows[axis],
                a,
                b,
                *memo[edge.source],
                self.graph.nodes[edge.source].extents[axis] if units is None else None,
            )
            if lo is None or hi is None:
                lo, hi = e_lo, e_hi  # may be the source's own arrays: never changed in place
            else:
                lo, hi = np.minimum(lo, e_lo), np.maximum(hi, e_hi)
        if lo is None or hi is None:  # every edge is global: no local path
            return a, np.full(b - a, _NONE, dtype=np.int64), np.full(b - a, -_NONE, dtype=np.int64)
        return a, lo, hi

    @staticmethod
    def _local_axis(p: _AxisPaths, n: int) -> tuple[Any, ...]:
        """The row quantities of one axis with path classes, over ``n`` units:
        ``(stride, rf, start, local_rf, local_start, min_rf, max_rf, misaligned)``."""
        classes = p.classes
        assert classes
        local = sorted((j for j in p.jumps if j != 0), reverse=True)
        first = _unclipped_box(classes, 0)
        last = _unclipped_box(classes, n - 1)
        rf = max(first[1] - first[0], last[1] - last[0])
        start = first[0]
        # the path quantities are those of the local paths (not through a
        # global op): on an unbounded input they do not depend on its size
        nonglobal = classes
        if 0 in nonglobal:
            nonglobal = {j: b for j, b in classes.items() if j != 0}
        local_rf: int | None
        local_start: int | None
        if nonglobal is classes:
            local_rf, local_start = rf, start
        elif nonglobal:
            a, b = _unclipped_box(nonglobal, 0)
            c, d = _unclipped_box(nonglobal, n - 1)
            local_rf, local_start = max(b - a, d - c), a
        else:
            local_rf = local_start = None
        widths = nonglobal.values()
        return (
            local[0] if local else 0,
            rf,
            start,
            local_rf,
            local_start,
            min(b[_WMIN] for b in widths) + 1 if nonglobal else None,
            max(b[_WMAX] for b in widths) + 1 if nonglobal else None,
            len(nonglobal) > 1 or any(b[_CMIN] != b[_CMAX] for b in widths),
        )

    def row(self, name: str) -> LayerRF:
        node = self.graph.nodes[name]
        paths = self.paths[name]
        # Nodes with the same paths (a convolution, its norm, its activation...) on the
        # same grid have the same row, but for a global axis (read per node).
        key = (*map(id, paths), *node.extents)
        fields = self._rows.get(key)
        if fields is None:
            fields = self._fields(name, node, paths)
            if all(p.classes and not p.whole for p in paths):
                self._rows[key] = fields
        (rf, stride, start, min_rf, max_rf, aligned, whole, hull, local_rf, local_start, units) = (
            fields
        )
        return LayerRF(
            name=name,
            op=node.op,
            shape=node.shape,
            receptive_field=rf,
            stride=stride,
            start=start,
            min_receptive_field=min_rf,
            max_path_receptive_field=max_rf,
            aligned=aligned,
            global_axes=whole,
            exact=self.exact[name],
            measured=node.measured,
            unbounded_receptive_field=hull,
            local_receptive_field=local_rf,
            local_start=local_start,
            min_unit_receptive_field=units,
        )

    def _fields(self, name: str, node: Node, paths: tuple[_AxisPaths, ...]) -> tuple[Any, ...]:
        """The per-axis fields of the row of ``name``: ``(receptive_field, stride, start,
        min_receptive_field, max_path_receptive_field, aligned, global_axes,
        unbounded_receptive_field, local_receptive_field, local_start,
        min_unit_receptive_field)``."""
        rf: list[int] = []
        start: list[int] = []
        stride: list[Jump] = []
        hull: list[int] = []
        min_rf: list[int | None] | None = []
        max_rf: list[int | None] | None = []
        local_rf: list[int | None] = []
        local_start: list[int | None] = []
        unit_min: list[int] = []
        aligned: bool | None = True
        for axis, p in enumerate(paths):
            n = node.extents[axis]
            if not p.classes:
                local = sorted((j for j in p.jumps if j != 0), reverse=True)
                stride.append(local[0] if local else 0)
                lo, hi = self.unbounded(name, axis)
                spans = np.where(lo <= hi, hi - lo + 1, 0)
                rf.append(int(spans.max()))
                unit_min.append(int(spans[lo <= hi].min()) if (lo <= hi).any() else 0)
                start.append(int(lo[0]) if lo[0] <= hi[0] else 0)
                if p.whole:
                    lo, hi = self.unbounded(name, axis, local=True)
                    read = lo <= hi
                    spans = np.where(read, hi - lo + 1, 0)
                    local_rf.append(int(spans.max()) if read.any() else None)
                    local_start.append(int(lo[0]) if read.any() and read[0] else None)
                else:
                    local_rf.append(rf[-1])
                    local_start.append(start[-1])
                min_rf = max_rf = None
                aligned = None
            else:
                jump, size, first, lrf, lstart, low, high, misaligned = self._local_axis(p, n)
                stride.append(jump)
                rf.append(size)
                unit_min.append(size)
                start.append(first)
                local_rf.append(lrf)
                local_start.append(lstart)
                if min_rf is not None and max_rf is not None:
                    min_rf.append(low)
                    max_rf.append(high)
                if aligned is not None and misaligned:
                    aligned = False
            hull.append(rf[-1])
            if p.whole:
                # a global axis: what the units really read, inside the input
                lo, hi = self.clipped(name, axis)
                read = lo <= hi
                rf[-1] = int((hi - lo + 1)[read].max()) if read.any() else 0
                start[-1] = int(lo[0]) if read[0] else 0
        return (
            tuple(rf),
            tuple(stride),
            tuple(start),
            None if min_rf is None else tuple(min_rf),
            None if max_rf is None else tuple(max_rf),
            aligned,
            tuple(p.whole for p in paths),
            tuple(hull),
            tuple(local_rf),
            tuple(local_start),
            tuple(unit_min),
        )


# -- the result -------------------------------------------------------------------------


def _normalise_unit(
    unit: Sequence[int] | int | None, extents: tuple[int, ...], name: str
) -> tuple[int, ...]:
    if unit is None:
        return tuple(n // 2 for n in extents)
    if isinstance(unit, (int, np.integer)) and not isinstance(unit, bool):
        units: tuple[int, ...] = (int(unit),)
    else:
        units = tuple(unit)  # type: ignore[arg-type]
    spatial = [a for a, n in enumerate(extents) if n > 1]
    if len(units) == len(spatial) and len(spatial) < len(extents):
        full = [0] * len(extents)
        for a, u in zip(spatial, units, strict=True):
            full[a] = u
        units = tuple(full)
    if len(units) != len(extents):
        raise InvalidSpecError(
            f"unit needs {len(extents)} indices (one per spatial axis of {name!r}, whose grid "
            f"is {list(extents)}), got {list(units)}"
        )
    for u, n in zip(units, extents, strict=True):
        if not isinstance(u, (int, np.integer)) or isinstance(u, bool) or not 0 <= u < n:
            raise InvalidSpecError(
                f"unit {list(units)} is outside the output grid {list(extents)} of {name!r}"
            )
    return tuple(int(u) for u in units)


@dataclass(frozen=True)
class ReceptiveField(_Axes):
    """The receptive field of one node of a model, per spatial axis of the input.

    ``receptive_field`` is the extent of the input box read by one output unit (the
    largest receptive field over all paths when they are aligned), ``stride`` the
    effective stride (jump), ``padding`` the effective padding (Araujo et al.), i.e.
    unit ``u`` reads ``[u*stride - padding, u*stride - padding + receptive_field)``.
    On a global axis (``global_axes``: global pooling, ``Linear`` after ``flatten``, a
    squeeze-excitation gate...) the unit reads the whole input instead:
    ``receptive_field`` and ``padding`` are then those of the positions really read
    (the input size and 0, normally), ``unbounded_receptive_field`` is the hull of all
    paths on an unbounded input, and ``local_receptive_field``/``local_padding`` those
    of the paths through no global op (None if there is none).
    ``layers`` is the per-layer table.  Use :meth:`input_box` for the exact box of any
    unit, inside the image or not.
    """

    node: str
    input_size: tuple[int, ...]
    shape: tuple[int, ...] | None
    grid: tuple[int, ...]
    receptive_field: tuple[int, ...]
    stride: tuple[Jump, ...]
    start: tuple[int, ...]
    min_receptive_field: tuple[int | None, ...] | None
    max_path_receptive_field: tuple[int | None, ...] | None
    aligned: bool | None
    global_axes: tuple[bool, ...]
    exact: bool
    layers: tuple[LayerRF, ...]
    outputs: tuple[str, ...] = ()
    measured_nodes: tuple[str, ...] = ()
    method: str = "analytic"
    notes: tuple[str, ...] = ()
    unbounded_receptive_field: tuple[int, ...] | None = None
    local_receptive_field: tuple[int | None, ...] | None = None
    local_start: tuple[int | None, ...] | None = None
    min_unit_receptive_field: tuple[int, ...] | None = None
    _boxer: Callable[[tuple[int, ...], bool], tuple[tuple[int, int], ...]] | None = field(
        default=None, repr=False, compare=False
    )
    _aliases: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.receptive_field)

    def input_box(
        self, unit: Sequence[int] | int | None = None, clip: bool = True
    ) -> tuple[tuple[int, int], ...]:
        """Half-open input box ``(start, stop)`` per axis that output ``unit`` reads.

        ``unit`` indexes the node's spatial grid (default: its centre).  With
        ``clip=True`` the box is that of the input positions the unit really depends
        on (inside the image; exactly the gradient's support when no path cancels);
        with ``clip=False`` it is the box on an unbounded input, which may start
        before 0 or end after the image.
        """
        units = _normalise_unit(unit, self.grid, self.node)
        if self._boxer is None:  # pragma: no cover - results are always built with one
            raise InvalidSpecError("this result has no graph to compute boxes from")
        return self._boxer(units, clip)

    def layer(self, name: str) -> LayerRF:
        """The table row of node ``name`` (or of the node a module name stands for)."""
        for row in self.layers:
            if row.name == name:
                return row
        alias = self._aliases.get(name)
        if alias is not None:
            for row in self.layers:
                if row.name == alias:
                    return row
        names = ", ".join(r.name for r in self.layers)
        raise InvalidSpecError(f"no layer named {name!r}; layers: {names}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (``--json``): summary fields and the per-layer table."""
        return {
            "node": self.node,
            "input_size": list(self.input_size),
            "shape": None if self.shape is None else list(self.shape),
            "grid": list(self.grid),
            "receptive_field": list(self.receptive_field),
            "stride": [_json_jump(j) for j in self.stride],
            "padding": list(self.padding),
            "start": list(self.start),
            "min_receptive_field": _json_list(self.min_receptive_field),
            "max_path_receptive_field": _json_list(self.max_path_receptive_field),
            "unbounded_receptive_field": _json_list(self.unbounded_receptive_field),
            "min_unit_receptive_field": _json_list(self.min_unit_receptive_field),
            "local_receptive_field": _json_list(self.local_receptive_field),
            "local_padding": _json_list(self.local_padding),
            "aligned": self.aligned,
            "is_global": self.is_global,
            "global_axes": list(self.global_axes),
            "exact": self.exact,
            "method": self.method,
            "outputs": list(self.outputs),
            "measured_nodes": list(self.measured_nodes),
            "notes": list(self.notes),
            "layers": [row.to_dict() for row in self.layers],
        }

    def __str__(self) -> str:
        return format_table(self)

    def _repr_html_(self) -> str:
        from .report import receptive_html

        return receptive_html(self)


def graph_rf(
    graph: RFGraph,
    node: str | None = None,
    *,
    method: str = "analytic",
    notes: Sequence[str] = (),
    aliases: Mapping[str, str] | None = None,
) -> ReceptiveField:
    """Analyse ``graph`` and return the receptive field of ``node`` (default: the output).

    The per-layer table holds every node ``node`` depends on, in graph order;
    ``aliases`` (module name -> node) let :meth:`ReceptiveField.layer` find rows by the
    names a user knows.
    """
    name = graph.output if node is None else node
    if name not in graph.nodes:
        raise InvalidSpecError(f"no node named {name!r} in the graph")
    analysis = _Analysis(graph)
    needed = set(graph.ancestors(name))
    rows = tuple(analysis.row(n) for n in graph.nodes if n in needed)
    top = rows[-1]
    measured = tuple(r.name for r in rows if r.measured)

    def boxer(unit: tuple[int, ...], clip: bool) -> tuple[tuple[int, int], ...]:
        return analysis.box(name, unit, clip)

    return ReceptiveField(
        node=name,
        input_size=graph.input_size,
        shape=top.shape,
        grid=graph.nodes[name].extents,
        receptive_field=top.receptive_field,
        stride=top.stride,
        start=top.start,
        min_receptive_field=top.min_receptive_field,
        max_path_receptive_field=top.max_path_receptive_field,
        aligned=top.aligned,
        global_axes=top.global_axes,
        exact=top.exact,
        layers=rows,
        outputs=graph.outputs,
        measured_nodes=measured,
        method=method if not measured else "mixed",
        notes=tuple(notes),
        unbounded_receptive_field=top.unbounded_receptive_field,
        local_receptive_field=top.local_receptive_field,
        local_start=top.local_start,
        min_unit_receptive_field=top.min_unit_receptive_field,
        _boxer=boxer,
        _aliases=dict(aliases or {}),
    )


# -- plain stacks of ConvLayer ----------------------------------------------------------


def layers_graph(layers: Sequence[ConvLayer], size: int | Sequence[int]) -> RFGraph:
    """The chain graph of a stack of :class:`~rfmap.specs.ConvLayer` on an input of ``size``.

    >>> from rfmap.specs import conv_stack
    >>> layers_graph(conv_stack([1, 2]), 9)
    RFGraph(3 nodes, input [9, 9], outputs ['layer2'])
    """
    layers = tuple(layers)
    if not layers:
        raise InvalidSpecError("the stack must have at least one layer")
    ndim = layers[0].ndim
    sizes = (size,) * ndim if isinstance(size, (int, np.integer)) else tuple(size)
    if len(sizes) != ndim or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in sizes):
        raise InvalidSpecError(f"size must be {ndim} positive integers, got {size!r}")
    grids = output_sizes(layers, tuple(int(s) for s in sizes))
    nodes = [Node("input", "input", grids[0], shape=grids[0])]
    for i, layer in enumerate(layers):
        windows = tuple(
            Conv(layer.kernel_size[a], layer.stride[a], layer.dilation[a], -layer.pad(a)[0])
            for a in range(ndim)
        )
        nodes.append(
            Node(
                f"layer{i + 1}",
                "conv",
                grids[i + 1],
                (Edge(nodes[-1].name, windows),),
                grids[i + 1],
            )
        )
    return RFGraph(nodes)


def layers_rf(layers: Sequence[ConvLayer], size: int | Sequence[int]) -> ReceptiveField:
    """Receptive field of a stack of :class:`~rfmap.specs.ConvLayer` (no torch needed).

    >>> from rfmap.specs import conv_stack
    >>> r = layers_rf(conv_stack([1, 1], stride=[2, 1], padding=1), size=16)
    >>> r.receptive_field, r.stride, r.padding, r.grid
    ((7, 7), (2, 2), (3, 3), (8, 8))
    """
    return graph_rf(layers_graph(layers, size))


def format_table(result: ReceptiveField, all_rows: bool = True) -> str:
    """The summary and the per-layer table as aligned text (see :mod:`rfmap.report`)."""
    from .report import format_receptive_field

    return format_receptive_field(result, all_rows)


Box = tuple[tuple[int, int], ...]


def measured_receptive_field(
    node: str,
    spatial: Sequence[int],
    shape: tuple[int, ...] | None,
    grid: tuple[int, ...],
    box: Callable[[tuple[int, ...] | None], Box],
    *,
    how: str,
    reason: str = "",
) -> ReceptiveField:
    """A :class:`ReceptiveField` of ``node`` measured as a whole, from ``box(unit)``: the
    input box a unit of ``grid`` reads (``grid == ()``: the output has no grid, and
    ``box(None)`` is the box of the whole output).

    Per axis, the centre unit and its neighbour give the receptive field, the stride and
    the padding.  These are exact when the centre unit's box lies inside the input;
    where it touches the border the receptive field is only a lower bound, which
    ``notes`` says.  ``how`` ("with the gradient", "by perturbation") ends up in the
    error for unclipped boxes, which a measurement does not know.
    """
    spatial = tuple(int(n) for n in spatial)
    ndim = len(spatial)
    full = grid if grid else (1,) * ndim
    centre = tuple(n // 2 for n in full)
    base = box(centre if grid else None)
    notes = [reason] if reason else []
    rf: list[int] = []
    stride: list[Jump] = []
    start: list[int] = []
    global_axes: list[bool] = []
    for axis in range(ndim):
        lo, hi = base[axis]
        rf.append(hi - lo)
        jump: Jump = 0
        step_known = True
        if grid and full[axis] > 1:
            other = list(centre)
            other[axis] = centre[axis] - 1 if centre[axis] + 1 >= full[axis] else centre[axis] + 1
            lo2, hi2 = box(tuple(other))[axis]
            step = other[axis] - centre[axis]
            jump = _jump(Fraction((lo2 - lo) if lo > 0 and lo2 > 0 else (hi2 - hi), step))
            # both boxes cut by the border at both ends: their shift is not the stride
            step_known = (lo > 0 and lo2 > 0) or (hi < spatial[axis] and hi2 < spatial[axis])
        stride.append(jump)
        start.append(int(lo - centre[axis] * jump))
        global_axes.append(not grid or (full[axis] == 1 and (lo, hi) == (0, spatial[axis])))
        if (lo == 0 or hi == spatial[axis]) and not global_axes[-1]:
            what = "receptive field and padding are lower bounds"
            if not step_known:
                what += " and the stride is unknown"
            notes.append(
                f"axis {axis}: the measured box [{lo}, {hi}) touches the input border, so the "
                f"{what}; measure on a larger input"
            )
    row = LayerRF(
        name=node,
        op="measured",
        shape=shape,
        receptive_field=tuple(rf),
        stride=tuple(stride),
        start=tuple(start),
        min_receptive_field=None,
        max_path_receptive_field=None,
        aligned=None,
        global_axes=tuple(global_axes),
        exact=False,
        measured=True,
    )

    def boxer(unit: tuple[int, ...], clip: bool) -> Box:
        if not clip:
            raise InvalidSpecError(
                f"this receptive field was measured {how}, so only boxes inside the input "
                "(clip=True) are known"
            )
        return box(unit if grid else None)

    return ReceptiveField(
        node=node,
        input_size=spatial,
        shape=shape,
        grid=full,
        receptive_field=row.receptive_field,
        stride=row.stride,
        start=row.start,
        min_receptive_field=None,
        max_path_receptive_field=None,
        aligned=None,
        global_axes=row.global_axes,
        exact=False,
        layers=(row,),
        outputs=(node,),
        measured_nodes=(node,),
        method="measured",
        notes=tuple(notes),
        _boxer=boxer,
    )
