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

import bisect
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

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
from .layout_ops import LayoutOps
from .layouts import (  # noqa: F401 (the vocabulary of the builder, re-exported)
    Atom,
    Dim,
    Layout,
    Mix,
    Part,
    Reduce,
    Region,
    Relation,
    Same,
    Slide,
    TensorRef,
    Unsupported,
    _dim_size,
    _flat,
    _full,
    _layout_extents,
    _packed,
    _reshape_groups,
    _simple_axis,
    _spatial,
    _split_atoms,
    _tidy,
    plain_layout,
)

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
class GraphBuilder(LayoutOps):
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
    #: Nodes of one unit that stand for a pooled token (:func:`rfmap.elements.reduce_ids`):
    #: they have no place in a grid, so no node may merge them.
    token_nodes: set[str] = field(default_factory=set)
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
            if len(kept) == 1 and not any(isinstance(r, Slide) for r in only[1]):
                from .elements import reduce_ids

                return reduce_ids(self, name, op, shape, only[0], only[1])
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
        # the parts that can feed each cell, in order of operands and parts: a part
        # touches the cells its region overlaps along its Same dims (linear in the
        # feeds, not cells x parts)
        candidates: dict[tuple[int, ...], list[tuple[Part, tuple[Relation, ...], tuple[int, ...]]]]
        candidates = {}
        for x, rel in kept:
            for p in x.parts:
                ranges = [range(len(s)) for s in spans]
                for d, r in enumerate(rel):
                    if isinstance(r, Same) and x.shape[d] == shape[r.dim] and shape[r.dim] > 1:
                        lo, hi = p.region[d]
                        first = bisect.bisect_right(bounds[r.dim], lo) - 1
                        last = bisect.bisect_left(bounds[r.dim], hi)
                        old = ranges[r.dim]
                        ranges[r.dim] = range(max(old.start, first), min(old.stop, last))
                for index in itertools.product(*ranges):
                    candidates.setdefault(index, []).append((p, rel, x.shape))
        parts: list[Part] = []
        for index in itertools.product(*(range(len(s)) for s in spans)):
            feeding = candidates.get(index)
            if not feeding:
                continue
            cell = tuple(spans[d][k] for d, k in enumerate(index))
            part = self._cell(name, op, shape, cell, feeding, measured)
            if part is not None:
                parts.append(part)
        return TensorRef(shape, tuple(parts))

    def _cell(
        self,
        name: str,
        op: str,
        shape: tuple[int, ...],
        cell: Region,
        candidates: Sequence[tuple[Part, tuple[Relation, ...], tuple[int, ...]]],
        measured: bool,
    ) -> Part | None:
        # the parts that feed the cell, cropped to it along their Same dims
        feeds: list[tuple[Part, tuple[Relation, ...], tuple[int, ...]]] = []
        for p, rel, in_shape in candidates:
            cropped = self._crop_to_cell(p, in_shape, rel, shape, cell)
            if cropped is not None:
                feeds.append((cropped, rel, in_shape))
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
                # another operand is cut here: this one is cut too (a slice node if the
                # dim holds positions)
                p = self._crop(p, d, a, b)
        return p

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


def _shifted(window: Window, start: int) -> Window:
    """``window`` for a block that starts at ``start`` of its dim (zeros elsewhere)."""
    if start == 0:
        return window
    if isinstance(window, Conv) and window.pad_mode is PadMode.ZEROS:
        return Conv(window.kernel, window.stride, window.dilation, window.offset - start)
    raise Unsupported("a window over a block of a concatenation")
