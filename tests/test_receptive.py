"""Tests of rfmap.receptive: the analytic receptive field of a layer graph (numpy only).

Oracles: hand-computed windows and boxes; the exact path-count engine of rfmap.paths
(an independent implementation) for plain stacks; a brute force that enumerates every
path of small random DAGs position by position.
"""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rfmap import receptive
from rfmap.errors import InvalidSpecError
from rfmap.paths import axis_counts, stack_path_map
from rfmap.receptive import (
    Adaptive,
    Conv,
    Edge,
    Node,
    PadMode,
    Resample,
    ResampleMode,
    RFGraph,
    Table,
    Transposed,
    Whole,
    format_table,
    graph_rf,
    layers_graph,
    layers_rf,
    unit_bounds,
    unit_support,
)
from rfmap.specs import ConvLayer, conv_stack, output_sizes, receptive_field_size

# -- windows, by hand -------------------------------------------------------------------


def test_conv_window_positions():
    # unit u of a k=3, s=2, d=2 conv with padding 1 reads 2u-1, 2u+1, 2u+3
    w = Conv(3, 2, 2, -1)
    assert w.positions(np.array([0, 3])).tolist() == [-1, 1, 3, 5, 7, 9]
    assert [a.tolist() for a in w.bounds(np.array([0, 3]))] == [[-1, 5], [3, 9]]
    assert w.scale == 2 and w.affine() == (3, 2, 2, -1)


def test_transposed_window_positions():
    # ConvTranspose1d(k=3, s=2, p=1): input x writes outputs 2x-1, 2x, 2x+1
    w = Transposed(3, 2, 1, 1)
    reads = {u: sorted(w.positions(np.array([u])).tolist()) for u in range(5)}
    assert reads == {0: [0], 1: [0, 1], 2: [1], 3: [1, 2], 4: [2]}
    lo, hi = w.bounds(np.arange(5))
    assert lo.tolist() == [0, 0, 1, 1, 2] and hi.tolist() == [0, 1, 1, 2, 2]
    assert w.scale == Fraction(1, 2)


def test_transposed_window_can_read_nothing():
    # dilation 2, stride 2: odd outputs get no input
    w = Transposed(2, 2, 2, 0)
    assert w.positions(np.array([1])).tolist() == []
    lo, hi = w.bounds(np.array([1]))
    assert lo[0] > hi[0]


def test_adaptive_window_matches_pytorch_formula():
    # adaptive pooling 7 -> 3: [floor(i*7/3), ceil((i+1)*7/3))
    w = Adaptive(7, 3)
    reads = [w.positions(np.array([u])).tolist() for u in range(3)]
    assert reads == [[0, 1, 2], [2, 3, 4], [4, 5, 6]]
    assert w.scale == Fraction(7, 3)


def test_resample_windows():
    nearest = Resample(3, 6, ResampleMode.NEAREST, Fraction(1, 2))
    assert [nearest.positions(np.array([u])).tolist() for u in range(6)] == [
        [0], [0], [1], [1], [2], [2],
    ]  # fmt: skip
    # bilinear x2, align_corners=False: src = (u + 0.5)/2 - 0.5 is never an integer
    linear = Resample(3, 6, ResampleMode.LINEAR, Fraction(1, 2))
    assert [sorted(linear.positions(np.array([u])).tolist()) for u in range(6)] == [
        [-1, 0], [0, 1], [0, 1], [1, 2], [1, 2], [2, 3],
    ]  # fmt: skip
    # align_corners=True, 3 -> 5: src = u/2, integer for even u (the other tap has weight 0)
    aligned = Resample(3, 5, ResampleMode.LINEAR, Fraction(1, 2), align_corners=True)
    assert [sorted(aligned.positions(np.array([u])).tolist()) for u in range(5)] == [
        [0], [0, 1], [1], [1, 2], [2],
    ]  # fmt: skip


def test_whole_and_table_windows():
    assert Whole(4).positions(np.array([7])).tolist() == [0, 1, 2, 3]
    table = Table(((0, 1), (0, 1, 2), (1, 2, 3)))
    assert table.positions(np.array([1, 5])).tolist() == [0, 1, 2]
    assert table.scale == 1


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        # what F.pad(x, (2, 2), mode) reads for x = [a, b, c]
        (PadMode.ZEROS, [[], [], [0], [1], [2], [], []]),
        (PadMode.REPLICATE, [[0], [0], [0], [1], [2], [2], [2]]),
        (PadMode.REFLECT, [[2], [1], [0], [1], [2], [1], [0]]),
        (PadMode.CIRCULAR, [[1], [2], [0], [1], [2], [0], [1]]),
    ],
)
def test_padding_modes_fold_like_pytorch(mode, expected):
    graph = RFGraph(
        [
            Node("x", "input", (3,)),
            Node("pad", "pad", (7,), (Edge("x", (Conv(1, 1, 1, -2, mode),)),)),
        ]
    )
    assert [unit_support(graph, "pad", (u,))[0].tolist() for u in range(7)] == expected


# -- plain stacks: against the exact path counts of rfmap.paths ------------------------


def test_vgg_like_stack_by_hand():
    # conv3 p1, conv3 p1, pool2 s2, conv3 p1: RF 1+2+2+1+2*2 = 10, jump 2, padding 1+1+0+2 = 4
    layers = (
        ConvLayer((3,), (1,), (1,), (1,)),
        ConvLayer((3,), (1,), (1,), (1,)),
        ConvLayer((2,), (1,), (2,), (0,)),
        ConvLayer((3,), (1,), (1,), (1,)),
    )
    r = layers_rf(layers, 32)
    assert (r.receptive_field, r.stride, r.padding) == ((10,), (2,), (4,))
    assert r.min_receptive_field == (10,) and r.aligned is True and not r.is_global
    assert r.input_box((5,), clip=False) == ((6, 16),)
    assert r.input_box((0,)) == ((0, 6),)
    assert [row.receptive_field[0] for row in r.layers] == [1, 3, 5, 6, 10]
    assert [row.stride[0] for row in r.layers] == [1, 1, 1, 2, 2]


layer_strategy = st.tuples(
    st.integers(1, 4),  # kernel
    st.integers(1, 3),  # dilation
    st.integers(1, 3),  # stride
    st.one_of(st.integers(0, 4), st.sampled_from(["valid", "causal", "same"])),
)


@st.composite
def stacks(draw):
    ndim = draw(st.integers(1, 2))
    n = draw(st.integers(1, 5))
    layers = []
    for _ in range(n):
        k, d, s, p = draw(layer_strategy)
        if p == "same":
            s = 1
        layers.append(conv_stack([d], k, ndim=ndim, stride=s, padding=p)[0])
    size = tuple(draw(st.integers(1, 40)) for _ in range(ndim))
    try:
        grid = output_sizes(layers, size)[-1]
    except InvalidSpecError:
        grid = None
    return tuple(layers), size, grid


@settings(max_examples=150, deadline=None)
@given(stacks(), st.data())
def test_stack_matches_path_counts(case, data):
    layers, size, grid = case
    if grid is None:
        with pytest.raises(InvalidSpecError):
            layers_rf(layers, size)
        return
    r = layers_rf(layers, size)
    for axis in range(len(size)):
        # unbounded: the whole receptive field of unit 0 (paths.axis_counts, size=None)
        origin, counts = axis_counts(layers, axis, None, 0)
        assert r.receptive_field[axis] == len(counts) == receptive_field_size(layers, axis)
        assert r.start[axis] == origin
        assert r.min_receptive_field[axis] == r.receptive_field[axis]
        jump = int(np.prod([layer.stride[axis] for layer in layers]))
        assert r.stride[axis] == jump
    unit = tuple(data.draw(st.integers(0, n - 1)) for n in grid)
    pmap = stack_path_map(layers, size, unit)
    graph = layers_graph(layers, size)
    support = unit_support(graph, graph.output, unit, clip=True)
    expected_box = []
    nonzero = pmap.counts != 0  # the outer product of the factors: empty if one is empty
    for axis in range(len(size)):
        other = tuple(a for a in range(len(size)) if a != axis)
        hit = np.flatnonzero(nonzero.any(axis=other) if other else nonzero)
        assert support[axis].tolist() == hit.tolist()
        expected_box.append((int(hit[0]), int(hit[-1]) + 1) if len(hit) else (0, 0))
    assert r.input_box(unit) == tuple(expected_box)
    unclipped = r.input_box(unit, clip=False)
    for axis in range(len(size)):
        start = r.start[axis] + unit[axis] * r.stride[axis]
        assert unclipped[axis] == (start, start + r.receptive_field[axis])


# -- DAGs: against a brute force over every path ----------------------------------------


def _fold_one(p, n, mode):
    """Where padding position ``p`` of a source of ``n`` reads (None: nothing), one
    reflection at a time (independent of rfmap's closed form)."""
    if 0 <= p < n:
        return p
    if mode is PadMode.ZEROS:
        return None
    if mode is PadMode.REPLICATE:
        return min(max(p, 0), n - 1)
    if mode is PadMode.CIRCULAR:
        return p % n
    if n == 1:
        return 0
    while not 0 <= p < n:
        p = -p if p < 0 else 2 * (n - 1) - p
    return p


def _path_sets(graph, node, unit, clip):
    """Per path (list of nodes from the input), the input positions it reaches (one axis)."""
    out = []

    def walk(name, positions, path):
        if name == graph.input:
            out.append((tuple(path), frozenset(positions)))
            return
        for edge in graph.nodes[name].edges:
            w = edge.windows[0]
            read = set()
            for u in positions:
                for p in w.positions(np.array([u])).tolist():
                    if clip:
                        p = _fold_one(p, graph.nodes[edge.source].extents[0], w.pad_mode)
                        if p is None:
                            continue
                    read.add(p)
            if read:
                walk(edge.source, read, [edge.source, *path])

    walk(node, {unit}, [node])
    return out


def _path_stats(graph, node):
    """Per path: (jump, first, last, through a Whole window) of unit 0, composed along it."""
    stats = []

    def walk(name, jump, lo, hi, whole):
        if name == graph.input:
            stats.append((jump, lo, hi, whole))
            return
        for edge in graph.nodes[name].edges:
            w = edge.windows[0]
            if isinstance(w, Whole):
                walk(edge.source, 0, 0, w.size - 1, True)
            else:
                k, s, d, off = w.affine()
                walk(edge.source, jump * s, lo * s + off, hi * s + off + (k - 1) * d, whole)

    walk(node, 1, 0, 0, False)
    return stats


@st.composite
def dags(draw):
    n = draw(st.integers(1, 6))
    extents = [draw(st.integers(1, 9))]
    nodes = [Node("n0", "input", (extents[0],))]
    for i in range(1, n + 1):
        sources = draw(st.lists(st.integers(0, i - 1), min_size=1, max_size=2, unique=True))
        edges = []
        for src in sources:
            kind = draw(st.integers(0, 9))
            if kind == 0:
                window = Whole(extents[src])
            elif kind == 1:
                # the identity (norms, activations): a node then shares its source's paths
                window = Conv(1, 1, draw(st.integers(1, 2)), 0)
            else:
                window = Conv(
                    draw(st.integers(1, 4)),
                    draw(st.integers(0, 3)),
                    draw(st.integers(1, 3)),
                    draw(st.integers(-3, 3)),
                    draw(st.sampled_from([PadMode.ZEROS] * 3 + list(PadMode))),
                )
            edges.append(Edge(f"n{src}", (window,)))
        extents.append(draw(st.integers(1, 9)))
        nodes.append(Node(f"n{i}", "op", (extents[-1],), tuple(edges)))
    return RFGraph(nodes)


@settings(max_examples=200, deadline=None)
@given(dags())
def test_dag_algebra_matches_brute_force(graph):
    analysed = graph_rf(graph)
    for row in analysed.layers:
        name = row.name
        if name == graph.input:
            continue
        paths = _path_sets(graph, name, 0, clip=False)
        stats = _path_stats(graph, name)
        assert len(paths) == len(stats)  # the same paths in the same order (nothing clipped)
        moves = [j != 0 for j, *_ in stats]
        union = set().union(*(p for _, p in paths))
        # path quantities are over the local paths: those whose box moves with the unit
        # (not through a Whole window or a broadcast)
        local = [p for (_, p), m in zip(paths, moves, strict=True) if m]
        widths = [max(p) - min(p) + 1 for p in local]
        assert row.min_receptive_field[0] == (min(widths) if widths else None)
        assert row.max_path_receptive_field[0] == (max(widths) if widths else None)
        # every unit: the unbounded box is the hull of the explicit position sets
        n = graph.nodes[name].extents[0]
        extent = clipped_extent = local_extent = 0
        clipped_start = None
        for u in range(n):
            reach = _path_sets(graph, name, u, clip=False)
            every = set().union(*(p for _, p in reach))
            box = analysed_box(graph, name, u, clip=False)
            assert box == (min(every), max(every) + 1)
            extent = max(extent, max(every) - min(every) + 1)
            if u in (0, n - 1) and local:
                near = set().union(*(p for (_, p), m in zip(reach, moves, strict=True) if m))
                local_extent = max(local_extent, max(near) - min(near) + 1)
            clipped = set().union(*(p for _, p in _path_sets(graph, name, u, clip=True)))
            assert analysed_box(graph, name, u, clip=True) == (
                (min(clipped), max(clipped) + 1) if clipped else (0, 0)
            )
            if clipped:
                clipped_extent = max(clipped_extent, max(clipped) - min(clipped) + 1)
            if u == 0:
                clipped_start = min(clipped) if clipped else 0
        assert row.unbounded_receptive_field[0] == extent
        assert row.local_receptive_field[0] == (local_extent if local else None)
        assert row.local_start[0] == (min(set().union(*local)) if local else None)
        if row.is_global:
            # a global axis: the positions really read (inside the input)
            assert row.receptive_field[0] == clipped_extent
            assert row.start[0] == clipped_start
        else:
            # box of unit 0 (unbounded) = hull of all paths
            assert row.start[0] == min(union)
            assert row.receptive_field[0] == extent
        # aligned: all paths that are not global share the jump and the centre of unit 0
        local = {(j, lo + hi) for j, lo, hi, whole in stats if j != 0}
        assert row.aligned == (len(local) <= 1)
        assert row.is_global == any(whole for *_, whole in stats)
        jumps = sorted({j for j, *_ in stats if j != 0}, reverse=True)
        assert row.stride[0] == (jumps[0] if jumps else 0)


def analysed_box(graph, name, unit, clip):
    return graph_rf(graph, name).input_box((unit,), clip=clip)[0]


@pytest.mark.parametrize("tap_loop", [0, receptive._TAP_LOOP])
@settings(max_examples=100, deadline=None)
@given(graph=dags())
def test_clipped_bounds_match_brute_force(graph, tap_loop):
    # The first and last real input position read by every unit of every node (what a
    # global axis reports), tap by tap or all taps at once, against the explicit sets.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(receptive, "_TAP_LOOP", tap_loop)
        analysis = receptive._Analysis(graph)
        bounds = {name: analysis.clipped(name, 0) for name in graph.nodes}
    for name, node in graph.nodes.items():
        lo, hi = bounds[name]
        assert len(lo) == len(hi) == node.extents[0]
        for u in range(node.extents[0]):
            read = set().union(*(p for _, p in _path_sets(graph, name, u, clip=True)))
            if name == graph.input:
                read = {u}
            if read:
                assert (lo[u], hi[u]) == (min(read), max(read)), (name, u)
            else:
                assert lo[u] > hi[u], (name, u)


def test_misaligned_branches_by_hand():
    # y = conv3(x, pad 1) + conv3(x, pad 0) cropped to the same grid: centres differ by 1
    graph = RFGraph(
        [
            Node("x", "input", (10,)),
            Node("a", "conv", (10,), (Edge("x", (Conv(3, 1, 1, -1),)),)),
            Node("b", "conv", (8,), (Edge("x", (Conv(3, 1, 1, 0),)),)),
            Node("b2", "pad", (10,), (Edge("b", (Conv(1, 1, 1, -2),)),)),
            Node("y", "add", (10,), (Edge("a", (Conv(),)), Edge("b2", (Conv(),)))),
        ]
    )
    r = graph_rf(graph)
    assert r.aligned is False
    assert r.min_receptive_field == (3,) and r.max_path_receptive_field == (3,)
    assert r.receptive_field == (4,)  # the hull of [-1, 1] and [-2, 0] is [-2, 1]
    assert r.input_box((4,), clip=False) == ((2, 6),)


def test_global_branch_squeeze_excitation():
    # y = x * mean(conv(x)): a global gate, the output reads the whole input
    graph = RFGraph(
        [
            Node("x", "input", (6,)),
            Node("c", "conv", (6,), (Edge("x", (Conv(3, 1, 1, -1),)),)),
            Node("g", "pool", (1,), (Edge("c", (Whole(6),)),)),
            Node("y", "mul", (6,), (Edge("c", (Conv(),)), Edge("g", (Conv(1, 0),)))),
        ]
    )
    r = graph_rf(graph)
    assert r.is_global and r.global_axes == (True,)
    assert r.stride == (1,)  # the local path keeps its jump
    assert r.input_box((0,), clip=True) == ((0, 6),)
    assert r.input_box((0,), clip=False) == ((-1, 7),)


def test_irregular_nodes_use_exact_bounds():
    # conv k3 s2 p1 then transposed k4 s2 p1: the box alternates with the unit
    graph = RFGraph(
        [
            Node("x", "input", (16,)),
            Node("down", "conv", (8,), (Edge("x", (Conv(3, 2, 1, -1),)),)),
            Node("up", "tconv", (16,), (Edge("down", (Transposed(4, 2, 1, 1),)),)),
        ]
    )
    r = graph_rf(graph)
    lo, hi = unit_bounds(graph, "up", 0, np.arange(4))
    # up unit u reads down units ceil((u-2)/2)..floor((u+1)/2), each reads 2v-1..2v+1
    assert lo.tolist() == [-3, -1, -1, 1] and hi.tolist() == [1, 3, 3, 5]
    assert r.receptive_field == (5,) and r.start == (-3,) and r.stride == (1,)
    assert r.min_receptive_field is None and r.aligned is None


# -- the result object -----------------------------------------------------------------


def test_to_dict_is_json_and_has_the_issue_keys():
    r = layers_rf(conv_stack([1, 2], stride=[2, 1], padding=[1, 2]), (17, 9))
    d = json.loads(json.dumps(r.to_dict()))
    for key in ("receptive_field", "stride", "padding", "min_receptive_field", "aligned", "layers"):
        assert key in d
    assert d["receptive_field"] == [11, 11] and d["stride"] == [2, 2] and d["padding"] == [5, 5]
    assert [row["name"] for row in d["layers"]] == ["input", "layer1", "layer2"]
    assert d["layers"][1]["receptive_field"] == [3, 3]


def test_fractional_jump_serialises_as_a_fraction():
    graph = RFGraph(
        [
            Node("x", "input", (4,)),
            Node(
                "up",
                "upsample",
                (8,),
                (Edge("x", (Resample(4, 8, ResampleMode.NEAREST, Fraction(1, 2)),)),),
            ),
        ]
    )
    r = graph_rf(graph)
    assert r.stride == (Fraction(1, 2),)
    assert r.to_dict()["stride"] == ["1/2"]


def test_format_table_aligns_columns():
    r = layers_rf(conv_stack([1, 1, 2], ndim=1), 20)
    text = format_table(r)
    lines = text.splitlines()
    assert lines[0] == "receptive field of 'layer3' (input 20, analytic)"
    header = next(i for i, line in enumerate(lines) if line.startswith("node"))
    rows = lines[header + 2 :]
    assert [row.split()[0] for row in rows] == ["input", "layer1", "layer2", "layer3"]
    # the RF column is right-aligned: the last digit of every RF ends at the same place
    col = lines[header].index("RF") + 1
    assert [row[col] for row in rows] == ["1", "3", "5", "9"]
    assert "<table>" in r._repr_html_()


def test_unit_errors():
    r = layers_rf(conv_stack([1]), (5, 6))
    with pytest.raises(InvalidSpecError, match="outside the output grid"):
        r.input_box((5, 0))
    with pytest.raises(InvalidSpecError, match="needs 2 indices"):
        r.input_box((1, 2, 3))
    assert r.input_box() == r.input_box((2, 3))


def test_graph_errors():
    with pytest.raises(InvalidSpecError, match="not defined before"):
        RFGraph([Node("x", "input", (3,)), Node("y", "op", (3,), (Edge("z", (Conv(),)),))])
    with pytest.raises(InvalidSpecError, match="duplicate"):
        RFGraph([Node("x", "input", (3,)), Node("x", "op", (3,))])
    with pytest.raises(InvalidSpecError, match="windows for"):
        RFGraph([Node("x", "input", (3, 3)), Node("y", "op", (3, 3), (Edge("x", (Conv(),)),))])
    with pytest.raises(InvalidSpecError, match="at least one layer"):
        layers_graph([], 4)
    with pytest.raises(InvalidSpecError, match="too small"):
        layers_rf(conv_stack([4], padding="valid"), 5)
    with pytest.raises(InvalidSpecError, match="no node named"):
        graph_rf(layers_graph(conv_stack([1]), 4), "nope")


def test_import_does_not_load_torch():
    code = "import rfmap.receptive, sys; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
