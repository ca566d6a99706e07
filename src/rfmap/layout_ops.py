"""Data movement on tensors: reshapes, permutations, slices, paddings, concatenation
(numpy only).

These operations of :class:`~rfmap.builder.GraphBuilder` change where elements sit and
create a node only when a spatial axis is cut, shifted or padded.  What no layout
expresses is followed element by element (:mod:`rfmap.elements`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, cast

import numpy as np

from .errors import InvalidSpecError
from .layouts import (
    Atom,
    Dim,
    Part,
    Region,
    TensorRef,
    Unsupported,
    _flat,
    _full,
    _packed,
    _reshape_groups,
    _simple_axis,
    _spatial,
    _split_atoms,
)
from .windows import BROADCAST, IDENTITY, Conv, PadMode, Roll, Whole, Window, digits_window

if TYPE_CHECKING:
    from .builder import GraphBuilder
    from .elements import ElementTable

__all__ = ["LayoutOps"]


class LayoutOps:
    """The data-movement operations of :class:`~rfmap.builder.GraphBuilder`."""

    ndim: int
    token_nodes: set[str]

    if TYPE_CHECKING:

        def extents(self, node: str) -> tuple[int, ...]: ...

        def add_node(
            self,
            name: str,
            op: str,
            extents: tuple[int, ...],
            edges: Sequence[tuple[str, Sequence[Window]]],
            shape: Sequence[int] | None,
            measured: bool = False,
        ) -> str: ...

        def simple(self, p: Part, d: int, name: str = "relayout") -> tuple[Part, int | None]: ...

        @property
        def elements(self) -> ElementTable: ...

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

        builder = cast("GraphBuilder", self)
        return to_ref(builder, move(to_ids(builder, x)))

    # -- nodes ---------------------------------------------------------------------------
    def merged(self, x: TensorRef, name: str = "merge") -> str:
        """One node standing for the whole tensor ``x`` (its parts' union)."""
        if x.constant:
            raise Unsupported("a tensor that does not depend on the input")
        if x.elements is not None:
            raise Unsupported("a tensor whose elements follow no layout")
        if len(x.parts) == 1:
            return x.parts[0].node
        if any(p.node in self.token_nodes for p in x.parts):
            # pooled tokens have no position in a grid: one node would read them all
            raise Unsupported("a map made of pooled tokens")
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
        if len(x.parts) > 1 and any(p.node in self.token_nodes for p in x.parts):
            # pooled tokens sit at different positions: one node for all would read all
            raise Unsupported("a reshape across pooled tokens")
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

    def squeeze(self, x: TensorRef, dims: Sequence[int]) -> TensorRef:
        """``x`` without its size-1 ``dims`` (``squeeze(dim)``): unlike a reshape, which
        cannot tell size-1 dims apart, the dims that stay keep their positions."""
        drop = {d % len(x.shape) for d in dims if x.shape[d % len(x.shape)] == 1}
        if not drop:
            return x
        keep = [d for d in range(len(x.shape)) if d not in drop]
        shape = tuple(x.shape[d] for d in keep)
        if x.elements is not None:
            return replace(x, shape=shape, elements=x.elements.reshape(shape), scores=None)
        parts = tuple(
            Part(p.node, tuple(p.region[d] for d in keep), tuple(p.layout[d] for d in keep))
            for p in x.parts
        )
        kept_pairs = x.scores is not None and not drop & {len(x.shape) - 2, len(x.shape) - 1}
        return replace(x, shape=shape, parts=parts, scores=x.scores if kept_pairs else None)

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

            builder = cast("GraphBuilder", self)
            ids = [to_ids(builder, x) for x in xs]
            return to_ref(builder, np.concatenate(ids, axis=d))
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
                windows[axis] = Roll(int(shift) % n, n)
                changed = True
        if not changed:
            return x
        node = self.add_node(name, "roll", self.extents(part.node), [(part.node, windows)], x.shape)
        return TensorRef(x.shape, (Part(node, part.region, part.layout),))

    # -- operations that read positions -------------------------------------------------


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
