"""The tensor algebra of rfmap.builder against a brute-force oracle.

The oracle carries, for every element of every tensor, the set of input positions it
depends on (object arrays of frozensets) through the same operations.  Every element
that a part covers must read exactly the positions that the part's node reads at the
element's unit (units mix all their channels, as every operation here does), and every
element that no part covers must read nothing.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rfmap.builder import (
    GraphBuilder,
    Mix,
    Reduce,
    Same,
    Slide,
    TensorRef,
    Unsupported,
    _reshape_groups,
)
from rfmap.graph import support_mask
from rfmap.windows import Conv, Digits, PadMode, Whole

# -- the oracle -------------------------------------------------------------------------


def deps_input(shape, spatial_dims):
    out = np.empty(shape, dtype=object)
    for index in itertools.product(*map(range, shape)):
        out[index] = frozenset({tuple(index[d] for d in spatial_dims)})
    return out


def union(values):
    out: frozenset = frozenset()
    for v in values:
        out |= v
    return out


def empty(shape):
    out = np.empty(shape, dtype=object)
    out.fill(frozenset())
    return out


def o_elementwise(*arrays):
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    b = [np.broadcast_to(a, shape) for a in arrays]
    out = np.empty(shape, dtype=object)
    for index in itertools.product(*map(range, shape)):
        out[index] = union(x[index] for x in b)
    return out


def o_reduce(a, dims, keepdim=False):
    dims = sorted(d % a.ndim for d in dims)
    keep = [d for d in range(a.ndim) if d not in dims]
    shape = tuple(a.shape[d] if d in keep else 1 for d in range(a.ndim))
    out = np.empty(shape, dtype=object)
    for index in itertools.product(*map(range, shape)):
        sel = tuple(index[d] if d in keep else slice(None) for d in range(a.ndim))
        out[index] = union(a[sel].ravel())
    return out if keepdim else out.reshape(tuple(a.shape[d] for d in keep))


def o_mix(a, dims):
    return np.broadcast_to(o_reduce(a, dims, keepdim=True), a.shape).copy()


def o_matmul(a, b):
    n, m = a.shape[-2], b.shape[-1]
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = np.broadcast_to(a, (*batch, *a.shape[-2:]))
    b = np.broadcast_to(b, (*batch, *b.shape[-2:]))
    out = np.empty((*batch, n, m), dtype=object)
    for index in itertools.product(*map(range, batch)):
        for i in range(n):
            for j in range(m):
                out[(*index, i, j)] = union(a[(*index, i)]) | union(b[(*index, slice(None), j)])
    return out


def o_conv(a, k, s, p, channel_dim=1):
    """A zero-padded convolution over the last dims, channels mixed."""
    nd = len(k)
    mixed = o_reduce(a, [channel_dim], keepdim=True)
    sizes = a.shape[-nd:]
    outs = [(n + 2 * pp - kk) // ss + 1 for n, kk, ss, pp in zip(sizes, k, s, p, strict=True)]
    lead = mixed.shape[:-nd]
    out = np.empty((*lead, *outs), dtype=object)
    for index in itertools.product(*map(range, lead)):
        for u in itertools.product(*map(range, outs)):
            found = []
            for t in itertools.product(*map(range, k)):
                pos = [uu * ss - pp + tt for uu, ss, pp, tt in zip(u, s, p, t, strict=True)]
                if all(0 <= q < n for q, n in zip(pos, sizes, strict=True)):
                    found.append(mixed[(*index, *pos)])
            out[(*index, *u)] = union(found)
    return out


# -- checking a TensorRef against the oracle ---------------------------------------------


def unit_of(part, offset):
    """The unit of the part's node at ``offset`` inside the part's block."""
    units = {}
    for d, dim in enumerate(part.layout):
        rest = offset[d]
        sizes = [n for _, n, _ in dim]
        for i, (a, n, s) in enumerate(dim):
            inner = int(np.prod(sizes[i + 1 :], dtype=np.int64))
            digit = (rest // inner) % n
            if a >= 0:
                units[a] = units.get(a, 0) + digit * s
    return units


def check(b: GraphBuilder, ref: TensorRef, deps: np.ndarray, exact: bool = True) -> None:
    assert tuple(ref.shape) == deps.shape
    graph = b.graph([b.merged(ref)] if ref.parts else [next(iter(b.nodes))])
    covered = np.zeros(deps.shape, dtype=bool)
    for part in ref.parts:
        ext = b.extents(part.node)
        by_unit: dict[tuple, frozenset] = {}
        for offset in itertools.product(*(range(hi - lo) for lo, hi in part.region)):
            index = tuple(lo + o for (lo, _), o in zip(part.region, offset, strict=True))
            assert not covered[index], "parts overlap"
            covered[index] = True
            units = unit_of(part, offset)
            unit = tuple(units.get(a, 0) for a in range(b.ndim))
            assert all(0 <= u < n for u, n in zip(unit, ext, strict=True))
            by_unit[unit] = by_unit.get(unit, frozenset()) | deps[index]
        for unit, want in by_unit.items():
            origin, mask = support_mask(graph, part.node, unit, clip=True)
            hits = np.argwhere(mask) + np.asarray(origin, dtype=np.int64)
            got = {tuple(int(v) for v in hit) for hit in hits}
            if exact:
                assert got == set(want), (part.node, unit)
            else:
                assert set(want) <= got, (part.node, unit)
    for index in map(tuple, np.argwhere(~covered)):
        assert not deps[index], f"element {index} depends on the input but no part covers it"


# -- scenarios ---------------------------------------------------------------------------


def windows_of(b, x, xd, h, w, c, ws):
    """NCHW -> (windows, tokens, C), as Swin's window partition."""
    x = b.permute(x, (0, 2, 3, 1))
    xd = xd.transpose(0, 2, 3, 1)
    shape = (1, h // ws, ws, w // ws, ws, c)
    x, xd = b.reshape(x, shape), xd.reshape(shape)
    x, xd = b.permute(x, (0, 1, 3, 2, 4, 5)), xd.transpose(0, 1, 3, 2, 4, 5)
    shape = ((h // ws) * (w // ws), ws * ws, c)
    return b.reshape(x, shape), xd.reshape(shape)


def attention(b, t, td):
    q = t
    kt = b.permute(t, (0, 2, 1))
    scores = b.matmul("scores", "bmm", q, kt, (*t.shape[:-1], t.shape[-2]))
    sd = o_matmul(td, td.transpose(0, 2, 1))
    scores = b.mix("softmax", "softmax", scores, [-1])
    sd = o_mix(sd, [-1])
    out = b.matmul("attn", "bmm", scores, t, t.shape)
    return out, o_matmul(sd, td)


def test_window_attention_reads_its_window():
    b = GraphBuilder(2)
    x = b.input("x", (1, 2, 8, 8), (2, 3))
    xd = deps_input((1, 2, 8, 8), (2, 3))
    t, td = windows_of(b, x, xd, 8, 8, 2, 4)
    out, od = attention(b, t, td)
    check(b, out, od)
    # a unit reads its own 4x4 window: position-dependent Digits windows
    node = out.parts[0].node
    windows = {type(w) for _, ws in b.nodes[node].edges for w in ws}
    assert Digits in windows
    # back to NCHW: reverse the partition
    back = b.reshape(out, (1, 2, 2, 4, 4, 2))
    bd = od.reshape((1, 2, 2, 4, 4, 2))
    back, bd = b.permute(back, (0, 1, 3, 2, 4, 5)), bd.transpose(0, 1, 3, 2, 4, 5)
    back, bd = b.reshape(back, (1, 8, 8, 2)), bd.reshape((1, 8, 8, 2))
    check(b, back, bd)
    assert back.spatial_dims() == {0: 1, 1: 2}


def test_shifted_windows_read_across_the_border():
    b = GraphBuilder(2)
    x = b.input("x", (1, 8, 8, 1), (1, 2))
    xd = deps_input((1, 8, 8, 1), (1, 2))
    r = b.roll(x, (-2, -2), (1, 2))
    rd = np.roll(xd, (-2, -2), (1, 2))
    check(b, r, rd)
    r = b.permute(r, (0, 3, 1, 2))
    t, td = windows_of(b, r, rd.transpose(0, 3, 1, 2), 8, 8, 1, 4)
    out, od = attention(b, t, td)
    check(b, out, od)


def test_class_token_and_global_attention():
    b = GraphBuilder(2)
    x = b.input("x", (1, 3, 4, 4), (2, 3))
    xd = deps_input((1, 3, 4, 4), (2, 3))
    t = b.permute(b.reshape(x, (1, 3, 16)), (0, 2, 1))
    td = xd.reshape(1, 3, 16).transpose(0, 2, 1)
    cls = b.constant((1, 1, 3))
    t = b.concat([cls, t], 1)
    td = np.concatenate([empty((1, 1, 3)), td], 1)
    assert len(t.parts) == 1 and t.parts[0].region[1] == (1, 17)
    check(b, t, td)
    out, od = attention(b, t, td)
    check(b, out, od)
    assert len(out.parts) == 2  # the class token row and the patch rows
    patches = b.slice(out, 1, 1, 17)
    check(b, patches, od[:, 1:])
    grid = b.reshape(b.permute(patches, (0, 2, 1)), (1, 3, 4, 4))
    check(b, grid, od[:, 1:].transpose(0, 2, 1).reshape(1, 3, 4, 4))
    head = b.select(out, 1, 0)
    check(b, head, od[:, 0])
    assert b.extents(head.parts[0].node) == (1, 1)


def test_space_to_depth_then_convolution():
    b = GraphBuilder(2)
    x = b.input("x", (1, 1, 8, 8), (2, 3))
    xd = deps_input((1, 1, 8, 8), (2, 3))
    shape = (1, 1, 4, 2, 4, 2)
    y, yd = b.reshape(x, shape), xd.reshape(shape)
    y, yd = b.permute(y, (0, 1, 3, 5, 2, 4)), yd.transpose(0, 1, 3, 5, 2, 4)
    y, yd = b.reshape(y, (1, 4, 4, 4)), yd.reshape(1, 4, 4, 4)
    conv = b.apply(
        "conv",
        "conv",
        (1, 5, 4, 4),
        [(y, (Same(0), Reduce(), Slide(2, Conv(3, 1, 1, -1)), Slide(3, Conv(3, 1, 1, -1))))],
    )
    cd = o_conv(yd, (3, 3), (1, 1), (1, 1))
    cd = np.broadcast_to(cd, (1, 5, 4, 4))
    check(b, conv, cd)


def test_pooling_over_windows_is_a_block_convolution():
    b = GraphBuilder(2)
    x = b.input("x", (1, 2, 8, 8), (2, 3))
    xd = deps_input((1, 2, 8, 8), (2, 3))
    t, td = windows_of(b, x, xd, 8, 8, 2, 4)
    pooled = b.reduce("pool", "mean", t, [1])
    check(b, pooled, o_reduce(td, [1]))
    (edge,) = b.nodes[pooled.parts[0].node].edges
    assert edge[1] == (Conv(4, 4), Conv(4, 4))


def test_global_reduction_and_linear_over_tokens():
    b = GraphBuilder(1)
    x = b.input("x", (2, 3, 10), (2,))
    xd = deps_input((2, 3, 10), (2,))
    m = b.reduce("mean", "mean", x, [2], keepdim=True)
    check(b, m, o_reduce(xd, [2], keepdim=True))
    (edge,) = b.nodes[m.parts[0].node].edges
    assert edge[1] == (Whole(10),)
    gated = b.elementwise("gate", "mul", x.shape, [x, m])
    check(b, gated, o_elementwise(xd, o_reduce(xd, [2], keepdim=True)))


def test_concatenated_channels_keep_their_parts():
    b = GraphBuilder(1)
    x = b.input("x", (1, 2, 6), (2,))
    xd = deps_input((1, 2, 6), (2,))
    c = b.apply("c", "conv", (1, 2, 6), [(x, (Same(0), Reduce(), Slide(2, Conv(3, 1, 1, -1))))])
    cd = np.broadcast_to(o_conv(xd, (3,), (1,), (1,)), (1, 2, 6))
    cat = b.concat([x, c], 1)
    assert len(cat.parts) == 2
    check(b, cat, np.concatenate([xd, cd], 1))
    # a slice of the channels reads exactly the input it selects
    assert [p.node for p in b.slice(cat, 1, 0, 2).parts] == [x.parts[0].node]
    # a convolution reads every channel: one node with an edge per input
    both = b.apply("d", "conv", (1, 1, 6), [(cat, (Same(0), Mix(1), Slide(2, Conv(1))))])
    assert len(b.nodes[both.parts[0].node].edges) == 2


@pytest.mark.parametrize("mode", [PadMode.ZEROS, PadMode.REPLICATE])
def test_pad_and_strided_slice_of_a_spatial_dim(mode):
    b = GraphBuilder(1)
    x = b.input("x", (1, 1, 7), (2,))
    xd = deps_input((1, 1, 7), (2,))
    p = b.pad(x, [(0, 0), (0, 0), (2, 1)], mode)
    if mode is PadMode.ZEROS:
        pd = np.concatenate([empty((1, 1, 2)), xd, empty((1, 1, 1))], 2)
    else:
        pd = np.concatenate([xd[..., :1], xd[..., :1], xd, xd[..., -1:]], 2)
    check(b, p, pd)
    s = b.slice(p, 2, 1, 10, 3)
    check(b, s, pd[..., 1:10:3])


def test_reshape_groups():
    assert _reshape_groups((4, 6), (2, 2, 6)) == [([0], [0, 1]), ([1], [2])]
    with pytest.raises(Unsupported):
        _reshape_groups((4, 6), (5, 5))


def test_a_window_over_a_reordered_or_repeated_axis_is_reindexed():
    b = GraphBuilder(1)
    x = b.input("x", (1, 6), (1,))
    xd = deps_input((1, 6), (1,))
    shuffled = b.reshape(b.permute(b.reshape(x, (1, 2, 3)), (0, 2, 1)), (1, 6))
    sd = xd.reshape(1, 2, 3).transpose(0, 2, 1).reshape(1, 6)
    assert shuffled.parts[0].layout[1] == ((0, 3, 1), (0, 2, 3))
    conv = b.apply("c", "conv", (1, 6), [(shuffled, (Same(0), Slide(1, Conv(3, 1, 1, -1))))])
    check(b, conv, conv_1d(sd, 3, 1))
    # a pixel shuffle written as reshapes: every position read twice
    up = b.reshape(b.expand(b.reshape(x, (1, 6, 1)), (1, 6, 2)), (1, 12))
    ud = np.broadcast_to(xd.reshape(1, 6, 1), (1, 6, 2)).reshape(1, 12)
    conv = b.apply("u", "conv", (1, 12), [(up, (Same(0), Slide(1, Conv(3, 1, 1, -1))))])
    check(b, conv, conv_1d(ud, 3, 1))
    # two axes packed in one dim cannot slide
    b2 = GraphBuilder(2)
    tokens = b2.reshape(b2.input("y", (1, 3, 4), (1, 2)), (1, 12))
    b = b2
    with pytest.raises(Unsupported):
        b.apply("t", "conv", (1, 12), [(tokens, (Same(0), Slide(1, Conv(3, 1, 1, -1))))])


def conv_1d(deps, k, p):
    """A zero-padded 1D convolution along the last dim of ``(N, L)``."""
    n = deps.shape[-1]
    out = np.empty(deps.shape, dtype=object)
    for i in range(deps.shape[0]):
        for u in range(n):
            out[i, u] = union(deps[i, q] for q in range(u - p, u - p + k) if 0 <= q < n)
    return out


# -- random stacks (property test) -------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    ws=st.sampled_from([2, 3]),
    grid=st.integers(1, 3),
    shift=st.integers(0, 2),
    pool=st.booleans(),
)
def test_random_window_attention(ws, grid, shift, pool):
    n = ws * grid
    b = GraphBuilder(2)
    x = b.input("x", (1, 1, n, n), (2, 3))
    xd = deps_input((1, 1, n, n), (2, 3))
    if shift:
        x = b.roll(x, (-shift, -shift), (2, 3))
        xd = np.roll(xd, (-shift, -shift), (2, 3))
    t, td = windows_of(b, x, xd, n, n, 1, ws)
    out, od = attention(b, t, td)
    check(b, out, od)
    if pool:
        out2 = b.reduce("pool", "mean", out, [1])
        check(b, out2, o_reduce(od, [1]))
    else:
        y = b.mix("mix", "softmax", out, [0])
        check(b, y, o_mix(od, [0]))


def test_a_slid_axis_of_size_one_keeps_its_position():
    # a convolution down to one unit, then a padded one back to three: the border units
    # read only padding (before the fix the size-1 axis lost its position and the second
    # window was ignored, so every unit read the input)
    b = GraphBuilder(1)
    x = b.input("x", (1, 1, 3), (2,))
    xd = deps_input((1, 1, 3), (2,))
    c = b.apply("c", "conv", (1, 1, 1), [(x, (Same(0), Reduce(), Slide(2, Conv(3, 1, 1, 0))))])
    cd = o_conv(xd, (3,), (1,), (0,))
    check(b, c, cd)
    wide = b.apply("w", "conv", (1, 1, 3), [(c, (Same(0), Reduce(), Slide(2, Conv(1, 1, 1, -1))))])
    check(b, wide, o_conv(cd, (1,), (1,), (1,)))
    assert b.extents(wide.parts[0].node) == (3,)


def test_a_squeezed_unit_read_over_channels_is_not_global():
    # the last step of a sequence, squeezed, then a Linear over its channels (a TCN's
    # head): the unit keeps its one position; nothing reads a whole axis
    b = GraphBuilder(1)
    x = b.input("x", (1, 6, 2), (1,))
    last = b.select(x, 1, 5)
    head = b.matmul("head", "dot", last, b.constant((2, 3)), (1, 3))
    # no node of its own: the head reads its one unit as it is (jump 1, not 0)
    assert head.parts[0].node == last.parts[0].node
    g = b.graph([head])
    from rfmap.receptive import graph_rf

    r = graph_rf(g)
    assert r.stride == (1,) and r.global_axes == (False,) and r.input_box() == ((5, 6),)
    check(b, head, o_matmul(deps_input((1, 6, 2), (1,))[:, 5], empty((2, 3))))
