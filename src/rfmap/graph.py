"""The layer graph of a model, and the exact input support of one of its units (numpy only).

An :class:`RFGraph` is a directed acyclic graph of :class:`Node` objects in topological
order; each :class:`Edge` says, per spatial axis of the input, which positions of its
source one unit of its node reads (a :class:`~rfmap.windows.Window`).
:func:`support_mask` propagates one unit back to the input exactly, with or without the
image border; :func:`unit_bounds` gives the first and last position read by many units
at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InvalidSpecError
from .windows import _NONE, Window, _fold_pairs

__all__ = ["Edge", "Node", "RFGraph", "support_mask", "unit_bounds", "unit_support"]

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

    >>> from rfmap.windows import Conv
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
    >>> from rfmap.receptive import layers_graph
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
    >>> from rfmap.receptive import layers_graph
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
