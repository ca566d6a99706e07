"""Analytic receptive fields of a layer graph (pure Python and numpy; no torch).

A model is a directed acyclic graph of nodes.  Each edge says, separately for every
spatial axis of the input, which positions of the source node one unit of the target
node reads: a :class:`Window`.  Convolutions, pools, slices, paddings and broadcasts are
:class:`Conv` windows (unit ``u`` reads ``u*stride + offset + t*dilation`` for
``t < kernel``); transposed convolutions, resampling and adaptive pools have their own
windows; :class:`Whole` reads every position (global pooling, ``Linear`` after
``flatten``); :class:`Table` holds windows that were measured with the gradient.

Two independent computations run on that graph:

* a forward algebra over paths (Araujo et al., Distill 2019, extended to DAGs): per
  axis the effective stride (jump), the box of output unit 0 (start, receptive field,
  effective padding), the smallest and largest receptive field over all paths and
  whether all paths are aligned -- exact integers, in one pass over the graph;
* an exact backward propagation of the input positions that one output unit reads,
  with or without the image border (:func:`unit_support`), which also covers the
  windows the algebra cannot express (fractional strides, irregular adaptive pools).

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

import enum
import html
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Union

import numpy as np

from .errors import InvalidSpecError
from .specs import ConvLayer, output_sizes

__all__ = [
    "Adaptive",
    "Conv",
    "Edge",
    "LayerRF",
    "Node",
    "PadMode",
    "RFGraph",
    "ReceptiveField",
    "Resample",
    "Table",
    "Transposed",
    "Whole",
    "Window",
    "format_table",
    "graph_rf",
    "layers_graph",
    "layers_rf",
    "support_mask",
    "unit_bounds",
    "unit_support",
]

#: A jump (effective stride): an int, or a Fraction after upsampling.
Jump = Union[int, Fraction]  # noqa: UP007 (a runtime alias on Python 3.10)

_EMPTY = np.zeros(0, dtype=np.int64)
#: Marks an empty window in :meth:`Window.bounds` (``lo = _NONE``, ``hi = -_NONE``).
_NONE = 2**62
#: Largest kernel whose clipped bounds are taken one tap at a time (else all at once).
_TAP_LOOP = 64


class PadMode(str, enum.Enum):
    """What a window reads outside its source: nothing (zeros) or a folded position."""

    ZEROS = "zeros"
    REFLECT = "reflect"
    REPLICATE = "replicate"
    CIRCULAR = "circular"


def _fold(positions: np.ndarray, size: int, mode: PadMode) -> np.ndarray:
    """Map positions onto ``[0, size)`` as the padding mode does (zeros: drop them)."""
    if mode is PadMode.ZEROS or len(positions) == 0:
        return positions[(positions >= 0) & (positions < size)]
    if mode is PadMode.REPLICATE:
        return np.clip(positions, 0, size - 1)
    if mode is PadMode.CIRCULAR:
        return np.mod(positions, size)
    if size == 1:
        return np.zeros_like(positions)
    period = 2 * (size - 1)
    folded = np.mod(positions, period)
    return np.where(folded > size - 1, period - folded, folded)


# -- windows ----------------------------------------------------------------------------


class Window:
    """How one unit of a node reads one spatial axis of a source node.

    ``pairs(units)`` lists which unit reads which source position (unbounded:
    positions outside the source are padding), ``pad_mode`` tells how the positions
    outside the source fold back into it, and ``scale`` is the number of source
    positions per unit step (the factor the jump is multiplied by).
    """

    pad_mode: PadMode = PadMode.ZEROS

    def pairs(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        """``(which, positions)``: unit ``units[which[i]]`` reads ``positions[i]``."""
        raise NotImplementedError

    def positions(self, units: np.ndarray) -> np.ndarray:
        """Every source position read by any of ``units`` (with repeats)."""
        return self.pairs(units)[1]

    @property
    def scale(self) -> Jump:  # pragma: no cover - abstract
        raise NotImplementedError

    def affine(self) -> tuple[int, int, int, int] | None:
        """``(kernel, stride, dilation, offset)`` when the window is a convolution's."""
        return None

    def bounds(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First and last source position read by each unit (``lo > hi``: reads nothing).

        Both are non-decreasing in the unit, which :func:`unit_bounds` relies on.
        """
        lo = np.full(len(units), _NONE, dtype=np.int64)
        hi = np.full(len(units), -_NONE, dtype=np.int64)
        which, found = self.pairs(units)
        np.minimum.at(lo, which, found)
        np.maximum.at(hi, which, found)
        return lo, hi

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Conv(Window):
    """Unit ``u`` reads ``u*stride + offset + t*dilation`` for ``0 <= t < kernel``.

    Covers convolutions and pools (``offset = -padding``), identities, slices
    (``stride`` = step), paddings and crops (``offset``), and broadcasts (``stride=0``).

    >>> Conv(3, 2, 1, -1).positions(np.array([0, 1])).tolist()
    [-1, 0, 1, 1, 2, 3]
    """

    kernel: int = 1
    stride: int = 1
    dilation: int = 1
    offset: int = 0
    pad_mode: PadMode = PadMode.ZEROS

    def pairs(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        taps = np.arange(self.kernel, dtype=np.int64) * self.dilation
        found = (units[:, None] * self.stride + self.offset + taps[None, :]).ravel()
        return np.repeat(np.arange(len(units)), self.kernel), found

    @property
    def scale(self) -> Jump:
        return self.stride

    def affine(self) -> tuple[int, int, int, int]:
        return self.kernel, self.stride, self.dilation, self.offset

    def bounds(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo = units * self.stride + self.offset
        return lo, lo + (self.kernel - 1) * self.dilation

    def describe(self) -> str:
        if (self.kernel, self.stride, self.offset) == (1, 1, 0):
            return "identity"
        parts = [f"k={self.kernel}", f"s={self.stride}"]
        if self.dilation != 1:
            parts.append(f"d={self.dilation}")
        if self.offset:
            parts.append(f"offset={self.offset}")
        if self.pad_mode is not PadMode.ZEROS:
            parts.append(self.pad_mode.value)
        return " ".join(parts)


IDENTITY = Conv()
BROADCAST = Conv(1, 0, 1, 0)


@dataclass(frozen=True)
class Transposed(Window):
    """A transposed convolution: unit ``u`` reads ``x`` if ``x*stride - padding + t*dilation == u``.

    >>> Transposed(4, 2, 1, 1).positions(np.array([0, 1, 2])).tolist()
    [0, -1, 1, 0, 1, 0]
    """

    kernel: int
    stride: int
    dilation: int = 1
    padding: int = 0

    def pairs(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        taps = np.arange(self.kernel, dtype=np.int64) * self.dilation
        num = units[:, None] + self.padding - taps[None, :]
        hit = num % self.stride == 0
        return np.nonzero(hit)[0], num[hit] // self.stride

    def bounds(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        taps = np.arange(self.kernel, dtype=np.int64) * self.dilation
        num = units[:, None] + self.padding - taps[None, :]
        hit = num % self.stride == 0
        x = num // self.stride
        return np.where(hit, x, _NONE).min(axis=1), np.where(hit, x, -_NONE).max(axis=1)

    @property
    def scale(self) -> Jump:
        return Fraction(1, self.stride)

    def describe(self) -> str:
        return f"transposed k={self.kernel} s={self.stride} p={self.padding}"


def _ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Concatenate ``range(a, b)`` for each pair."""
    lengths = np.maximum(stops - starts, 0)
    if lengths.sum() == 0:
        return _EMPTY
    base = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    return base + np.arange(int(lengths.sum()), dtype=np.int64)


@dataclass(frozen=True)
class Adaptive(Window):
    """Adaptive pooling: unit ``u`` reads ``[floor(u*n/m), ceil((u+1)*n/m))``.

    >>> Adaptive(5, 3).positions(np.array([0, 1, 2])).tolist()
    [0, 1, 1, 2, 3, 3, 4]
    """

    size_in: int
    size_out: int

    def pairs(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, m = self.size_in, self.size_out
        starts, stops = (units * n) // m, -((-(units + 1) * n) // m)
        which = np.repeat(np.arange(len(units)), np.maximum(stops - starts, 0))
        return which, _ranges(starts, stops)

    def bounds(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, m = self.size_in, self.size_out
        return (units * n) // m, -((-(units + 1) * n) // m) - 1

    @property
    def scale(self) -> Jump:
        return _jump(Fraction(self.size_in, self.size_out))

    def describe(self) -> str:
        return f"adaptive {self.size_in}->{self.size_out}"


class ResampleMode(str, enum.Enum):
    """Interpolation modes of :class:`Resample` (PyTorch's names)."""

    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    LINEAR = "linear"
    CUBIC = "cubic"


@dataclass(frozen=True)
class Resample(Window):
    """``F.interpolate`` along one axis: the source taps with a non-zero weight.

    ``ratio`` is PyTorch's source step per output unit (``1/scale_factor`` or
    ``size_in/size_out``; ``(size_in-1)/(size_out-1)`` with ``align_corners``).  Taps
    outside the source are clamped to its border, as PyTorch does.

    >>> Resample(4, 8, ResampleMode.LINEAR, Fraction(1, 2)).positions(np.arange(3)).tolist()
    [-1, 0, 0, 0, 1, 1]
    """

    size_in: int
    size_out: int
    mode: ResampleMode
    ratio: Fraction
    align_corners: bool = False
    pad_mode: PadMode = PadMode.REPLICATE

    def pairs(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p, q = self.ratio.numerator, self.ratio.denominator
        index = np.arange(len(units))
        if self.mode is ResampleMode.NEAREST:
            return index, (units * p) // q
        if self.mode is ResampleMode.NEAREST_EXACT:
            return index, ((2 * units + 1) * p) // (2 * q)
        if self.align_corners:
            num, den = units * p, q
        else:
            num, den = (2 * units + 1) * p - q, 2 * q
        x0 = num // den
        inexact = num % den != 0  # otherwise the other taps have weight 0
        taps = (1,) if self.mode is ResampleMode.LINEAR else (-1, 1, 2)
        which = np.concatenate([index, *(index[inexact] for _ in taps)])
        return which, np.concatenate([x0, *(x0[inexact] + t for t in taps)])

    def bounds(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p, q = self.ratio.numerator, self.ratio.denominator
        if self.mode is ResampleMode.NEAREST:
            x = (units * p) // q
            return x, x
        if self.mode is ResampleMode.NEAREST_EXACT:
            x = ((2 * units + 1) * p) // (2 * q)
            return x, x
        num, den = (units * p, q) if self.align_corners else ((2 * units + 1) * p - q, 2 * q)
        x0 = num // den
        inexact = (num % den != 0).astype(np.int64)
        if self.mode is ResampleMode.LINEAR:
            return x0, x0 + inexact
        return x0 - inexact, x0 + 2 * inexact

    @property
    def scale(self) -> Jump:
        """``size_in/size_out`` (``ratio`` may be rounded to float32, as in PyTorch)."""
        if self.align_corners:
            return _jump(self.ratio)
        return _jump(Fraction(self.size_in, self.size_out))

    def describe(self) -> str:
        return f"{self.mode.value} {self.size_in}->{self.size_out}"


@dataclass(frozen=True)
class Whole(Window):
    """Every unit reads all ``size`` positions of the source (global pooling, Linear)."""

    size: int

    def pairs(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        which = np.repeat(np.arange(len(units)), self.size)
        return which, np.tile(np.arange(self.size, dtype=np.int64), len(units))

    def bounds(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros_like(units), np.full_like(units, self.size - 1)

    @property
    def scale(self) -> Jump:
        return 0

    def describe(self) -> str:
        return f"whole {self.size}"


@dataclass(frozen=True)
class Table(Window):
    """Measured windows: ``windows[u]`` are the positions unit ``u`` reads (none outside)."""

    windows: tuple[tuple[int, ...], ...]

    def pairs(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.windows)
        which: list[int] = []
        found: list[int] = []
        for i, u in enumerate(units.tolist()):
            if 0 <= u < n:
                which += [i] * len(self.windows[u])
                found += self.windows[u]
        return np.array(which, dtype=np.int64), np.array(found, dtype=np.int64)

    @property
    def scale(self) -> Jump:
        """The most common step between the first (and last) positions of windows."""
        kept = [w for w in self.windows if w]
        steps = [min(b) - min(a) for a, b in itertools.pairwise(kept)]
        steps += [max(b) - max(a) for a, b in itertools.pairwise(kept)]
        if not steps:
            return 1
        return max(sorted(set(steps)), key=steps.count)

    def describe(self) -> str:
        return f"measured ({len(self.windows)} units)"


def _jump(value: Fraction) -> Jump:
    return int(value) if value.denominator == 1 else value


# -- the graph --------------------------------------------------------------------------


@dataclass(frozen=True)
class Edge:
    """One input of a node: the source node and one :class:`Window` per spatial axis."""

    source: str
    windows: tuple[Window, ...]


@dataclass(frozen=True)
class Node:
    """A node of an :class:`RFGraph`.

    ``extents`` is the number of units per input spatial axis (1 where the node has no
    such axis, e.g. after global pooling); ``shape`` is the tensor shape, for display;
    ``measured`` marks a node whose windows come from the gradient.
    """

    name: str
    op: str
    extents: tuple[int, ...]
    edges: tuple[Edge, ...] = ()
    shape: tuple[int, ...] | None = None
    measured: bool = False


class RFGraph:
    """A layer graph in topological order; the first node is the input.

    >>> conv = Node("conv", "conv", (8,), (Edge("x", (Conv(3, 1, 1, -1),)),))
    >>> g = RFGraph([Node("x", "input", (8,)), conv])
    >>> g.output, g.ndim
    ('conv', 1)
    """

    def __init__(self, nodes: Iterable[Node], outputs: Sequence[str] | None = None) -> None:
        self.nodes: dict[str, Node] = {}
        for node in nodes:
            if node.name in self.nodes:
                raise InvalidSpecError(f"duplicate node name {node.name!r}")
            for edge in node.edges:
                if edge.source not in self.nodes:
                    raise InvalidSpecError(
                        f"node {node.name!r} reads {edge.source!r}, which is not defined before it"
                    )
                if len(edge.windows) != len(node.extents):
                    raise InvalidSpecError(
                        f"node {node.name!r} has {len(edge.windows)} windows for "
                        f"{len(node.extents)} axes"
                    )
            self.nodes[node.name] = node
        if not self.nodes:
            raise InvalidSpecError("a graph needs at least an input node")
        names = list(self.nodes)
        self.input = names[0]
        self.outputs: tuple[str, ...] = tuple(outputs) if outputs else (names[-1],)
        for name in self.outputs:
            if name not in self.nodes:
                raise InvalidSpecError(f"output {name!r} is not a node of the graph")
        self._index = {name: i for i, name in enumerate(names)}

    @property
    def output(self) -> str:
        """The first output node."""
        return self.outputs[0]

    @property
    def ndim(self) -> int:
        """Number of spatial axes of the input."""
        return len(self.nodes[self.input].extents)

    @property
    def input_size(self) -> tuple[int, ...]:
        """Spatial size of the input."""
        return self.nodes[self.input].extents

    def ancestors(self, name: str) -> list[str]:
        """``name`` and every node it depends on, in reverse topological order."""
        seen = {name}
        stack = [name]
        while stack:
            for edge in self.nodes[stack.pop()].edges:
                if edge.source not in seen:
                    seen.add(edge.source)
                    stack.append(edge.source)
        return sorted(seen, key=self._index.__getitem__, reverse=True)

    def __len__(self) -> int:
        return len(self.nodes)

    def __repr__(self) -> str:
        return (
            f"RFGraph({len(self.nodes)} nodes, input {list(self.input_size)}, "
            f"outputs {list(self.outputs)})"
        )


# -- exact supports ---------------------------------------------------------------------


def _fold_pairs(
    which: np.ndarray, found: np.ndarray, size: int, mode: PadMode
) -> tuple[np.ndarray, np.ndarray]:
    """Fold read positions into a source of ``size`` (zeros: drop those outside)."""
    if mode is PadMode.ZEROS:
        keep = (found >= 0) & (found < size)
        return which[keep], found[keep]
    return which, _fold(found, size, mode)


def _through_axis(
    origin: tuple[int, ...], mask: np.ndarray, axis: int, window: Window, size: int | None
) -> tuple[tuple[int, ...], np.ndarray]:
    """Map a boolean set of units (``mask`` at ``origin``) to the positions they read.

    Only ``axis`` changes: the window acts on one axis, the others are carried along.
    ``size`` is the source extent for clipping (None: unbounded).
    """
    moved = np.moveaxis(mask, axis, 0)
    flat = moved.reshape(moved.shape[0], -1)
    rows = np.flatnonzero(flat.any(axis=1))
    which, found = window.pairs(rows + origin[axis])
    if size is not None:
        which, found = _fold_pairs(which, found, size, window.pad_mode)
    if len(found) == 0:
        return origin, np.zeros((0,) * mask.ndim, dtype=bool)
    lo = int(found.min())
    length = int(found.max()) - lo + 1
    incidence = np.zeros((length, len(rows)), dtype=np.float32)
    incidence[found - lo, which] = 1.0
    reached = (incidence @ flat[rows].astype(np.float32)) > 0
    out = np.moveaxis(reached.reshape(length, *moved.shape[1:]), 0, axis)
    return (*origin[:axis], lo, *origin[axis + 1 :]), out


def _union(parts: list[tuple[tuple[int, ...], np.ndarray]]) -> tuple[tuple[int, ...], np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    ndim = parts[0][1].ndim
    lo = tuple(min(o[a] for o, _ in parts) for a in range(ndim))
    hi = tuple(max(o[a] + m.shape[a] for o, m in parts) for a in range(ndim))
    out = np.zeros(tuple(b - a for a, b in zip(lo, hi, strict=True)), dtype=bool)
    for o, m in parts:
        index = tuple(slice(o[a] - lo[a], o[a] - lo[a] + m.shape[a]) for a in range(ndim))
        out[index] |= m
    return lo, out


def support_mask(
    graph: RFGraph, node: str, unit: Sequence[int], clip: bool = True
) -> tuple[tuple[int, ...], np.ndarray]:
    """The input positions output ``unit`` of ``node`` reads: ``(origin, boolean mask)``.

    ``mask[i, j, ...]`` is input position ``origin + (i, j, ...)``.  With ``clip=True``
    only real positions count: padding reads nothing (or folds back for
    reflect/replicate/circular padding) at every node, so this is exactly the support
    of ``d node[unit] / d input`` when no path cancels.  With ``clip=False`` the input
    is unbounded: every padding position counts as input.
    """
    ndim = graph.ndim
    pending: dict[str, list[tuple[tuple[int, ...], np.ndarray]]] = {
        node: [(tuple(int(u) for u in unit), np.ones((1,) * ndim, dtype=bool))]
    }
    for name in graph.ancestors(node):
        parts = pending.pop(name, None)
        if not parts:
            continue
        origin, mask = _union(parts)
        if name == graph.input:
            return origin, mask
        for edge in graph.nodes[name].edges:
            extents = graph.nodes[edge.source].extents
            o, m = origin, mask
            for axis in range(ndim):
                o, m = _through_axis(
                    o, m, axis, edge.windows[axis], extents[axis] if clip else None
                )
                if m.size == 0:
                    break
            if m.size:
                pending.setdefault(edge.source, []).append((o, m))
    return (0,) * ndim, np.zeros((0,) * ndim, dtype=bool)


def unit_support(
    graph: RFGraph, node: str, unit: Sequence[int], clip: bool = True
) -> tuple[np.ndarray, ...]:
    """Input positions, per axis, that output ``unit`` of ``node`` reads.

    The projections of :func:`support_mask` on each axis (all empty when the unit
    reads nothing).

    >>> from rfmap.specs import conv_stack
    >>> g = layers_graph(conv_stack([1, 2], ndim=1), 10)
    >>> [a.tolist() for a in unit_support(g, g.output, (0,), clip=False)]
    [[-3, -2, -1, 0, 1, 2, 3]]
    >>> [a.tolist() for a in unit_support(g, g.output, (0,))]
    [[0, 1, 2, 3]]
    """
    origin, mask = support_mask(graph, node, unit, clip)
    out = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = mask.any(axis=other) if other else mask
        out.append(np.flatnonzero(hit).astype(np.int64) + origin[axis])
    return tuple(out)


def unit_bounds(
    graph: RFGraph, node: str, axis: int, units: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """First and last input position read by each of ``units`` along ``axis`` (unbounded).

    All units at once: since every window's first and last positions grow with the
    unit, the extremes of a unit's support at each node are enough.  Units that read
    nothing get ``lo > hi``.

    >>> from rfmap.specs import conv_stack
    >>> g = layers_graph(conv_stack([1, 2], ndim=1), 10)
    >>> [a.tolist() for a in unit_bounds(g, g.output, 0, np.arange(3))]
    [[-3, -2, -1], [3, 4, 5]]
    """
    units = np.asarray(units, dtype=np.int64)
    pending: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {node: [(units, units)]}
    for name in graph.ancestors(node):
        parts = pending.pop(name, None)
        if not parts:
            continue
        lo = np.minimum.reduce([p[0] for p in parts])
        hi = np.maximum.reduce([p[1] for p in parts])
        if name == graph.input:
            return lo, hi
        empty = lo > hi
        for edge in graph.nodes[name].edges:
            window = edge.windows[axis]
            first = window.bounds(np.where(empty, 0, lo))[0]
            last = window.bounds(np.where(empty, 0, hi))[1]
            pending.setdefault(edge.source, []).append(
                (np.where(empty, _NONE, first), np.where(empty, -_NONE, last))
            )
    return np.full(len(units), _NONE, dtype=np.int64), np.full(len(units), -_NONE, dtype=np.int64)


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
    whole = paths.whole or isinstance(window, Whole)
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


class _Analysis:
    """The forward algebra of a whole graph, and the rows built from it."""

    def __init__(self, graph: RFGraph) -> None:
        self.graph = graph
        self.paths: dict[str, tuple[_AxisPaths, ...]] = {}
        self._clipped: dict[int, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
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

        A forward pass over the graph: a unit's support is the union of the supports of
        the source units it reads, so its extremes are the extremes of theirs.
        """
        memo = self._clipped.setdefault(axis, {})
        if name not in memo:
            for node in self.graph.nodes.values():
                if node.name not in memo:
                    memo[node.name] = self._clip_node(node, axis, memo)
                if node.name == name:
                    break
        return memo[name]

    def _clip_node(
        self, node: Node, axis: int, memo: dict[str, tuple[np.ndarray, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray]:
        n = node.extents[axis]
        if node.name == self.graph.input:
            units = np.arange(n, dtype=np.int64)
            return units, units.copy()
        if not node.edges:
            return np.full(n, _NONE, dtype=np.int64), np.full(n, -_NONE, dtype=np.int64)
        lo, hi = self._clip_edge(node.edges[0].windows[axis], n, *memo[node.edges[0].source])
        # lo, hi may be the source's own arrays: never changed in place
        for edge in node.edges[1:]:
            e_lo, e_hi = self._clip_edge(edge.windows[axis], n, *memo[edge.source])
            lo, hi = np.minimum(lo, e_lo), np.maximum(hi, e_hi)
        return lo, hi

    @staticmethod
    def _clip_edge(
        window: Window, n: int, src_lo: np.ndarray, src_hi: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The extremes of what each of the ``n`` units reads through ``window``."""
        size = len(src_lo)
        if isinstance(window, Whole):
            return (
                np.full(n, src_lo.min(initial=_NONE), dtype=np.int64),
                np.full(n, src_hi.max(initial=-_NONE), dtype=np.int64),
            )
        if isinstance(window, Conv):
            if window.affine() == (1, 1, 1, 0) and size == n:
                return src_lo, src_hi  # the identity (activations, norms, additions...)
            k, stride, d, offset = window.affine()
            if window.pad_mode is PadMode.ZEROS and stride > 0 and k <= _TAP_LOOP:
                # one strided slice per tap: the units whose tap falls inside the source
                lo = np.full(n, _NONE, dtype=np.int64)
                hi = np.full(n, -_NONE, dtype=np.int64)
                for t in range(k):
                    base = offset + t * d  # unit u reads u*stride + base
                    u0 = max(0, -(base // stride))
                    u1 = min(n, (size - 1 - base) // stride + 1)
                    if u1 > u0:
                        read = slice(u0 * stride + base, (u1 - 1) * stride + base + 1, stride)
                        np.minimum(lo[u0:u1], src_lo[read], out=lo[u0:u1])
                        np.maximum(hi[u0:u1], src_hi[read], out=hi[u0:u1])
                return lo, hi
            # all units at once, one column per tap
            units = np.arange(n, dtype=np.int64)
            taps = units[:, None] * window.stride + window.offset
            taps = taps + np.arange(window.kernel, dtype=np.int64) * window.dilation
            if window.pad_mode is PadMode.ZEROS:
                inside = (taps >= 0) & (taps < size)
                taps = np.clip(taps, 0, size - 1)
                return (
                    np.where(inside, src_lo[taps], _NONE).min(axis=1),
                    np.where(inside, src_hi[taps], -_NONE).max(axis=1),
                )
            taps = _fold(taps.ravel(), size, window.pad_mode).reshape(taps.shape)
            return src_lo[taps].min(axis=1), src_hi[taps].max(axis=1)
        units = np.arange(n, dtype=np.int64)
        lo = np.full(n, _NONE, dtype=np.int64)
        hi = np.full(n, -_NONE, dtype=np.int64)
        which, found = window.pairs(units)
        which, found = _fold_pairs(which, found, size, window.pad_mode)
        np.minimum.at(lo, which, src_lo[found])
        np.maximum.at(hi, which, src_hi[found])
        return lo, hi

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
        rf, stride, start, min_rf, max_rf, aligned, whole, hull, local_rf, local_start = fields
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
        )

    def _fields(self, name: str, node: Node, paths: tuple[_AxisPaths, ...]) -> tuple[Any, ...]:
        """The per-axis fields of the row of ``name``: ``(receptive_field, stride, start,
        min_receptive_field, max_path_receptive_field, aligned, global_axes,
        unbounded_receptive_field, local_receptive_field, local_start)``."""
        rf: list[int] = []
        start: list[int] = []
        stride: list[Jump] = []
        hull: list[int] = []
        min_rf: list[int | None] | None = []
        max_rf: list[int | None] | None = []
        local_rf: list[int | None] = []
        local_start: list[int | None] = []
        aligned: bool | None = True
        for axis, p in enumerate(paths):
            n = node.extents[axis]
            if not p.classes:
                local = sorted((j for j in p.jumps if j != 0), reverse=True)
                stride.append(local[0] if local else 0)
                lo, hi = unit_bounds(self.graph, name, axis, np.arange(n, dtype=np.int64))
                spans = np.where(lo <= hi, hi - lo + 1, 0)
                rf.append(int(spans.max()))
                start.append(int(lo[0]) if lo[0] <= hi[0] else 0)
                local_rf.append(None if p.whole else rf[-1])
                local_start.append(None if p.whole else start[-1])
                min_rf = max_rf = None
                aligned = None
            else:
                jump, size, first, lrf, lstart, low, high, misaligned = self._local_axis(p, n)
                stride.append(jump)
                rf.append(size)
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
    _boxer: Callable[[tuple[int, ...], bool], tuple[tuple[int, int], ...]] | None = field(
        default=None, repr=False, compare=False
    )

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
        """The table row of node ``name``."""
        for row in self.layers:
            if row.name == name:
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
        return _html_table(self)


def graph_rf(
    graph: RFGraph,
    node: str | None = None,
    *,
    method: str = "analytic",
    notes: Sequence[str] = (),
) -> ReceptiveField:
    """Analyse ``graph`` and return the receptive field of ``node`` (default: the output).

    The per-layer table holds every node ``node`` depends on, in graph order.
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
        _boxer=boxer,
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


# -- rendering --------------------------------------------------------------------------


def _axes(values: Sequence[Any] | None) -> str:
    if values is None:
        return "-"
    texts = ["-" if v is None else str(v) for v in values]
    return texts[0] if len(set(texts)) == 1 else "x".join(texts)


def _flags(row: LayerRF) -> str:
    flags = []
    if row.measured:
        flags.append("measured")
    elif not row.exact:
        flags.append("after measured")
    if row.is_global:
        flags.append("global")
    if row.aligned is False:
        flags.append("misaligned")
    return ",".join(flags)


def table_rows(result: ReceptiveField, all_rows: bool = True) -> list[LayerRF]:
    """The rows to show: all of them, or those that change the receptive field."""
    if all_rows:
        return list(result.layers)
    shown: list[LayerRF] = []
    previous: LayerRF | None = None
    for row in result.layers:
        key = (row.receptive_field, row.stride, row.start, row.global_axes, row.aligned)
        if (
            previous is None
            or row is result.layers[-1]
            or row.measured
            or key
            != (
                previous.receptive_field,
                previous.stride,
                previous.start,
                previous.global_axes,
                previous.aligned,
            )
        ):
            shown.append(row)
        previous = row
    return shown


def format_table(result: ReceptiveField, all_rows: bool = True) -> str:
    """The summary and the per-layer table as aligned text."""
    header = ("node", "op", "output shape", "RF", "jump", "start", "min RF", "flags")
    lines = [
        tuple(
            [
                row.name,
                row.op,
                "-" if row.shape is None else "x".join(map(str, row.shape)),
                _axes(row.receptive_field),
                _axes(row.stride),
                _axes(row.start),
                _axes(row.min_receptive_field),
                _flags(row),
            ]
        )
        for row in table_rows(result, all_rows)
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    numeric = {3, 4, 5, 6}

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [_summary(result), "", fmt(header), fmt(["-" * w for w in widths])]
    out += [fmt(line) for line in lines]
    hidden = len(result.layers) - len(lines)
    if hidden:
        rows = "1 row" if hidden == 1 else f"{hidden} rows"
        out.append(f"({rows} hidden: no change to the receptive field; --all shows every row)")
    return "\n".join(out)


def _summary(result: ReceptiveField) -> str:
    size = "x".join(map(str, result.input_size))
    lines = [
        f"receptive field of {result.node!r} (input {size}, {result.method})",
        f"  receptive field: {_axes(result.receptive_field)}{_global_note(result)}",
        f"  stride (jump):   {_axes(result.stride)}",
        f"  padding:         {_axes(result.padding)}",
    ]
    local = result.local_receptive_field
    if result.is_global and local is not None and any(v is not None for v in local):
        lines.append(
            f"  local paths (through no global op): receptive field {_axes(local)}, "
            f"padding {_axes(result.local_padding)}"
        )
    shortest = result.min_receptive_field
    if shortest is not None and all(v is None for v in shortest):
        lines.append("  min RF over paths: -   (every path goes through a global op)")
    else:
        lines.append(
            f"  min RF over paths: {_axes(result.min_receptive_field)}   aligned: "
            + {True: "yes", False: "no", None: "unknown"}[result.aligned]
        )
    if result.measured_nodes:
        measured = ", ".join(result.measured_nodes)
        lines.append(f"  measured with the gradient, not derived: {measured}")
    lines += [f"  note: {note}" for note in result.notes]
    return "\n".join(lines)


def _global_note(result: ReceptiveField) -> str:
    """What a global result reads: the whole input, or only part of it."""
    if not result.is_global:
        larger = any(r > n for r, n in zip(result.receptive_field, result.input_size, strict=True))
        return "   (larger than the input)" if larger else ""
    axes = [a for a, g in enumerate(result.global_axes) if g]
    if all(
        result.start[a] == 0 and result.receptive_field[a] == result.input_size[a] for a in axes
    ):
        what = "reads the whole input"
    else:
        box = " x ".join(
            f"[{result.start[a]}, {result.start[a] + result.receptive_field[a]})" for a in axes
        )
        what = f"reads only {box} of the input"
    hull = result.unbounded_receptive_field
    if hull is not None and hull != result.receptive_field:
        what += f"; hull of all paths on an unbounded input: {_axes(hull)}"
    return f"   (global: {what})"


def _html_table(result: ReceptiveField) -> str:
    titles = ("node", "op", "shape", "RF", "jump", "start", "min RF", "flags")
    head = "".join(f"<th>{h}</th>" for h in titles)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(c))}</td>"
            for c in (
                row.name,
                row.op,
                "-" if row.shape is None else "x".join(map(str, row.shape)),
                _axes(row.receptive_field),
                _axes(row.stride),
                _axes(row.start),
                _axes(row.min_receptive_field),
                _flags(row),
            )
        )
        + "</tr>"
        for row in result.layers
    )
    summary = html.escape(_summary(result))
    return f"<pre>{summary}</pre><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
