"""Rules of the jaxpr primitives that read neighbourhoods of positions (needs jax).

Convolutions (any dimension numbers, strides, padding, lhs and rhs dilation, feature
and batch groups), windowed reductions (pools), paddings (interior padding too),
cumulative scans, concatenations, reversals, tilings, gathers at known indices, and
contractions with a known constant matrix (resizing) become windows of the graph; see
:mod:`rfmap.frontends.jax_rules` for the registry.  An lhs (base) dilation is the
zero-insertion of a transposed convolution: a :class:`~rfmap.windows.Transposed` window,
or a dilation node followed by a strided window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from ..builder import Part, Reduce, Relation, Same, Slide, TensorRef, Unsupported
from ..windows import BROADCAST, IDENTITY, Conv, Jump, PadMode, Table, Transposed, Window
from .jax_rules import _ints, _out_shapes, register_jax_rule

if TYPE_CHECKING:
    from .jax import JaxContext

__all__ = ["MatrixTable", "merge_dim", "whole_dims", "window_of", "windowed"]


@dataclass(frozen=True)
class MatrixTable(Table):
    """The non-zero pattern of a constant matrix over an axis (a resize, a fixed filter):
    a :class:`~rfmap.windows.Table` whose jump is ``size_in / size_out``."""

    size_in: int = 1

    @property
    def scale(self) -> Jump:
        n_out = len(self.windows)
        ratio = Fraction(self.size_in, n_out) if n_out else Fraction(0)
        return int(ratio) if ratio.denominator == 1 else ratio

    def describe(self) -> str:
        return f"matrix {self.size_in}->{len(self.windows)}"


def window_of(
    kernel: int, stride: int, pad_lo: int, lhs_dilation: int, rhs_dilation: int
) -> Window | None:
    """The window of a convolution-like operation on one axis, when one window does it
    (None: a strided window over an lhs-dilated axis, done in two steps).

    Unit ``u`` reads the dilated input at ``u*stride - pad_lo + t*rhs_dilation``; the
    dilated input holds input ``x`` at ``x*lhs_dilation`` (zeros in between).

    >>> window_of(3, 2, 1, 1, 1)
    Conv(kernel=3, stride=2, dilation=1, offset=-1, pad_mode=<PadMode.ZEROS: 'zeros'>)
    >>> window_of(4, 1, 2, 2, 1)   # a transposed convolution, stride 2, padding 1
    Transposed(kernel=4, stride=2, dilation=1, padding=1)
    """
    if lhs_dilation == 1:
        return Conv(kernel, stride, rhs_dilation, -pad_lo)
    if stride == 1:
        return Transposed(kernel, lhs_dilation, rhs_dilation, (kernel - 1) * rhs_dilation - pad_lo)
    return None


def _dilate(ctx: JaxContext, x: TensorRef, dilations: Sequence[int]) -> TensorRef:
    """Insert ``dilation - 1`` zeros between elements of each dim (lhs/base dilation)."""
    shape = tuple((n - 1) * d + 1 if n else 0 for n, d in zip(x.shape, dilations, strict=True))
    rel: list[Relation] = [
        Same(k) if d == 1 else Slide(k, Transposed(1, d)) for k, d in enumerate(dilations)
    ]
    return ctx.builder.apply(f"{ctx.name}.dilate", "dilate", shape, [(x, rel)])


#: How one dim of a windowed operation reads its operand: a plain relation, or
#: ``(kernel, stride, pad_lo, lhs_dilation, rhs_dilation)``.
DimSpec = Union[Relation, tuple[int, int, int, int, int]]  # noqa: UP007


def windowed(
    ctx: JaxContext,
    x: TensorRef,
    out_shape: Sequence[int],
    specs: Sequence[DimSpec],
    others: Sequence[tuple[TensorRef, Sequence[Relation]]] = (),
) -> TensorRef:
    """A convolution-like operation: ``specs[d]`` says how output dim ``d`` reads dim
    ``d`` of ``x`` (see :data:`DimSpec`); ``others`` are extra operands."""
    x = whole_dims(ctx, x)
    specs = list(specs)
    two = [
        s[3] if isinstance(s, tuple) and s[3] > 1 and s[1] > 1 and s[0] > 0 else 1 for s in specs
    ]
    if any(t > 1 for t in two):
        # a strided window over a dilated axis: dilate first (a node), then slide
        x = _dilate(ctx, x, two)
        specs = [
            (s[0], s[1], s[2], 1, s[4]) if isinstance(s, tuple) and t > 1 else s
            for s, t in zip(specs, two, strict=True)
        ]
    rel: list[Relation] = []
    for d, spec in enumerate(specs):
        if not isinstance(spec, tuple):
            rel.append(spec)
        elif spec == (1, 1, 0, 1, 1) and x.shape[d] == out_shape[d]:
            rel.append(Same(d))
        else:
            window = window_of(*spec)
            assert window is not None
            rel.append(Slide(d, window))
    return ctx.builder.apply(ctx.name, ctx.op, out_shape, [(x, rel), *others])


def _spatial_atoms(dim: Any) -> list[Any]:
    return [atom for atom in dim if atom[0] >= 0]


def whole_dims(ctx: JaxContext, x: TensorRef) -> TensorRef:
    """``x`` with every spatial dim held whole by one node: blocks of a concatenation
    along a spatial dim (``jnp.pad`` modes, causal caches) become one node that reads
    each block through a table (positions outside every block read nothing)."""
    for d in range(len(x.shape)):
        if any(_spatial_atoms(p.layout[d]) and p.region[d] != (0, x.shape[d]) for p in x.parts):
            x = merge_dim(ctx, x, d)
    return x


def merge_dim(ctx: JaxContext, x: TensorRef, d: int) -> TensorRef:
    """One node for the blocks of ``x`` along dim ``d``, which they split along one
    spatial axis: each block is a whole axis of its node, or a node without that axis
    (broadcast along the block).  Raises :class:`Unsupported` for anything else."""
    b = ctx.builder
    parts = [p for p in x.parts if all(hi > lo for lo, hi in p.region)]
    axis = None
    for p in parts:
        atoms = p.layout[d]
        spatial = _spatial_atoms(atoms)
        if not spatial:
            continue
        if len(atoms) != 1 or atoms[0][2] != 1 or atoms[0][1] != b.extents(p.node)[atoms[0][0]]:
            raise Unsupported("a concatenation along a dim that packs several positions")
        if axis not in (None, atoms[0][0]):
            raise Unsupported("a concatenation of different axes in one dim")
        axis = atoms[0][0]
    if axis is None:
        return x
    first = next(p for p in parts if _spatial_atoms(p.layout[d]))
    extents = list(b.extents(first.node))
    extents[axis] = x.shape[d]
    edges = []
    for p in parts:
        if any(p.region[k] != (0, n) for k, n in enumerate(x.shape) if k != d) or any(
            p.layout[k] != first.layout[k] for k in range(len(x.shape)) if k != d
        ):
            raise Unsupported("a concatenation of blocks of blocks")
        ext = b.extents(p.node)
        lo, hi = p.region[d]
        # a block without the axis (broadcast along it) reads its node's unit 0
        shift = 0 if _spatial_atoms(p.layout[d]) else None
        if shift is None and ext[axis] != 1:
            raise Unsupported("a concatenation of a block that is not a whole axis")
        windows: list[Window] = []
        for a in range(b.ndim):
            if a == axis:
                if len(parts) == 1 and shift is not None:
                    windows.append(Conv(1, 1, 1, -lo))
                else:
                    table = tuple(
                        ((u - lo if shift is not None else 0),) if lo <= u < hi else ()
                        for u in range(x.shape[d])
                    )
                    windows.append(Table(table))
            elif ext[a] == extents[a]:
                windows.append(IDENTITY)
            elif ext[a] == 1:
                windows.append(BROADCAST)
            else:
                raise Unsupported("a concatenation of blocks on different grids")
        edges.append((p.node, windows))
    node = b.add_node(f"{ctx.name}.merge", "merge", tuple(extents), edges, x.shape)
    layout = list(first.layout)
    layout[d] = ((axis, x.shape[d], 1),)
    region = tuple((0, n) for n in x.shape)
    return TensorRef(x.shape, (Part(node, region, tuple(layout)),))


def _table_node(ctx: JaxContext, x: TensorRef, d: int, table: Sequence[tuple[int, ...]]) -> Part:
    """A node reading the simple spatial dim ``d`` of the one part of ``x`` through a table."""
    b = ctx.builder
    part = x.single
    if part is None:
        raise Unsupported("an index map of a concatenation")
    atoms = part.layout[d]
    axis = atoms[0][0]
    if len(atoms) != 1 or axis < 0 or atoms[0][2] != 1 or atoms[0][1] != b.extents(part.node)[axis]:
        raise Unsupported("an index map of a dim that packs several positions")
    windows: list[Window] = [IDENTITY] * b.ndim
    windows[axis] = Table(tuple(table))
    extents = list(b.extents(part.node))
    extents[axis] = len(table)
    node = b.add_node(ctx.name, ctx.op, tuple(extents), [(part.node, windows)], x.shape)
    layout = list(part.layout)
    layout[d] = ((axis, len(table), 1),)
    return Part(node, part.region, tuple(layout))


# -- rules ------------------------------------------------------------------------------


@register_jax_rule("cumsum", "cumprod", "cummax", "cummin", "cumlogsumexp")
def _cumulative(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> TensorRef:
    (x,) = ins
    axis = int(eqn.params["axis"]) % len(x.shape)
    n = x.shape[axis]
    # unit u reads [0, u] (a causal window as wide as the axis), or [u, n) reversed
    window = Conv(n, 1, 1, 0 if eqn.params.get("reverse") else -(n - 1))
    rel: list[Relation] = [Slide(d, window) if d == axis else Same(d) for d in range(len(x.shape))]
    try:
        return ctx.builder.apply(ctx.name, ctx.op, x.shape, [(whole_dims(ctx, x), rel)])
    except Unsupported:
        return ctx.builder.mix(ctx.name, ctx.op, x, [axis])


@register_jax_rule("concatenate")
def _concatenate(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> TensorRef:
    d = int(eqn.params["dimension"])
    out = ctx.builder.concat(ins, d, ctx.name, ctx.op)
    if any(_spatial_atoms(p.layout[d]) for p in out.parts) and out.single is None:
        try:
            return merge_dim(ctx, out, d)
        except Unsupported:
            return out  # blocks kept (tokens and a class token, say)
    return out


@register_jax_rule("rev")
def _rev(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> TensorRef:
    x = ins[0]
    for d in eqn.params["dimensions"]:
        d = int(d) % len(x.shape)
        n = x.shape[d]
        if n == 1 or x.constant:
            continue
        if any(_spatial_atoms(p.layout[d]) for p in x.parts):
            table = tuple((n - 1 - u,) for u in range(n))
            x = TensorRef(x.shape, (_table_node(ctx, whole_dims(ctx, x), d, table),))
            continue
        parts = []
        for p in x.parts:  # channels reversed: mirror the blocks
            region = list(p.region)
            lo, hi = region[d]
            region[d] = (n - hi, n - lo)
            parts.append(Part(p.node, tuple(region), p.layout))
        x = TensorRef(x.shape, tuple(parts))
    return x


@register_jax_rule("tile")
def _tile(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> TensorRef:
    x = ins[0]
    b = ctx.builder
    for d, reps in enumerate(eqn.params["reps"]):
        reps = int(reps)
        if reps == 1:
            continue
        if any(_spatial_atoms(p.layout[d]) for p in x.parts):
            # unit u reads u mod n: a circular fold
            shape = list(x.shape)
            shape[d] *= reps
            rel: list[Relation] = [
                Slide(k, Conv(1, 1, 1, 0, PadMode.CIRCULAR)) if k == d else Same(k)
                for k in range(len(shape))
            ]
            x = b.apply(ctx.name, ctx.op, shape, [(whole_dims(ctx, x), rel)])
        else:
            x = b.concat([x] * reps, d, ctx.name, ctx.op)
    return x


@register_jax_rule("pad")
def _pad(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> TensorRef:
    x, value = ins
    b = ctx.builder
    (shape,) = _out_shapes(eqn)
    config = [(int(lo), int(hi), int(i)) for lo, hi, i in eqn.params["padding_config"]]
    if not any(i for _, _, i in config):
        out = b.pad(x, [(lo, hi) for lo, hi, _ in config], PadMode.ZEROS, ctx.name, ctx.op)
    else:
        # interior padding inserts zeros between elements: an upsampling by ``i + 1``
        rel: list[Relation] = []
        for d, (lo, hi, i) in enumerate(config):
            if (lo, hi, i) == (0, 0, 0):
                rel.append(Same(d))
            elif i == 0:
                rel.append(Slide(d, Conv(1, 1, 1, -lo)))
            else:
                rel.append(Slide(d, Transposed(1, i + 1, 1, -lo)))
        out = b.apply(ctx.name, ctx.op, shape, [(whole_dims(ctx, x), rel)])
    if not value.constant:
        out = b.elementwise(ctx.name, ctx.op, shape, [out, value])
    return out


@register_jax_rule("gather")
def _gather(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> TensorRef:
    """A gather of whole slices at known indices along one dim (``jnp.take``, nearest
    resizing): a table of the positions each output index reads."""
    x, indices = ins
    p = eqn.params
    dn = p["dimension_numbers"]
    starts = tuple(dn.start_index_map)
    index_shape = tuple(eqn.invars[1].aval.shape)
    if (
        not indices.constant
        or len(starts) != 1
        or tuple(dn.collapsed_slice_dims) != starts
        or tuple(getattr(dn, "operand_batching_dims", ()))
        or len(index_shape) != 2
        or index_shape[-1] != 1
    ):
        raise Unsupported("a gather that is not a take of whole slices along one dim")
    k = starts[0]
    sizes = [int(n) for n in p["slice_sizes"]]
    if any(sizes[d] != x.shape[d] for d in range(len(x.shape)) if d != k):
        raise Unsupported("a gather of partial slices")
    value = ctx.value(eqn.invars[1])
    if value is None:
        raise Unsupported("a gather at indices that are not constants")
    n = x.shape[k]
    mode = str(p.get("mode", ""))
    table: list[tuple[int, ...]] = []
    for i in np.asarray(value).reshape(-1).tolist():
        if "FILL" in mode and not 0 <= i < n:
            table.append(())  # out of bounds: the fill value
        else:
            table.append((min(max(int(i), 0), n - 1),))
    (shape,) = _out_shapes(eqn)
    offsets = [int(d) for d in dn.offset_dims]
    batch = next(d for d in range(len(shape)) if d not in offsets)
    kept = [d for d in range(len(x.shape)) if d != k]
    rel: list[Relation] = [Same(0)] * len(x.shape)
    for d, out in zip(kept, offsets, strict=True):
        rel[d] = Same(out)
    flat = [t[0] for t in table if t]
    window: Window = (
        MatrixTable(tuple(table), n)
        if len(flat) == len(table) and flat == sorted(flat)
        else Table(tuple(table))
    )
    rel[k] = Slide(batch, window)
    return ctx.builder.apply(ctx.name, ctx.op, shape, [(whole_dims(ctx, x), rel)])


# -- windows ----------------------------------------------------------------------------


@register_jax_rule("conv_general_dilated")
def _conv(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> TensorRef:
    lhs, rhs = ins
    b = ctx.builder
    p = eqn.params
    dn = p["dimension_numbers"]
    lhs_spec, rhs_spec, out_spec = (tuple(int(d) for d in s) for s in dn)
    (out_shape,) = _out_shapes(eqn)
    nd = len(lhs_spec) - 2
    kernel = [rhs.shape[rhs_spec[2 + i]] for i in range(nd)]
    strides = _ints(p.get("window_strides"), nd, 1)
    padding = p.get("padding")
    if isinstance(padding, str):
        from jax import lax

        in_sp = [lhs.shape[lhs_spec[2 + i]] for i in range(nd)]
        padding = lax.padtype_to_pads(in_sp, kernel, strides, padding)
    pads = [(int(lo), int(hi)) for lo, hi in padding]
    lhs_dil = _ints(p.get("lhs_dilation"), nd, 1)
    rhs_dil = _ints(p.get("rhs_dilation"), nd, 1)
    groups = int(p.get("feature_group_count", 1))
    batch_groups = int(p.get("batch_group_count", 1))
    canon_out = [out_shape[d] for d in out_spec]  # (N, C, *spatial)
    x = b.permute(lhs, lhs_spec)
    if groups > 1 and not any(_spatial_atoms(p.layout[1]) for p in x.parts):
        groups = 1  # channels without positions: reading them all is as exact
    if groups > 1:
        # channels that carry positions (space-to-depth): output group g reads input
        # group g only, so split the channels for the groups to pair up
        n, c = x.shape[0], x.shape[1]
        try:
            x = b.reshape(x, (n, groups, c // groups, *x.shape[2:]))
        except Unsupported:
            groups = 1
    batch_rel: Relation = Same(0) if batch_groups == 1 else Reduce()
    if groups > 1:
        shape = [canon_out[0], groups, canon_out[1] // groups, *canon_out[2:]]
        lead: list[Relation] = [batch_rel, Same(1), Reduce()]
    else:
        shape = list(canon_out)
        lead = [batch_rel, Reduce()]
    others: list[tuple[TensorRef, Sequence[Relation]]] = []
    if not rhs.constant:  # a kernel computed from the input: read whole
        others.append((rhs, (Reduce(),) * len(rhs.shape)))
    if lhs.constant:
        out = b.apply(ctx.name, ctx.op, shape, others)
    else:
        specs: list[DimSpec] = list(lead)
        specs += [(kernel[i], strides[i], pads[i][0], lhs_dil[i], rhs_dil[i]) for i in range(nd)]
        out = windowed(ctx, x, shape, specs, others)
    for part in out.parts:  # the table shows the result's real shape
        record = b.nodes[part.node]
        if record.shape == tuple(shape):
            record.shape = tuple(out_shape)
    if groups > 1:
        out = b.reshape(out, canon_out)
    order = [out_spec.index(j) for j in range(len(out_shape))]
    return b.permute(out, order)


def _window_params(eqn: Any, rank: int) -> list[tuple[int, int, int, int, int]]:
    p = eqn.params
    kernel = _ints(p["window_dimensions"], rank, 1)
    strides = _ints(p.get("window_strides"), rank, 1)
    pads = [(int(lo), int(hi)) for lo, hi in p["padding"]]
    base = _ints(p.get("base_dilation"), rank, 1)
    dil = _ints(p.get("window_dilation"), rank, 1)
    return [(kernel[d], strides[d], pads[d][0], base[d], dil[d]) for d in range(rank)]


@register_jax_rule("reduce_window_max", "reduce_window_min", "reduce_window_sum")
def _reduce_window(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> TensorRef:
    (x,) = ins
    (shape,) = _out_shapes(eqn)
    return windowed(ctx, x, shape, _window_params(eqn, len(x.shape)))


@register_jax_rule("reduce_window")
def _reduce_window_general(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> list[TensorRef]:
    shapes = _out_shapes(eqn)
    operands = [x for x in ins[: len(shapes)] if not x.constant]
    inits = [(x, ()) for x in ins[len(shapes) :] if not x.constant]
    union = (
        ctx.builder.elementwise(ctx.name, ctx.op, operands[0].shape, operands)
        if len(operands) > 1
        else operands[0]
    )
    specs: list[DimSpec] = list(_window_params(eqn, len(union.shape)))
    out = windowed(ctx, union, shapes[0], specs, inits)
    return [out] * len(shapes)


# -- contractions -------------------------------------------------------------------------


@register_jax_rule("dot_general")
def _dot_general(ctx: JaxContext, eqn: Any, ins: list[TensorRef]) -> TensorRef:
    lhs, rhs = ins
    (shape,) = _out_shapes(eqn)
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lc, rc, lb, rb = ([int(d) for d in t] for t in (lc, rc, lb, rb))
    nb = len(lb)
    lfree = [d for d in range(len(lhs.shape)) if d not in lc and d not in lb]
    rfree = [d for d in range(len(rhs.shape)) if d not in rc and d not in rb]

    def relations(rank: int, contract: list[int], batch: list[int], free: list[int], at: int):
        rel: list[Relation] = [Reduce()] * rank
        for i, d in enumerate(batch):
            rel[d] = Same(i)
        for i, d in enumerate(free):
            rel[d] = Same(at + i)
        return rel

    lrel = relations(len(lhs.shape), lc, lb, lfree, nb)
    rrel = relations(len(rhs.shape), rc, rb, rfree, nb + len(lfree))
    if rhs.constant != lhs.constant:
        # a known constant matrix over a spatial axis (a resize, a fixed filter): its
        # non-zero pattern is the window
        x, xrel, xc, w_atom, wc, wfree, at = (
            (lhs, lrel, lc, eqn.invars[1], rc, rfree, nb + len(lfree))
            if rhs.constant
            else (rhs, rrel, rc, eqn.invars[0], lc, lfree, nb)
        )
        table = _matrix_table(ctx, x, xc, w_atom, wc, wfree, lb if x is lhs else rb)
        if table is not None:
            xrel = list(xrel)
            xrel[xc[0]] = Slide(at, MatrixTable(table, x.shape[xc[0]]))
            return ctx.builder.apply(ctx.name, ctx.op, shape, [(x, xrel)])
    return ctx.builder.apply(ctx.name, ctx.op, shape, [(lhs, lrel), (rhs, rrel)])


def _matrix_table(
    ctx: JaxContext,
    x: TensorRef,
    x_contract: list[int],
    w_atom: Any,
    w_contract: list[int],
    w_free: list[int],
    batch: list[int],
) -> tuple[tuple[int, ...], ...] | None:
    """Per output unit, the positions a known constant matrix reads along a spatial
    axis of ``x`` (None when the contraction is not one spatial axis by a matrix)."""
    if batch or len(x_contract) != 1 or len(w_contract) != 1 or len(w_free) != 1:
        return None
    part = x.single
    if part is None:
        return None
    atoms = part.layout[x_contract[0]]
    if len(atoms) != 1 or atoms[0][0] < 0 or atoms[0][2] != 1:
        return None
    if atoms[0][1] != ctx.builder.extents(part.node)[atoms[0][0]]:
        return None
    value = ctx.value(w_atom)
    if value is None or np.ndim(value) != 2:
        return None
    matrix = np.asarray(value) != 0
    if w_contract[0] == 1:
        matrix = matrix.T  # rows: the contracted positions; columns: the output units
    return tuple(
        tuple(int(i) for i in np.flatnonzero(matrix[:, u])) for u in range(matrix.shape[1])
    )
