"""Layouts of tensors: which spatial position each element stands for (numpy only).

The vocabulary of :mod:`rfmap.builder`.  A dim of a tensor is a tuple of *atoms*
``(axis, size, step)`` in row-major order: ``axis >= 0`` is a spatial axis of the
input, whose position is the mixed-radix number ``sum(digit * step)`` over that axis's
atoms; ``axis == -1`` is anything else (batch, channels, heads), with step 0.  A
:class:`TensorRef` is a tensor tiled into :class:`Part` blocks, each backed by one graph
node; :class:`Same`, :class:`Reduce`, :class:`Mix` and :class:`Slide` say how an operand
dim relates to the output of an operation.

>>> plain_layout((1, 3, 8), (None, None, 0))
(((-1, 1, 0),), ((-1, 3, 0),), ((0, 8, 1),))
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .windows import Window

__all__ = [
    "Atom",
    "Dim",
    "Layout",
    "Mix",
    "Part",
    "Reduce",
    "Region",
    "Relation",
    "Same",
    "Slide",
    "TensorRef",
    "Unsupported",
    "plain_layout",
]


class Unsupported(Exception):
    """An operation that the layout algebra cannot express (the frontend measures it)."""


#: ``(axis, size, step)``: one digit of a dim (``axis == -1``: not spatial, step 0).
Atom = tuple[int, int, int]
Dim = tuple[Atom, ...]
Layout = tuple[Dim, ...]
Region = tuple[tuple[int, int], ...]


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
