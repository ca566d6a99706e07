"""Element-level tensors: the escape hatch of :mod:`rfmap.builder` for data movement
that no layout expresses (numpy only).

Some models move elements in ways that no mixed-radix layout describes -- the relative
position trick of BoTNet/HaloNet pads a row of logits, flattens it and reshapes it with
a different row length, so that each row is shifted by one.  For those, the builder
keeps, for every element of the tensor, an id of *(node, unit)*: the graph node and the
unit (one position per spatial axis) that the element stands for (``-1``: a constant).
Reshapes, permutations, slices, paddings, concatenations and rolls are then exact
numpy operations on the ids, and after each one :func:`to_ref` tries to read a layout
again (usually the trick ends with a slice that gives every row its own position back).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .builder import GraphBuilder, Part, Relation, TensorRef

__all__ = ["ElementTable", "reduce_ids", "to_ids", "to_ref"]

#: Largest tensor (in elements) handled element by element.
MAX_ELEMENTS = 1 << 24


class ElementTable:
    """The ids of *(node, unit)* pairs of one builder."""

    def __init__(self, ndim: int) -> None:
        self.ndim = ndim
        self.ids: dict[tuple[str, tuple[int, ...]], int] = {}
        self.nodes: list[str] = []
        self.units: list[tuple[int, ...]] = []

    def id_array(self, node: str, units: np.ndarray) -> np.ndarray:
        """Ids for ``units`` (shape ``(..., ndim)``) of ``node``."""
        flat = units.reshape(-1, self.ndim)
        if not len(flat):
            return np.empty(units.shape[:-1], dtype=np.int64)
        # One int64 key per row (mixed radix over the columns' ranges): a 1D unique
        # is an order of magnitude faster than np.unique(axis=0), where keys fit.
        low = flat.min(axis=0)
        span = flat.max(axis=0) - low + 1
        if math.prod(int(n) for n in span) < 2**62:
            keys = np.zeros(len(flat), dtype=np.int64)
            for a in range(self.ndim):
                keys = keys * span[a] + (flat[:, a] - low[a])
            _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
            unique = flat[first]
        else:
            unique, inverse = np.unique(flat, axis=0, return_inverse=True)
        lookup = np.empty(len(unique), dtype=np.int64)
        for k, row in enumerate(unique.tolist()):
            key = (node, tuple(int(v) for v in row))
            found = self.ids.get(key)
            if found is None:
                found = len(self.nodes)
                self.ids[key] = found
                self.nodes.append(node)
                self.units.append(key[1])
            lookup[k] = found
        return lookup[inverse.reshape(-1)].reshape(units.shape[:-1])


def _part_units(part: Part, ndim: int) -> np.ndarray:
    """The unit of every element of a part's block: shape ``(*block, ndim)``."""
    block = tuple(b - a for a, b in part.region)
    units = np.zeros((*block, ndim), dtype=np.int64)
    for d, dim in enumerate(part.layout):
        index = np.arange(block[d], dtype=np.int64)
        inner = 1
        for a, n, step in reversed(dim):
            if a >= 0:
                digit = (index // inner) % n
                shape = [1] * len(block)
                shape[d] = block[d]
                units[..., a] += (digit * step).reshape(shape)
            inner *= n
    return units


def to_ids(b: GraphBuilder, x: TensorRef) -> np.ndarray:
    """The element ids of ``x`` (``-1`` for constant elements)."""
    from .builder import Unsupported

    if x.elements is not None:
        return x.elements
    if int(np.prod(x.shape, dtype=np.int64)) > MAX_ELEMENTS:
        raise Unsupported("a data movement too large to follow element by element")
    ids = np.full(x.shape, -1, dtype=np.int64)
    for part in x.parts:
        units = _part_units(part, b.ndim)
        index = tuple(slice(a, c) for a, c in part.region)
        ids[index] = b.elements.id_array(part.node, units)
    return ids


def to_ref(b: GraphBuilder, ids: np.ndarray) -> TensorRef:
    """A layout for ``ids`` when one exists (blocks of whole axes, position by position,
    or mixed-radix digits); else a TensorRef that keeps the ids."""
    from .builder import TensorRef

    shape = tuple(int(n) for n in ids.shape)
    if (ids < 0).all():
        return TensorRef(shape, ())
    table = b.elements
    index = b.nodes_index
    node_of = np.asarray([index[n] for n in table.nodes], dtype=np.int64)
    names = list(index)
    units = np.asarray(table.units, dtype=np.int64).reshape(-1, b.ndim)
    safe = np.where(ids < 0, 0, ids)
    which = np.where(ids < 0, -1, node_of[safe])
    parts: list[Part] = []
    for n in np.unique(which[which >= 0]).tolist():
        part = _infer(b, names[n], which == n, units[safe], ids.shape)
        if part is None:
            return TensorRef(shape, (), ids)
        parts.append(part)
    return TensorRef(shape, tuple(parts))


def _infer(
    b: GraphBuilder, node: str, mask: np.ndarray, units: np.ndarray, shape: tuple[int, ...]
) -> Part | None:
    """The part of ``node``: a block of the tensor whose units follow digits per dim."""
    from .builder import Part, _flat

    region = []
    for d in range(mask.ndim):
        other = tuple(k for k in range(mask.ndim) if k != d)
        hit = np.flatnonzero(mask.any(axis=other) if other else mask)
        region.append((int(hit[0]), int(hit[-1]) + 1))
    index = tuple(slice(a, c) for a, c in region)
    if not mask[index].all():
        return None
    block = units[index]  # (*block, ndim)
    dims = block.shape[:-1]
    layout: list[list[tuple[int, int, int]]] = [[] for _ in dims]
    for a in range(b.ndim):
        field = block[..., a]
        origin = tuple(0 for _ in dims)
        if field[origin] != 0 and not (field == field[origin]).all():
            return None
        rebuilt = np.zeros(dims, dtype=np.int64) + field[origin]
        for d, n in enumerate(dims):
            line = field[tuple(slice(None) if k == d else 0 for k in range(len(dims)))]
            line = line - line[0]
            if not line.any():
                continue
            digit = _digit(line)
            if digit is None:
                return None
            inner, size, step = digit
            layout[d].append((inner, size, step, a))  # type: ignore[arg-type]
            shape_d = [1] * len(dims)
            shape_d[d] = n
            rebuilt = rebuilt + line.reshape(shape_d)
        if not (rebuilt == field).all():
            return None  # the axis is not a sum of one digit per dim
        if field[origin] != 0:
            return None
    dims_atoms = []
    for d, n in enumerate(dims):
        atoms = _atoms(n, layout[d])  # type: ignore[arg-type]
        if atoms is None:
            return None
        dims_atoms.append(atoms if atoms else _flat(n))
    return b.renumbered(Part(node, tuple(region), tuple(dims_atoms)))


def _digit(line: np.ndarray) -> tuple[int, int, int] | None:
    """``(inner, size, step)`` when ``line[i] == ((i // inner) % size) * step``."""
    n = len(line)
    inner = int(np.flatnonzero(line)[0])
    step = int(line[inner])
    if step <= 0:
        return None
    size = 1
    while size * inner < n and line[size * inner] == size * step:
        size += 1
    i = np.arange(n)
    if n % (inner * size) or not (line == ((i // inner) % size) * step).all():
        return None
    return inner, size, step


def _atoms(
    n: int, digits: list[tuple[int, int, int, int]]
) -> tuple[tuple[int, int, int], ...] | None:
    """The row-major atoms of a dim of size ``n`` holding these digits."""
    atoms: list[tuple[int, int, int]] = []
    bound = n
    for inner, size, step, axis in sorted(digits, reverse=True):
        if bound % (inner * size):
            return None
        gap = bound // (inner * size)
        if gap > 1:
            atoms.append((-1, gap, 0))
        atoms.append((axis, size, step))
        bound = inner
    if bound > 1:
        atoms.append((-1, bound, 0))
    return tuple(atoms)


def reduce_ids(
    b: GraphBuilder,
    name: str,
    op: str,
    shape: tuple[int, ...],
    x: TensorRef,
    rel: tuple[Relation, ...],
) -> TensorRef:
    """An operation that reads element-level ``x`` position for position (``Same``)
    and whole along its other dims (``Reduce``, ``Mix``): a pooling over blocks of
    flattened tokens that straddle rows (NextViT).  Each output element reads a set of
    (node, unit) ids; every distinct set of more than one becomes a node of one unit,
    whose window on each axis is the set's positions on that axis (a :class:`Table`)."""
    from .builder import Mix, Reduce, Same, Unsupported
    from .windows import IDENTITY, Table

    ids = to_ids(b, x)
    same = [(d, r.dim) for d, r in enumerate(rel) if isinstance(r, Same)]
    read = [d for d, r in enumerate(rel) if isinstance(r, (Reduce, Mix))]
    if len(same) + len(read) != len(rel):
        raise Unsupported("a window over a tensor whose elements follow no layout")
    kept = [d for d, od in same if x.shape[d] == shape[od] and shape[od] > 1]
    broadcast = [d for d, od in same if d not in kept]
    if any(x.shape[d] != 1 for d in broadcast):
        raise Unsupported("a broadcast of a tensor whose elements follow no layout")
    rows = ids.transpose(kept + broadcast + read).reshape(
        int(np.prod([x.shape[d] for d in kept], dtype=np.int64)), -1
    )
    rows = np.sort(rows, axis=1)
    groups, inverse = np.unique(rows, axis=0, return_inverse=True)
    table = b.elements
    mapped = np.empty(len(groups), dtype=np.int64)
    for g, row in enumerate(groups.tolist()):
        members = sorted({i for i in row if i >= 0})
        if len(members) <= 1:
            mapped[g] = members[0] if members else -1
            continue
        by_node: dict[str, list[tuple[int, ...]]] = {}
        for i in members:
            by_node.setdefault(table.nodes[i], []).append(table.units[i])
        edges = []
        for source, units in by_node.items():
            windows = []
            for a in range(b.ndim):
                positions = tuple(sorted({u[a] for u in units}))
                single = len(positions) == 1 and b.extents(source)[a] == 1
                windows.append(IDENTITY if single else Table((positions,)))
            edges.append((source, windows))
        node = b.add_node(name, op, (1,) * b.ndim, edges, None)
        b.token_nodes.add(node)
        mapped[g] = table.id_array(node, np.zeros((1, b.ndim), dtype=np.int64))[0]
    out = mapped[inverse.reshape(-1)].reshape([x.shape[d] for d in kept])
    # place the kept dims at their output dims; broadcast along the others
    order = {od: d for d, od in same if d in kept}
    targets = sorted(order)
    out = out.transpose([kept.index(order[od]) for od in targets])
    index = tuple(slice(None) if od in order else np.newaxis for od in range(len(shape)))
    full = np.broadcast_to(out[index], shape).copy()
    return to_ref(b, full)
