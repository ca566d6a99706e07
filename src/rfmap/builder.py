"""Tensor operations to layer graph: the algebra every frontend shares (numpy only).

A frontend (PyTorch at the ATen level, ONNX, JAX) walks a model's operations and calls a
:class:`GraphBuilder` for each one; the builder keeps, for every tensor that depends on
the input, a :class:`TensorRef`: which graph nodes its elements belong to, and which
spatial axis of the input each of its dims indexes.  Operations that only move elements
(reshape, permute, expand, slices of non-spatial dims, concatenation of channels) change
the layout and create no node; operations that read a neighbourhood (convolutions,
pools, paddings, resampling), mix positions (attention, reductions, ``Linear`` over
flattened tokens) or merge several inputs create a node of the
:class:`~rfmap.graph.RFGraph` with one :class:`~rfmap.windows.Window` per spatial axis.

**Layouts.**  A dim of a tensor is a tuple of *atoms* ``(axis, size, step)`` in row-major
order: ``axis >= 0`` is a spatial axis of the input, whose position is the mixed-radix
number ``sum(digit * step)`` over that axis's atoms; ``axis == -1`` is anything else
(batch, channels, heads), with step 0.  A plain ``NCHW`` tensor is
``(((-1, N, 0),), ((-1, C, 0),), ((0, H, 1),), ((1, W, 1),))``; ``flatten(2)`` gives the
token dim ``((0, H, W), (1, W, 1))``; a window partition splits an axis into an outer
and an inner digit, ``(0, H/7, 7)`` and ``(0, 7, 1)``, which can sit in different dims.

**Parts.**  A tensor is tiled into :class:`Part` blocks, each backed by one node; a
block that no part covers is constant.  Almost every tensor is one part; a class token
concatenated to patch tokens makes two (the class token has no spatial position).

Operations the algebra cannot express raise :class:`Unsupported`; the frontend then
measures that operation with the gradient or gives up.

>>> b = GraphBuilder(ndim=1)
>>> x = b.input("x", (1, 2, 16), spatial_dims=(2,))
>>> y = b.apply("conv", "conv", (1, 4, 16), [(x, (Same(0), Reduce(), Slide(2, Conv(3, 1, 1, -1))))])
>>> pooled = b.apply("pool", "mean", (1, 4), [(y, (Same(0), Same(1), Reduce()))])
>>> g = b.graph([pooled])
>>> [(n.name, n.extents) for n in g.nodes.values()]
[('x', (16,)), ('conv', (16,)), ('pool', (1,))]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .elements import ElementTable
from .errors import InvalidSpecError
from .graph import Edge, Node, RFGraph
from .windows import (
    BROADCAST,
    IDENTITY,
    Conv,
    FreeDigit,
    KeptDigit,
    PadMode,
    Whole,
    Window,
    digits_window,
)

__all__ = [
    "Atom",
    "GraphBuilder",
    "Layout",
    "Mix",
    "Part",
    "Reduce",
    "Relation",
    "Same",
    "Slide",
    "TensorRef",
    "Unsupported",
    "plain_layout",
]

#: ``(axis, size, step)``: one digit of a dim (``axis == -1``: not spatial, step 0).
Atom = tuple[int, int, int]
Dim = tuple[Atom, ...]
Layout = tuple[Dim, ...]
Region = tuple[tuple[int, int], ...]


class Unsupported(Exception):
    """An operation that the layout algebra cannot express (the frontend measures it)."""


# -- layouts ---------------------------------------------------------------------------


def _flat(n: int) -> Dim:
    return ((-1, int(n), 0),)


def plain_layout(shape: Sequence[int], axes: Sequence[int | None]) -> Layout:
    """One atom per dim: ``axes[d]`` is the spatial axis of dim ``d`` (None: not spatial).

    >>> plain_layout((1, 3, 8), (None, None, 0))
    (((-1, 1, 0),), ((-1, 3, 0),), ((0, 8, 1),))
    """
    return tuple(
        ((a, int(n), 1),) if a is not None and n > 1 else _flat(n)
        for n, a in zip(shape, axes, strict=True)
    )


def _dim_size(dim: Dim) -> int:
    return math.prod(n for _, n, _ in dim)


def _spatial(dim: Dim) -> list[Atom]:
    return [atom for atom in dim if atom[0] >= 0]


def _tidy(atoms: Iterable[Atom]) -> Dim:
    """Drop size-1 atoms and merge neighbouring non-spatial ones."""
    out: list[Atom] = []
    for a, n, s in atoms:
        if n == 1:
            continue
        if a < 0 and out and out[-1][0] < 0:
            out[-1] = (-1, out[-1][1] * n, 0)
        elif a >= 0 and out and out[-1][0] == a and out[-1][2] == s * n:
            out[-1] = (a, out[-1][1] * n, s)  # consecutive digits of one axis: one atom
        else:
            out.append((a, n, s) if a >= 0 else (-1, n, 0))
    return tuple(out) if out else _flat(1)


def _layout_extents(layout: Layout, ndim: int) -> tuple[int, ...]:
    ext = [1] * ndim
    for dim in layout:
        for a, n, _ in dim:
            if a >= 0:
                ext[a] *= n
    return tuple(ext)


def _packed(dim: Dim) -> bool:
    """Whether a dim holds several digits (tokens of a flattened grid, windows)."""
    return len(dim) > 1 and bool(_spatial(dim))


def _simple_axis(dim: Dim, extents: tuple[int, ...]) -> int | None:
    """The axis a dim carries as a whole (one atom, step 1, the node's whole axis);
    None for a dim without spatial atoms; raises for anything else."""
    spatial = _spatial(dim)
    if not spatial:
        return None
    if len(spatial) == 1 and len(dim) == 1:
        a, n, s = spatial[0]
        if s == 1 and extents[a] == n:
            return a
    raise Unsupported("a sliding window over a dim that packs several positions")


def _split_atoms(dim: Dim, sizes: Sequence[int]) -> list[Dim]:
    """Split one dim into consecutive dims of ``sizes`` (row-major), splitting atoms."""
    atoms = list(dim)
    out: list[Dim] = []
    i = 0
    for size in sizes:
        collected: list[Atom] = []
        product = 1
        while product < size:
            if i >= len(atoms):
                raise Unsupported("reshape")
            a, n, s = atoms[i]
            if size % (product * n) == 0:
                collected.append(atoms[i])
                product *= n
                i += 1
            elif size % product == 0 and n % (size // product) == 0:
                part = size // product
                # the leading (more significant) digits go to this dim
                collected.append((a, part, s * (n // part) if a >= 0 else 0))
                atoms[i] = (a, n // part, s)
                product *= part
            else:
                raise Unsupported("a reshape that splits a position across dims unevenly")
        out.append(_tidy(collected))
    if i != len(atoms) and any(n != 1 for _, n, _ in atoms[i:]):
        raise Unsupported("reshape")
    return out


# -- tensors ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """A block of a tensor backed by one graph node.

    ``region`` is the block's ``[start, stop)`` per tensor dim; ``layout`` describes the
    block's dims (their sizes are the region's).
    """

    node: str
    region: Region
    layout: Layout


@dataclass(frozen=True)
class TensorRef:
    """What the builder knows of a tensor: its shape and the parts that depend on the input."""

    shape: tuple[int, ...]
    parts: tuple[Part, ...]
    #: Element ids (:mod:`rfmap.elements`) when no layout describes the tensor.
    elements: Any = field(default=None, compare=False, repr=False)
    #: The operands and alive pairs of attention scores (:mod:`rfmap.attention`).
    scores: Any = field(default=None, compare=False, repr=False)

    @property
    def constant(self) -> bool:
        """True when no element depends on the input."""
        return not self.parts and self.elements is None

    @property
    def single(self) -> Part | None:
        """The one part covering the whole tensor, if that is what it is."""
        if len(self.parts) == 1 and self.parts[0].region == _full(self.shape):
            return self.parts[0]
        return None

    def spatial_dims(self) -> dict[int, int] | None:
        """``{axis: dim}`` when every spatial axis sits whole in one dim of one part
        covering the tensor (a plain feature map, channels first or last); else None."""
        part = self.single
        if part is None:
            return None
        out: dict[int, int] = {}
        for d, dim in enumerate(part.layout):
            spatial = _spatial(dim)
            if not spatial:
                continue
            if len(spatial) != 1 or len(dim) != 1 or spatial[0][2] != 1:
                return None
            out[spatial[0][0]] = d
        return out


def _full(shape: Sequence[int]) -> Region:
    return tuple((0, int(n)) for n in shape)


# -- relations of operand dims to output dims ---------------------------------------------


@dataclass(frozen=True)
class Same:
    """Operand dim read position for position as output dim ``dim`` (broadcast if size 1)."""

    dim: int


@dataclass(frozen=True)
class Reduce:
    """Operand dim read whole and gone from the output (a contraction or reduction)."""


@dataclass(frozen=True)
class Mix:
    """Operand dim read whole by every element of output dim ``dim`` (softmax, cumsum)."""

    dim: int


@dataclass(frozen=True)
class Slide:
    """Output dim ``dim`` reads the operand dim through ``window`` (convolution, pool)."""

    dim: int
    window: Window


Relation = Same | Reduce | Mix | Slide


# -- the builder -------------------------------------------------------------------------


@dataclass
class _NodeRecord:
    name: str
    op: str
    extents: tuple[int, ...]
    edges: list[tuple[str, tuple[Window, ...]]]
    shape: tuple[int, ...] | None
    measured: bool = False
    module: str | None = None


@dataclass
class GraphBuilder:
    """Collects the nodes of an :class:`~rfmap.graph.RFGraph` while a frontend walks a model.

    ``ndim`` is the number of spatial axes of the input.  Node names are made unique
    (``name``, ``name_1``, ...); :attr:`scope` (the module being run, say) prefixes them.
    """

    ndim: int
    nodes: dict[str, _NodeRecord] = field(default_factory=dict)
    measured: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    scope: str = ""
    #: Turns an operation's name into a node's base name (a frontend's naming scheme),
    #: or into ``(name, label)`` where ``label`` replaces the node's op in the table.
    namer: Callable[[str], str | tuple[str, str]] | None = None
    _counts: dict[str, int] = field(default_factory=dict)
    _elements: ElementTable | None = None

    @property
    def elements(self) -> ElementTable:
        """The ids of (node, unit) pairs of element-level tensors."""
        if self._elements is None:
            self._elements = ElementTable(self.ndim)
        return self._elements

    @property
    def nodes_index(self) -> dict[str, int]:
        """Node name -> position."""
        return {name: i for i, name in enumerate(self.nodes)}

    def renumbered(self, p: Part) -> Part:
        """``p`` with a node of its own when its digits are only some of its node's
        (a block of positions picked out element by element)."""
        ext = self.extents(p.node)
        atoms = sorted(
            ((a, n, s) for dim in p.layout for a, n, s in _spatial(dim)), key=lambda t: t[2]
        )
        new_step: dict[Atom, int] = {}
        extents = [1] * self.ndim
        for a, n, s in atoms:
            new_step[(a, n, s)] = extents[a]
            extents[a] *= n
        if tuple(extents) == ext and all(new_step[t] == t[2] for t in atoms):
            return p
        windows = [
            digits_window(
                tuple((n, new_step[(aa, n, s)], s) for aa, n, s in atoms if aa == a), (), ext[a]
            )
            for a in range(self.ndim)
        ]
        node = self.add_node("pick", "pick", tuple(extents), [(p.node, windows)], None)
        layout = tuple(
            tuple((a, n, new_step[(a, n, s)]) if a >= 0 else (a, n, s) for a, n, s in dim)
            for dim in p.layout
        )
        return Part(node, p.region, layout)

    def _by_elements(self, x: TensorRef, move: Callable[[np.ndarray], np.ndarray]) -> TensorRef:
        """Apply a data movement element by element (:mod:`rfmap.elements`)."""
        from .elements import to_ids, to_ref

        return to_ref(self, move(to_ids(self, x)))

    # -- nodes ---------------------------------------------------------------------------
    def unique(self, name: str) -> str:
        """``name`` made unique among the nodes (with the scope in front)."""
        if self.namer is not None:
            named = self.namer(name)
            name = named if isinstance(named, str) else named[0]
        base = f"{self.scope}.{name}" if self.scope else name
        count = self._counts.get(base, 0)
        self._counts[base] = count + 1
        out = base if count == 0 else f"{base}_{count}"
        while out in self.nodes:
            count += 1
            self._counts[base] = count + 1
            out = f"{base}_{count}"
        return out

    def add_node(
        self,
        name: str,
        op: str,
        extents: tuple[int, ...],
        edges: Sequence[tuple[str, Sequence[Window]]],
        shape: Sequence[int] | None,
        measured: bool = False,
    ) -> str:
        """Add a node (``name`` is made unique); return its name."""
        if self.namer is not None:
            named = self.namer(name)
            if not isinstance(named, str):
                name, label = named
                op = f"{label} (measured)" if measured else label
            else:
                name = named
            namer, self.namer = self.namer, None
            try:
                unique = self.unique(name)
            finally:
                self.namer = namer
        else:
            unique = self.unique(name)
        seen: list[tuple[str, tuple[Window, ...]]] = []
        for source, windows in edges:
            item = (source, tuple(windows))
            if len(item[1]) != self.ndim:
                raise InvalidSpecError(f"an edge of {unique!r} needs {self.ndim} windows")
            if item not in seen:
                seen.append(item)
        self.nodes[unique] = _NodeRecord(
            unique,
            op,
            tuple(extents),
            seen,
            None if shape is None else tuple(int(n) for n in shape),
            measured,
            self.scope or None,
        )
        if measured:
            self.measured.append(unique)
        return unique

    def extents(self, node: str) -> tuple[int, ...]:
        """Units per spatial axis of ``node``."""
        return self.nodes[node].extents

    def input(self, name: str, shape: Sequence[int], spatial_dims: Sequence[int]) -> TensorRef:
        """The model input: ``spatial_dims[a]`` is the dim of spatial axis ``a``."""
        shape = tuple(int(n) for n in shape)
        if len(spatial_dims) != self.ndim:
            raise InvalidSpecError(f"the input needs {self.ndim} spatial dims")
        axes: list[int | None] = [None] * len(shape)
        for a, d in enumerate(spatial_dims):
            axes[d] = a
        layout = tuple(
            ((a, n, 1),) if a is not None else _flat(n) for n, a in zip(shape, axes, strict=True)
        )
        extents = tuple(shape[d] for d in spatial_dims)
        node = self.add_node(name, "input", extents, [], shape)
        return TensorRef(shape, (Part(node, _full(shape), layout),))

    def graph(self, outputs: Sequence[TensorRef | str]) -> RFGraph:
        """The graph, with the nodes of ``outputs`` (tensors or node names) as outputs."""
        names: list[str] = []
        for out in outputs:
            if isinstance(out, str):
                names.append(out)
            else:
                names.append(self.merged(out, "output"))
        names = list(dict.fromkeys(names))
        nodes = [
            Node(
                r.name,
                r.op,
                r.extents,
                tuple(Edge(s, w) for s, w in r.edges),
                r.shape,
                r.measured,
            )
            for r in self.nodes.values()
        ]
        return RFGraph(nodes, names)

    def merged(self, x: TensorRef, name: str = "merge") -> str:
        """One node standing for the whole tensor ``x`` (its parts' union)."""
        if x.constant:
            raise Unsupported("a tensor that does not depend on the input")
        if x.elements is not None:
            raise Unsupported("a tensor whose elements follow no layout")
        if len(x.parts) == 1:
            return x.parts[0].node
        placed = [self._placement(p, x.shape) for p in x.parts]
        extents = tuple(
            max(
                int(size) if (size := sizes[a]) is not None else self.extents(p.node)[a]
                for p, (sizes, _) in zip(x.parts, placed, strict=True)
            )
            for a in range(self.ndim)
        )
        edges = []
        for p, (sizes, offsets) in zip(x.parts, placed, strict=True):
            ext = self.extents(p.node)
            windows: list[Window] = []
            for a in range(self.ndim):
                if sizes[a] is not None and sizes[a] == extents[a]:
                    windows.append(Conv(1, 1, 1, -offsets[a]) if offsets[a] else IDENTITY)
                elif ext[a] == extents[a]:
                    windows.append(IDENTITY)
                elif ext[a] == 1:
                    windows.append(BROADCAST)
                else:
                    windows.append(Whole(ext[a]))
            edges.append((p.node, windows))
        return self.add_node(name, "merge", extents, edges, x.shape)

    def consolidate(self, x: TensorRef, name: str = "gather") -> TensorRef:
        """``x`` as one part covering the whole tensor, when its parts differ only in
        dims without positions (channels concatenated or padded): a node that reads them
        all; the constant elements are taken to read the same positions (a harmless
        over-approximation: they are not positions)."""
        if x.constant or x.single is not None:
            return x
        rank = len(x.shape)
        first = x.parts[0]
        layout: list[Dim] = []
        for d in range(rank):
            spatial = [p.layout[d] for p in x.parts if _spatial(p.layout[d])]
            if not spatial:
                layout.append(_flat(x.shape[d]))
                continue
            if any(p.layout[d] != spatial[0] or p.region[d] != (0, x.shape[d]) for p in x.parts):
                raise Unsupported("a reshape across the blocks of a concatenation")
            layout.append(spatial[0])
        extents = self.extents(first.node)
        if any(self.extents(p.node) != extents for p in x.parts):
            raise Unsupported("a reshape across blocks of different grids")
        if len(x.parts) == 1:
            node = first.node
        else:
            node = self.add_node(
                name, "gather", extents, [(p.node, [IDENTITY] * self.ndim) for p in x.parts], None
            )
        return TensorRef(x.shape, (Part(node, _full(x.shape), tuple(layout)),))

    def _placement(self, p: Part, shape: tuple[int, ...]) -> tuple[list[int | None], list[int]]:
        """Per axis: the tensor dim size and the offset of ``p`` along it, for axes that
        sit whole in one dim of the part (None elsewhere)."""
        sizes: list[int | None] = [None] * self.ndim
        offsets = [0] * self.ndim
        ext = self.extents(p.node)
        for d, dim in enumerate(p.layout):
            if len(dim) == 1 and dim[0][0] >= 0 and dim[0][2] == 1 and ext[dim[0][0]] == dim[0][1]:
                sizes[dim[0][0]] = shape[d]
                offsets[dim[0][0]] = p.region[d][0]
        return sizes, offsets

    def assign(self, base: TensorRef, region: Region, value: TensorRef) -> TensorRef:
        """``base`` with the block ``region`` replaced by ``value`` (an in-place write
        into a slice: ``x[..., a:b] = y``)."""
        if len(region) != len(base.shape) or tuple(b - a for a, b in region) != value.shape:
            raise Unsupported("an in-place write whose value does not fit its slice")
        parts: list[Part] = []
        for p in base.parts:
            parts.extend(self._outside(p, region))
        for p in value.parts:
            shifted = tuple(
                (a + lo, b + lo) for (a, b), (lo, _) in zip(p.region, region, strict=True)
            )
            parts.append(Part(p.node, shifted, p.layout))
        return TensorRef(base.shape, tuple(parts))

    def _outside(self, p: Part, region: Region) -> list[Part]:
        """The pieces of ``p`` outside the box ``region``."""
        if any(b <= lo or a >= hi for (a, b), (lo, hi) in zip(p.region, region, strict=True)):
            return [p]
        pieces: list[Part] = []
        rest = p
        for d, (lo, hi) in enumerate(region):
            a, b = rest.region[d]
            if a < lo:
                pieces.append(self._crop(rest, d, a, lo))
            if b > hi:
                pieces.append(self._crop(rest, d, hi, b))
            rest = self._crop(rest, d, max(a, lo), min(b, hi))
        return pieces

    def _crop(self, p: Part, d: int, start: int, stop: int) -> Part:
        """``p`` restricted to ``[start, stop)`` along dim ``d`` (tensor coordinates)."""
        a, b = p.region[d]
        if (start, stop) == (a, b):
            return p
        region = list(p.region)
        region[d] = (start, stop)
        if not _spatial(p.layout[d]):
            layout = list(p.layout)
            layout[d] = _flat(stop - start)
            return Part(p.node, tuple(region), tuple(layout))
        p, axis = self.simple(p, d)
        layout = list(p.layout)
        assert axis is not None
        windows = [IDENTITY] * self.ndim
        windows[axis] = Conv(1, 1, 1, start - a)
        extents = list(self.extents(p.node))
        extents[axis] = stop - start
        node = self.add_node("crop", "slice", tuple(extents), [(p.node, windows)], None)
        layout[d] = ((axis, stop - start, 1),)
        return Part(node, tuple(region), tuple(layout))

    # -- layout operations (no node) ---------------------------------------------------
    def constant(self, shape: Sequence[int]) -> TensorRef:
        """A tensor that does not depend on the input."""
        return TensorRef(tuple(int(n) for n in shape), ())

    def reshape(self, x: TensorRef, shape: Sequence[int]) -> TensorRef:
        """``view``/``reshape``/``flatten``/``unflatten``/``squeeze``/``unsqueeze``."""
        new = tuple(int(n) for n in shape)
        if math.prod(new) != math.prod(x.shape):
            raise Unsupported(f"reshape of {list(x.shape)} to {list(new)}")
        if x.elements is not None:
            return self._by_elements(x, lambda ids: ids.reshape(new))
        if new == x.shape or x.constant:
            return x if new == x.shape else self.constant(new)
        try:
            out = self._reshape(x, new)
        except Unsupported:
            return self._by_elements(x, lambda ids: ids.reshape(new))
        if x.scores is not None and len(new) >= 2 and new[-2:] == x.shape[-2:]:
            out = replace(out, scores=x.scores)  # leading dims regrouped: the same pairs
        return out

    def _reshape(self, x: TensorRef, new: tuple[int, ...]) -> TensorRef:
        groups = _reshape_groups(x.shape, new)
        merging = {d for olds, news in groups if len(olds) + len(news) > 2 for d in olds}
        if any(p.region[d] != (0, x.shape[d]) for p in x.parts for d in merging):
            x = self.consolidate(x)
        parts = []
        for part in x.parts:
            region: list[tuple[int, int]] = []
            layout: list[Dim] = []
            for old_dims, new_dims in groups:
                olds = [x.shape[d] for d in old_dims]
                news = [new[d] for d in new_dims]
                if not new_dims:
                    continue  # a size-1 dim removed
                if not old_dims:
                    region.append((0, 1))
                    layout.append(_flat(1))
                    continue
                if len(old_dims) == 1 and len(new_dims) == 1:
                    region.append(part.region[old_dims[0]])
                    layout.append(part.layout[old_dims[0]])
                    continue
                spans = [part.region[d] for d in old_dims]
                full = all(r == (0, n) for r, n in zip(spans, olds, strict=True))
                if not full:
                    # a part that is a block of the leading old dim only: keep it as a
                    # block of the leading new dim when the rest maps one to one
                    raise Unsupported("a reshape across the blocks of a concatenation")
                atoms = [atom for d in old_dims for atom in part.layout[d]]
                layout.extend(_split_atoms(tuple(atoms), news))
                region.extend((0, n) for n in news)
            parts.append(Part(part.node, tuple(region), tuple(layout)))
        return TensorRef(new, tuple(parts))

    def permute(self, x: TensorRef, order: Sequence[int]) -> TensorRef:
        """``permute``/``transpose``/``movedim``: output dim ``i`` is input dim ``order[i]``."""
        order = [int(d) % max(1, len(x.shape)) for d in order]
        if sorted(order) != list(range(len(x.shape))):
            raise InvalidSpecError(f"permute order {order} for {len(x.shape)} dims")
        shape = tuple(x.shape[d] for d in order)
        if x.elements is not None:
            return self._by_elements(x, lambda ids: ids.transpose(order))
        parts = tuple(
            Part(
                p.node,
                tuple(p.region[d] for d in order),
                tuple(p.layout[d] for d in order),
            )
            for p in x.parts
        )
        return TensorRef(shape, parts)

    def expand(self, x: TensorRef, shape: Sequence[int]) -> TensorRef:
        """Broadcast ``x`` to ``shape`` (new leading dims, size-1 dims repeated)."""
        new = tuple(int(n) for n in shape)
        if new == x.shape:
            return x
        if x.elements is not None:
            return self._by_elements(x, lambda ids: np.broadcast_to(ids, new).copy())
        lead = len(new) - len(x.shape)
        if lead < 0 or any(o != n and o != 1 for o, n in zip(x.shape, new[lead:], strict=True)):
            raise Unsupported(f"expand of {list(x.shape)} to {list(new)}")
        parts = []
        for p in x.parts:
            region = [(0, n) for n in new[:lead]]
            layout = [_flat(n) for n in new[:lead]]
            for d, n in enumerate(new[lead:]):
                if x.shape[d] == n:
                    region.append(p.region[d])
                    layout.append(p.layout[d])
                else:
                    region.append((0, n))
                    layout.append(_flat(n))
            parts.append(Part(p.node, tuple(region), tuple(layout)))
        return TensorRef(new, tuple(parts))

    def concat(
        self, xs: Sequence[TensorRef], dim: int, name: str = "cat", op: str = "cat"
    ) -> TensorRef:
        """Concatenate along ``dim``: every input keeps its parts (so that slicing the
        result again, as channel splits do, reads exactly the inputs it selects)."""
        if not xs:
            raise InvalidSpecError("concatenation of no tensors")
        rank = len(xs[0].shape)
        d = dim % rank
        if any(x.elements is not None for x in xs):
            from .elements import to_ids, to_ref

            return to_ref(self, np.concatenate([to_ids(self, x) for x in xs], axis=d))
        shape = list(xs[0].shape)
        shape[d] = sum(x.shape[d] for x in xs)
        parts: list[Part] = []
        offset = 0
        for x in xs:
            for p in x.parts:
                region = list(p.region)
                region[d] = (p.region[d][0] + offset, p.region[d][1] + offset)
                parts.append(Part(p.node, tuple(region), p.layout))
            offset += x.shape[d]
        return TensorRef(tuple(shape), tuple(parts))

    def slice(
        self,
        x: TensorRef,
        dim: int,
        start: int,
        stop: int,
        step: int = 1,
        name: str = "slice",
        op: str = "slice",
    ) -> TensorRef:
        """``x[..., start:stop:step, ...]`` along ``dim`` (already clamped, step > 0)."""
        if step < 1:
            raise Unsupported("a slice with a negative step")
        d = dim % len(x.shape)
        if x.elements is not None:
            index = tuple(
                slice(start, stop, step) if k == d else slice(None) for k in range(len(x.shape))
            )
            return self._by_elements(x, lambda ids: ids[index])
        length = max(0, len(range(start, stop, step)))
        shape = list(x.shape)
        shape[d] = length
        parts: list[Part] = []
        for p in x.parts:
            lo, hi = p.region[d]
            # output indices k with start + k*step inside [lo, hi)
            k0 = max(0, -(-(lo - start) // step))
            k1 = min(length, -(-(hi - start) // step))
            if k1 <= k0:
                continue
            first = start + k0 * step - lo  # index inside the part
            count = k1 - k0
            region = list(p.region)
            region[d] = (k0, k1)
            layout = list(p.layout)
            if (first, count, step) == (0, hi - lo, 1):
                parts.append(Part(p.node, tuple(region), p.layout))
                continue
            if not _spatial(p.layout[d]):
                layout[d] = _flat(count)
                parts.append(Part(p.node, tuple(region), tuple(layout)))
                continue
            p, axis = self.simple(p, d)
            layout = list(p.layout)
            assert axis is not None
            windows = [IDENTITY] * self.ndim
            windows[axis] = Conv(1, step, 1, first)
            extents = list(self.extents(p.node))
            extents[axis] = count
            node = self.add_node(name, op, tuple(extents), [(p.node, windows)], tuple(shape))
            layout[d] = ((axis, count, 1),)
            parts.append(Part(node, tuple(region), tuple(layout)))
        return TensorRef(tuple(shape), tuple(parts))

    def select(
        self, x: TensorRef, dim: int, index: int, name: str = "select", op: str = "select"
    ) -> TensorRef:
        """``x[..., index, ...]``: the dim is gone."""
        d = dim % len(x.shape)
        index %= x.shape[d]
        y = self.slice(x, d, index, index + 1, 1, name, op)
        return self.reshape(y, x.shape[:d] + x.shape[d + 1 :])

    def pad(
        self,
        x: TensorRef,
        pads: Sequence[tuple[int, int]],
        mode: PadMode = PadMode.ZEROS,
        name: str = "pad",
        op: str = "pad",
    ) -> TensorRef:
        """Pad (or crop, with negative amounts) every dim by ``pads[d] = (before, after)``."""
        if len(pads) != len(x.shape):
            raise InvalidSpecError("pad needs one (before, after) pair per dim")
        shape = tuple(n + lo + hi for n, (lo, hi) in zip(x.shape, pads, strict=True))
        if any(n < 0 for n in shape):
            raise Unsupported("a crop larger than the tensor")
        if x.elements is not None:
            return self._by_elements(x, lambda ids: _pad_ids(ids, pads, mode))
        parts: list[Part] = []
        for p in x.parts:
            for d, (lo, hi) in enumerate(pads):
                if (lo, hi) != (0, 0) and _spatial(p.layout[d]):
                    if mode is PadMode.ZEROS and _packed(p.layout[d]):
                        continue  # zeros around a token dim: a block of a concatenation
                    p = self.simple(p, d)[0]
            region = list(p.region)
            layout = list(p.layout)
            windows: list[Window] = [IDENTITY] * self.ndim
            extents = list(self.extents(p.node))
            changed = False
            for d, (lo, hi) in enumerate(pads):
                if (lo, hi) == (0, 0):
                    continue
                if _spatial(p.layout[d]) and not (mode is PadMode.ZEROS and _packed(p.layout[d])):
                    axis = _simple_axis(p.layout[d], self.extents(p.node))
                    assert axis is not None
                    if p.region[d] != (0, x.shape[d]):
                        raise Unsupported("padding a block of a concatenation")
                    windows[axis] = Conv(1, 1, 1, -lo, mode)
                    extents[axis] = shape[d]
                    layout[d] = ((axis, shape[d], 1),)
                    region[d] = (0, shape[d])
                    changed = True
                elif mode is PadMode.ZEROS:
                    a, b = p.region[d][0] + lo, p.region[d][1] + lo
                    a2, b2 = max(a, 0), min(b, shape[d])
                    if b2 <= a2:
                        break
                    if (a2, b2) != (a, b) and _spatial(p.layout[d]):
                        raise Unsupported("a crop of a token dim")
                    region[d] = (a2, b2)
                    if not _spatial(p.layout[d]):
                        layout[d] = _flat(b2 - a2)
                else:
                    region[d] = (0, shape[d])  # reflect/replicate of channels: all of them
                    layout[d] = _flat(shape[d])
            else:
                node = (
                    self.add_node(name, op, tuple(extents), [(p.node, windows)], shape)
                    if changed
                    else p.node
                )
                parts.append(Part(node, tuple(region), tuple(layout)))
        return TensorRef(shape, tuple(parts))

    def roll(
        self, x: TensorRef, shifts: Sequence[int], dims: Sequence[int], name: str = "roll"
    ) -> TensorRef:
        """``torch.roll``: a circular shift, ``out[i] = x[(i - shift) mod n]``."""
        if x.elements is not None:
            return self._by_elements(
                x, lambda ids: np.roll(ids, [int(v) for v in shifts], [int(v) for v in dims])
            )
        part = x.single
        if part is None:
            if x.constant:
                return x
            raise Unsupported("roll of a concatenation")
        for dim in dims:
            part = self.simple(part, int(dim) % len(x.shape))[0]
        windows: list[Window] = [IDENTITY] * self.ndim
        changed = False
        for shift, dim in zip(shifts, dims, strict=True):
            d = int(dim) % len(x.shape)
            axis = _simple_axis(part.layout[d], self.extents(part.node))
            if axis is None:
                continue  # rolling channels: the same positions
            n = x.shape[d]
            if int(shift) % n:
                windows[axis] = Conv(1, 1, 1, -(int(shift) % n), PadMode.CIRCULAR)
                changed = True
        if not changed:
            return x
        node = self.add_node(name, "roll", self.extents(part.node), [(part.node, windows)], x.shape)
        return TensorRef(x.shape, (Part(node, part.region, part.layout),))

    # -- operations that read positions -------------------------------------------------
    def elementwise(
        self, name: str, op: str, shape: Sequence[int], xs: Sequence[TensorRef]
    ) -> TensorRef:
        """A broadcasting element-wise operation of ``xs`` (NumPy rules)."""
        shape = tuple(int(n) for n in shape)
        operands = []
        for x in xs:
            lead = len(shape) - len(x.shape)
            if lead < 0:
                raise Unsupported(f"{op} of a tensor with more dims than its result")
            operands.append((x, tuple(Same(lead + d) for d in range(len(x.shape)))))
        return self.apply(name, op, shape, operands)

    def reduce(
        self,
        name: str,
        op: str,
        x: TensorRef,
        dims: Iterable[int],
        keepdim: bool = False,
    ) -> TensorRef:
        """A reduction (sum, mean, max, ...) over ``dims``."""
        rank = len(x.shape)
        reduced = {int(d) % rank for d in dims} if rank else set()
        rel: list[Relation] = []
        shape: list[int] = []
        for d in range(rank):
            if d in reduced:
                if keepdim:
                    rel.append(Mix(len(shape)))
                    shape.append(1)
                else:
                    rel.append(Reduce())
            else:
                rel.append(Same(len(shape)))
                shape.append(x.shape[d])
        return self.apply(name, op, shape, [(x, tuple(rel))])

    def mix(self, name: str, op: str, x: TensorRef, dims: Iterable[int]) -> TensorRef:
        """An operation that reads ``dims`` whole and keeps them (softmax, cumsum, norm)."""
        rank = len(x.shape)
        mixed = {int(d) % rank for d in dims}
        rel = tuple(Mix(d) if d in mixed else Same(d) for d in range(rank))
        out = self.apply(name, op, x.shape, [(x, rel)])
        if x.scores is not None and mixed == {rank - 1}:
            out = replace(out, scores=x.scores)  # a softmax over the keys keeps the pairs
        return out

    def matmul(
        self, name: str, op: str, a: TensorRef | None, b: TensorRef | None, shape: Sequence[int]
    ) -> TensorRef:
        """``a @ b`` for ``[..., n, k] @ [..., k, m]`` with broadcast batch dims."""
        shape = tuple(int(n) for n in shape)
        operands = []
        for x, is_a in ((a, True), (b, False)):
            if x is None or x.constant:
                continue
            rank = len(x.shape)
            lead = len(shape) - rank
            rel: list[Relation] = [Same(lead + d) for d in range(rank - 2)]
            if is_a:
                rel += [Same(len(shape) - 2), Reduce()]
            else:
                rel += [Reduce(), Same(len(shape) - 1)]
            operands.append((x, tuple(rel)))
        if not operands:
            return self.constant(shape)
        if a is not None and a.scores is not None and b is not None and not b.constant:
            from .attention import read_masked

            masked = read_masked(self, name, op, a, b, shape)
            if masked is not None:
                return masked
        out = self.apply(name, op, shape, operands)
        if (
            len(operands) == 2
            and a is not None
            and b is not None
            and len(shape) >= 2
            and a.shape[:-2] == b.shape[:-2] == shape[:-2]
        ):
            from .attention import Scores

            batch = math.prod(shape[:-2])
            out = replace(out, scores=Scores(a, b, batch, shape[-2], shape[-1]))
        return out

    def apply(
        self,
        name: str,
        op: str,
        shape: Sequence[int],
        operands: Sequence[tuple[TensorRef, Sequence[Relation]]],
        *,
        measured: bool = False,
    ) -> TensorRef:
        """The general operation: each operand dim relates to the output by a
        :class:`Same`, :class:`Reduce`, :class:`Mix` or :class:`Slide` relation.

        The output is tiled into cells by the parts of the operands; every cell that
        some part feeds gets a node (or keeps its only source node when it reads it
        unit for unit).  Spatial positions of a dim read by :class:`Same` come from the
        first operand that has them; another operand's different positions in the same
        output dim, and the positions in reduced or mixed dims, are read whole (the
        digits of a window, a token axis).
        """
        shape = tuple(int(n) for n in shape)
        kept = [(x, tuple(rel)) for x, rel in operands if not x.constant]
        if any(x.elements is not None for x, _ in kept):
            only = kept[0]
            if (
                len(kept) == 1
                and only[0].shape == shape
                and all(isinstance(r, Same) and r.dim == d for d, r in enumerate(only[1]))
            ):
                return only[0]  # an element-wise op keeps every element where it is
            raise Unsupported("an operation on a tensor whose elements follow no layout")
        for x, rel in kept:
            if len(rel) != len(x.shape):
                raise InvalidSpecError(f"{op}: {len(rel)} relations for {len(x.shape)} dims")
        if not kept:
            return self.constant(shape)
        # cells: split each output dim at the part boundaries of Same operand dims
        cuts: list[set[int]] = [{0, n} for n in shape]
        for x, rel in kept:
            for d, r in enumerate(rel):
                if isinstance(r, Same) and x.shape[d] == shape[r.dim] and shape[r.dim] > 1:
                    for p in x.parts:
                        cuts[r.dim].update(p.region[d])
        bounds = [sorted(c) for c in cuts]
        spans = [list(itertools.pairwise(b)) if len(b) > 1 else [(0, 0)] for b in bounds]
        parts: list[Part] = []
        for cell in itertools.product(*spans):
            part = self._cell(name, op, shape, tuple(cell), kept, measured)
            if part is not None:
                parts.append(part)
        return TensorRef(shape, tuple(parts))

    def _cell(
        self,
        name: str,
        op: str,
        shape: tuple[int, ...],
        cell: Region,
        operands: Sequence[tuple[TensorRef, tuple[Relation, ...]]],
        measured: bool,
    ) -> Part | None:
        # the parts that feed the cell, cropped to it along their Same dims
        feeds: list[tuple[Part, tuple[Relation, ...], tuple[int, ...]]] = []
        for x, rel in operands:
            for p in x.parts:
                cropped = self._crop_to_cell(p, x.shape, rel, shape, cell)
                if cropped is not None:
                    feeds.append((cropped, rel, x.shape))
        if not feeds:
            return None
        # a window slides over whole axes: first read whole the digits of the reduced
        # dims (space-to-depth channels), so that what is left of each axis is simple
        for i, (p, rel, in_shape) in enumerate(feeds):
            if any(isinstance(r, Slide) for r in rel):
                mixed = [d for d, r in enumerate(rel) if isinstance(r, (Reduce, Mix))]
                if any(_spatial(p.layout[d]) for d in mixed):
                    feeds[i] = (self._free(f"{name}.gather", op, p, mixed), rel, in_shape)
        # a window slides along one whole axis per dim: re-index dims that hold an axis
        # in another order or with repeats (pixel shuffles written as reshapes)
        for i, (p, rel, in_shape) in enumerate(feeds):
            for d, r in enumerate(rel):
                if isinstance(r, Slide):
                    p = self.simple(p, d, f"{name}.relayout")[0]
            feeds[i] = (p, rel, in_shape)
        out_dims: list[Dim | None] = [None] * len(shape)
        claimed: set[Atom] = set()
        owner: dict[int, str] = {}  # axis -> the node whose positions the output keeps
        # the output atoms: first claimant per output dim, in order of operands; an axis
        # keeps the positions of one node, each digit in one dim
        for p, rel, _ in feeds:
            for d, r in enumerate(rel):
                if not isinstance(r, Same) or out_dims[r.dim] is not None:
                    continue
                atoms = _spatial(p.layout[d])
                if (
                    atoms
                    and not set(atoms) & claimed
                    and all(owner.get(a, p.node) == p.node for a, _, _ in atoms)
                    and _dim_size(p.layout[d]) == cell[r.dim][1] - cell[r.dim][0]
                ):
                    out_dims[r.dim] = p.layout[d]
                    claimed.update(atoms)
                    owner.update((a, p.node) for a, _, _ in atoms)
        slide_axes: dict[int, tuple[int, Window]] = {}
        for p, rel, _ in feeds:
            for d, r in enumerate(rel):
                if isinstance(r, Slide):
                    axis = _simple_axis(p.layout[d], self.extents(p.node))
                    if axis is None:
                        continue  # a window over a dim without positions (channels)
                    if axis in slide_axes and slide_axes[axis][0] != r.dim:
                        raise Unsupported("two windows over one axis")
                    slide_axes[axis] = (r.dim, r.window)
        # a block without positions along a slid dim (a padding column written in
        # place, a broadcast): give it the positions of the block it occupies
        for i, (p, rel, in_shape) in enumerate(feeds):
            for d, r in enumerate(rel):
                if not isinstance(r, Slide) or _spatial(p.layout[d]):
                    continue
                axes = [a for a, (od, _) in slide_axes.items() if od == r.dim]
                if axes:
                    p = self._spread(p, d, axes[0])
                    feeds[i] = (p, rel, in_shape)
        # output extents: kept digits renormalised, slid axes resized
        kept_atoms: dict[int, list[tuple[int, int, int]]] = {}  # axis -> (dim, size, step)
        for d, dim in enumerate(out_dims):
            if dim is None:
                continue
            for a, n, s in _spatial(dim):
                kept_atoms.setdefault(a, []).append((d, n, s))
        new_step: dict[tuple[int, int, int], int] = {}  # (axis, size, old step) -> new step
        extents = [1] * self.ndim
        for a, atoms in kept_atoms.items():
            if a in slide_axes:
                continue
            step = 1
            for _, n, s in sorted(atoms, key=lambda t: t[2]):
                new_step[(a, n, s)] = step
                step *= n
            extents[a] = step
        for a, (d, _) in slide_axes.items():
            extents[a] = shape[d]
        # the cell's layout
        layout: list[Dim] = []
        for d in range(len(shape)):
            size = cell[d][1] - cell[d][0]
            dim = out_dims[d]
            slid = [a for a, (sd, _) in slide_axes.items() if sd == d]
            if slid:
                # a slid axis keeps its position even at size 1: a later window (a pad,
                # an upsampling) may widen it again
                layout.append(((slid[0], size, 1),) if size > 0 else _flat(size))
            elif dim is None:
                layout.append(_flat(size))
            else:
                layout.append(
                    tuple((a, m, new_step[(a, m, s)]) if a >= 0 else (a, m, s) for a, m, s in dim)
                )
        # the edges
        edges: list[tuple[str, list[Window]]] = []
        for p, rel, _ in feeds:
            edges.append((p.node, self._windows(p, rel, out_dims, new_step, slide_axes)))
        out_extents = tuple(extents)
        # one unit reading a one-unit source: the identity (a broadcast would make the
        # jump 0, the mark of a global window)
        for _, windows in edges:
            for a, w in enumerate(windows):
                if w == BROADCAST and out_extents[a] == 1:
                    windows[a] = IDENTITY
        if (
            len(edges) == 1
            and not measured
            and self.extents(edges[0][0]) == out_extents
            and all(
                w == IDENTITY or (w == BROADCAST and n == 1)
                for w, n in zip(edges[0][1], out_extents, strict=True)
            )
        ):
            return Part(edges[0][0], cell, tuple(layout))
        node = self.add_node(name, op, out_extents, edges, shape, measured=measured)
        return Part(node, cell, tuple(layout))

    def _free(self, name: str, op: str, p: Part, dims: Sequence[int]) -> Part:
        """A node that reads the digits in ``dims`` of ``p`` whole (those dims lose their
        positions); the other digits keep theirs, renumbered."""
        layout = [_flat(_dim_size(dim)) if d in dims else dim for d, dim in enumerate(p.layout)]
        atoms = sorted((atom for dim in layout for atom in _spatial(dim)), key=lambda t: t[2])
        new_step: dict[Atom, int] = {}
        extents = [1] * self.ndim
        for a, n, s in atoms:
            new_step[(a, n, s)] = extents[a]
            extents[a] *= n
        kept: dict[int, list[KeptDigit]] = {}
        free: dict[int, list[FreeDigit]] = {}
        for d, dim in enumerate(p.layout):
            for a, n, s in _spatial(dim):
                if d in dims:
                    free.setdefault(a, []).append((n, s))
                else:
                    kept.setdefault(a, []).append((n, new_step[(a, n, s)], s))
        source = self.extents(p.node)
        windows = [
            digits_window(tuple(kept.get(a, ())), tuple(free.get(a, ())), source[a])
            for a in range(self.ndim)
        ]
        node = self.add_node(name, op, tuple(extents), [(p.node, windows)], None)
        renumbered = tuple(
            _tidy((a, n, new_step[(a, n, s)]) if a >= 0 else (a, n, s) for a, n, s in dim)
            for dim in layout
        )
        return Part(node, p.region, renumbered)

    def simple(self, p: Part, d: int, name: str = "relayout") -> tuple[Part, int | None]:
        """``p`` with dim ``d`` indexing one whole axis position by position, and that
        axis (None for a dim without positions).

        A dim that holds all the digits of one axis, in another order or mixed with
        digits of no axis (a pixel shuffle written as reshapes: each position repeated),
        gets a node that re-indexes it.
        """
        dim = p.layout[d]
        spatial = _spatial(dim)
        if not spatial:
            return p, None
        ext = self.extents(p.node)
        if len(dim) == 1 and spatial[0][2] == 1 and ext[spatial[0][0]] == spatial[0][1]:
            return p, spatial[0][0]
        axes = {a for a, _, _ in spatial}
        if len(axes) != 1:
            raise Unsupported("a sliding window over a dim that packs several axes")
        axis = axes.pop()
        elsewhere = any(
            a == axis for k, other in enumerate(p.layout) if k != d for a, _, _ in other
        )
        if elsewhere or math.prod(n for _, n, _ in spatial) != ext[axis]:
            raise Unsupported("a sliding window over part of an axis (inside windows)")
        kept: list[KeptDigit] = []
        place = 1
        for a, n, s in reversed(dim):
            if a == axis:
                kept.append((n, place, s))
            place *= n
        size = _dim_size(dim)
        windows: list[Window] = [IDENTITY] * self.ndim
        windows[axis] = digits_window(tuple(kept), (), ext[axis])
        extents = list(ext)
        extents[axis] = size
        node = self.add_node(name, "relayout", tuple(extents), [(p.node, windows)], None)
        layout = list(p.layout)
        layout[d] = ((axis, size, 1),)
        return Part(node, p.region, tuple(layout)), axis

    def _spread(self, p: Part, d: int, axis: int) -> Part:
        """``p`` given positions along ``axis`` on dim ``d``, which it does not vary along."""
        size = p.region[d][1] - p.region[d][0]
        windows: list[Window] = [IDENTITY] * self.ndim
        windows[axis] = BROADCAST
        extents = list(self.extents(p.node))
        if extents[axis] != 1:
            raise Unsupported("a block whose positions sit in another dim")
        extents[axis] = size
        node = self.add_node("spread", "broadcast", tuple(extents), [(p.node, windows)], None)
        layout = list(p.layout)
        layout[d] = ((axis, size, 1),)
        return Part(node, p.region, tuple(layout))

    def _crop_to_cell(
        self,
        p: Part,
        in_shape: tuple[int, ...],
        rel: tuple[Relation, ...],
        shape: tuple[int, ...],
        cell: Region,
    ) -> Part | None:
        """``p`` restricted to the cell along its Same dims (None: it does not feed it)."""
        region = list(p.region)
        layout = list(p.layout)
        for d, r in enumerate(rel):
            if not isinstance(r, Same):
                continue
            if in_shape[d] != shape[r.dim] or shape[r.dim] <= 1:
                continue  # broadcast
            lo, hi = cell[r.dim]
            a, b = max(lo, p.region[d][0]), min(hi, p.region[d][1])
            if b <= a:
                return None
            if (a, b) != p.region[d]:
                if _spatial(p.layout[d]):
                    raise Unsupported("positions of a dim split between blocks")
                region[d] = (a, b)
                layout[d] = _flat(b - a)
        return Part(p.node, tuple(region), tuple(layout))

    def _windows(
        self,
        p: Part,
        rel: tuple[Relation, ...],
        out_dims: list[Dim | None],
        new_step: dict[tuple[int, int, int], int],
        slide_axes: dict[int, tuple[int, Window]],
    ) -> list[Window]:
        """The window per axis through which the output reads part ``p``."""
        kept: dict[int, list[KeptDigit]] = {}
        free: dict[int, list[FreeDigit]] = {}
        windows: list[Window | None] = [None] * self.ndim
        for d, r in enumerate(rel):
            atoms = _spatial(p.layout[d])
            if not atoms:
                continue
            if isinstance(r, Slide):
                axis = atoms[0][0]
                windows[axis] = _shifted(r.window, p.region[d][0])
                continue
            target = out_dims[r.dim] if isinstance(r, Same) else None
            # digits in the same places of the dim take the same values: another
            # node's positions (the windows of unfold beside the blocks of queries)
            # follow the output's digit for digit
            aligned: dict[Atom, Atom] = {}
            dim = p.layout[d]
            if target is not None and len(dim) == len(target):
                for mine, theirs in zip(dim, target, strict=True):
                    if mine[0] == theirs[0] and mine[1] == theirs[1] and mine[0] >= 0:
                        aligned[mine] = theirs
            for a, n, s in atoms:
                if a in slide_axes:
                    raise Unsupported("a window over an axis that is also read otherwise")
                match = aligned.get((a, n, s))
                if match is None and target is not None and (a, n, s) in target:
                    match = (a, n, s)
                if match is not None:
                    kept.setdefault(a, []).append((n, new_step[match], s))
                else:
                    free.setdefault(a, []).append((n, s))
        ext = self.extents(p.node)
        out: list[Window] = []
        for a in range(self.ndim):
            w = windows[a]
            if w is not None:
                out.append(w)
                continue
            if a in slide_axes:
                # the part has no position along a slid axis: broadcast
                out.append(BROADCAST)
                continue
            out.append(digits_window(tuple(kept.get(a, ())), tuple(free.get(a, ())), ext[a]))
        return out


def _pad_ids(ids: np.ndarray, pads: Sequence[tuple[int, int]], mode: PadMode) -> np.ndarray:
    """Element ids padded as the tensor is (constants are ``-1``)."""
    cropped = tuple(
        slice(max(0, -lo), n - max(0, -hi)) for n, (lo, hi) in zip(ids.shape, pads, strict=True)
    )
    ids = ids[cropped]
    widths = [(max(0, lo), max(0, hi)) for lo, hi in pads]
    if mode is PadMode.ZEROS:
        return np.pad(ids, widths, constant_values=-1)
    if mode is PadMode.REFLECT:
        return np.pad(ids, widths, mode="reflect")
    if mode is PadMode.REPLICATE:
        return np.pad(ids, widths, mode="edge")
    return np.pad(ids, widths, mode="wrap")


def _shifted(window: Window, start: int) -> Window:
    """``window`` for a block that starts at ``start`` of its dim (zeros elsewhere)."""
    if start == 0:
        return window
    if isinstance(window, Conv) and window.pad_mode is PadMode.ZEROS:
        return Conv(window.kernel, window.stride, window.dilation, window.offset - start)
    raise Unsupported("a window over a block of a concatenation")


def _reshape_groups(old: Sequence[int], new: Sequence[int]) -> list[tuple[list[int], list[int]]]:
    """Pair runs of old dims with runs of new dims of the same element count; a size-1
    dim that is only inserted or removed is a group of its own.

    >>> _reshape_groups((2, 3, 4), (6, 4))
    [([0, 1], [0]), ([2], [1])]
    >>> _reshape_groups((1, 197, 8), (1, 1, 197, 8))
    [([0], [0]), ([], [1]), ([1], [2]), ([2], [3])]
    """
    groups: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(old) or j < len(new):
        if i < len(old) and old[i] == 1 and (j >= len(new) or new[j] != 1):
            groups.append(([i], []))
            i += 1
            continue
        if j < len(new) and new[j] == 1 and (i >= len(old) or old[i] != 1):
            groups.append(([], [j]))
            j += 1
            continue
        if i >= len(old) or j >= len(new):
            raise Unsupported("reshape")
        olds, news = [i], [j]
        po, pn = old[i], new[j]
        i += 1
        j += 1
        while po != pn:
            if po < pn and i < len(old):
                olds.append(i)
                po *= old[i]
                i += 1
            elif pn < po and j < len(new):
                news.append(j)
                pn *= new[j]
                j += 1
            else:
                raise Unsupported("reshape")
        groups.append((olds, news))
    return groups
