"""The JAX frontend against the float64 gradient: random stacks of primitives, one
primitive at a time, and hand-checked windows.

The oracle is ``jax.jacrev`` of the real function in float64 on a positive input with
positive weights and no non-linearity, so every Jacobian entry is a sum of positive
products: its support is exactly the set of input positions some path reaches.  The
analysis must give the same support for every output unit (``support_mask``, clipped
to the input), and the same boxes (``input_box``).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

jax = pytest.importorskip("jax", reason="the JAX frontend needs jax")

import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

from jax_oracle import (  # noqa: E402
    analytic_mask,
    assert_supports_equal,
    box_of,
    jacobian_support,
)
from rfmap.errors import ModelError, UnsupportedLayerError  # noqa: E402
from rfmap.frontends.jax import (  # noqa: E402
    jax_rf,
    register_jax_rule,
    trace_jax,
)
from rfmap.frontends.jax_models import as_jax_model  # noqa: E402
from rfmap.frontends.jax_rules import JAX_RULES  # noqa: E402
from rfmap.windows import Conv, Transposed  # noqa: E402

# -- random stacks of conv_general_dilated ----------------------------------------------

SPECS = {1: ("NWC", "NCW"), 2: ("NHWC", "NCHW"), 3: ("NDHWC", "NCDHW")}
KERNEL_SPECS = {1: ("WIO", "OIW"), 2: ("HWIO", "OIHW"), 3: ("DHWIO", "OIDHW")}
SIZES = {1: (5, 13), 2: (4, 8), 3: (3, 5)}


def _out_size(n, k, s, lo, hi, ld, rd):
    dilated = (n - 1) * ld + 1 + lo + hi
    span = (k - 1) * rd + 1
    return (dilated - span) // s + 1 if dilated >= span else 0


@st.composite
def conv_stacks(draw):
    nd = draw(st.sampled_from([1, 2, 3]))
    lo_size, hi_size = SIZES[nd]
    sizes = [draw(st.integers(lo_size, hi_size)) for _ in range(nd)]
    spec = draw(st.sampled_from(SPECS[nd]))
    channels = 2
    layers = []
    current = list(sizes)
    for _ in range(draw(st.integers(1, 3 if nd < 3 else 2))):
        kernel = [draw(st.integers(1, 3)) for _ in range(nd)]
        strides = [draw(st.integers(1, 2)) for _ in range(nd)]
        rhs_dil = [draw(st.integers(1, 2)) for _ in range(nd)]
        lhs_dil = [draw(st.sampled_from([1, 1, 2])) for _ in range(nd)]
        padding = draw(
            st.one_of(
                st.sampled_from(["SAME", "VALID", "SAME_LOWER"]),
                st.lists(
                    st.tuples(st.integers(-1, 2), st.integers(-1, 2)), min_size=nd, max_size=nd
                ),
            )
        )
        if isinstance(padding, str) and any(d > 1 for d in lhs_dil):
            padding = [(1, 1)] * nd  # lax resolves SAME on the undilated size
        groups = draw(st.sampled_from([1, 2] if channels % 2 == 0 else [1]))
        out_channels = groups * draw(st.integers(1, 2))
        out_spec = draw(st.sampled_from(SPECS[nd]))
        rhs_spec = draw(st.sampled_from(KERNEL_SPECS[nd]))
        if isinstance(padding, str):
            pads = lax.padtype_to_pads(
                current,
                [(k - 1) * d + 1 for k, d in zip(kernel, rhs_dil, strict=True)],
                strides,
                padding,
            )
        else:
            pads = padding
        nxt = [
            _out_size(n, k, s, lo, hi, ld, rd)
            for n, k, s, (lo, hi), ld, rd in zip(
                current, kernel, strides, pads, lhs_dil, rhs_dil, strict=True
            )
        ]
        if min(nxt) < 1:
            break
        layers.append(
            dict(
                kernel=kernel,
                strides=strides,
                padding=padding,
                lhs_dilation=lhs_dil,
                rhs_dilation=rhs_dil,
                groups=groups,
                out_channels=out_channels,
                in_channels=channels,
                spec=(spec, rhs_spec, out_spec),
            )
        )
        channels = out_channels
        spec = out_spec
        current = nxt
    return nd, sizes, layers


def build_conv_stack(layers):
    weights = []
    for layer in layers:
        rhs_spec = layer["spec"][1]
        shape_of = {"O": layer["out_channels"], "I": layer["in_channels"] // layer["groups"]}
        spatial = iter(layer["kernel"])
        shape = [shape_of[c] if c in shape_of else next(spatial) for c in rhs_spec]
        fan = math.prod(shape) / layer["out_channels"]
        weights.append(np.full(shape, 1.0 / fan))

    def f(x):
        for layer, w in zip(layers, weights, strict=True):
            x = lax.conv_general_dilated(
                x,
                jnp.asarray(w, x.dtype),
                window_strides=layer["strides"],
                padding=layer["padding"]
                if isinstance(layer["padding"], str)
                else [tuple(p) for p in layer["padding"]],
                lhs_dilation=layer["lhs_dilation"],
                rhs_dilation=layer["rhs_dilation"],
                dimension_numbers=layer["spec"],
                feature_group_count=layer["groups"],
            )
        return x

    return f


@settings(max_examples=40, deadline=None)
@given(conv_stacks())
def test_random_conv_stacks_equal_the_gradient(stack):
    nd, sizes, layers = stack
    if not layers:
        return
    first = layers[0]["spec"][0]
    last = layers[-1]["spec"][2]
    channels = "last" if first.endswith("C") else "first"
    out_dims = tuple(range(1, nd + 1)) if last.endswith("C") else tuple(range(2, nd + 2))
    f = build_conv_stack(layers)
    assert_supports_equal(f, (2, *sizes), channels, out_dims)


# -- pools, pads and windows ------------------------------------------------------------


@st.composite
def window_stacks(draw):
    n = draw(st.integers(4, 12))
    ops = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["max", "sum", "pad", "conv"]))
        if kind == "pad":
            ops.append(
                ("pad", draw(st.integers(-1, 2)), draw(st.integers(-1, 2)), draw(st.integers(0, 2)))
            )
        else:
            ops.append(
                (
                    kind,
                    draw(st.integers(1, 3)),  # window
                    draw(st.integers(1, 2)),  # stride
                    (draw(st.integers(0, 2)), draw(st.integers(0, 2))),  # padding
                    draw(st.sampled_from([1, 1, 2])),  # base (lhs) dilation
                    draw(st.integers(1, 2)),  # window dilation
                )
            )
    return n, ops


def build_window_stack(ops):
    w = np.full((3, 2, 2), 1 / 6)

    def f(x):
        for op in ops:
            if op[0] == "pad":
                _, lo, hi, interior = op
                x = lax.pad(x, jnp.asarray(0, x.dtype), ((0, 0, 0), (lo, hi, interior), (0, 0, 0)))
            elif op[0] == "conv":
                _, k, s, pad, base, dil = op
                x = lax.conv_general_dilated(
                    x,
                    jnp.asarray(w[:k], x.dtype),
                    (s,),
                    [pad],
                    (base,),
                    (dil,),
                    dimension_numbers=("NWC", "WIO", "NWC"),
                )
            else:
                kind, k, s, pad, base, dil = op
                init, fn = (-jnp.inf, lax.max) if kind == "max" else (0.0, lax.add)
                x = lax.reduce_window(
                    x,
                    init,
                    fn,
                    (1, k, 1),
                    (1, s, 1),
                    ((0, 0), pad, (0, 0)),
                    (1, base, 1),
                    (1, dil, 1),
                )
        return x

    return f


def _valid_window_stack(n, ops):
    for op in ops:
        if op[0] == "pad":
            _, lo, hi, interior = op
            n = n + lo + hi + max(n - 1, 0) * interior
        else:
            _, k, s, (lo, hi), base, dil = op
            n = _out_size(n, k, s, lo, hi, base, dil)
        if n < 1:
            return False
    return True


@settings(max_examples=20, deadline=None)
@given(window_stacks())
def test_random_pools_and_pads_equal_the_gradient(stack):
    n, ops = stack
    if not _valid_window_stack(n, ops):
        return
    f = build_window_stack(ops)
    if any(op[0] == "max" for op in ops):
        # a max passes one element per window on equal inputs: the linearised
        # measurement counts every window element, as the analysis does
        jm = as_jax_model(f, (2, n))
        traced = jm.trace()
        grid = traced.graph.nodes[traced.graph.output].extents
        result = jm.receptive_field()
        for unit in itertools.product(*map(range, grid)):
            measured = jm.measure(unit)
            got = analytic_mask(traced.graph, traced.graph.output, unit, (n,))
            assert np.array_equal(measured.mask, got), unit
            if got.any():
                assert result.input_box(unit) == measured.box
        return
    assert_supports_equal(f, (2, n))


# -- hand-checked windows ----------------------------------------------------------------


def test_transposed_conv_is_a_transposed_window():
    # lhs dilation 2, kernel 4, padding 2 each side: a stride-2 transposed convolution
    def f(x):
        w = jnp.ones((4, 1, 1), x.dtype)
        return lax.conv_general_dilated(
            x, w, (1,), [(2, 2)], lhs_dilation=(2,), dimension_numbers=("NWC", "WIO", "NWC")
        )

    traced = assert_supports_equal(f, (1, 6))
    node = traced.graph.nodes[traced.graph.output]
    (edge,) = node.edges
    assert edge.windows == (Transposed(4, 2, 1, 1),)
    r = jax_rf(f, (1, 6))
    # 6 inputs dilated to 11, padded to 15, kernel 4: 12 units, half a position apart
    assert r.grid == (12,) and str(r.stride[0]) == "1/2"


def test_conv_window_and_same_padding():
    w = jnp.ones((3, 3, 2, 4))

    def f(x):
        return lax.conv_general_dilated(
            x, w, (2, 1), "SAME", rhs_dilation=(1, 2), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    traced = trace_jax(f, (2, 9, 7))
    (edge,) = traced.graph.nodes[traced.graph.output].edges
    # SAME on 9 with kernel 3 stride 2: total padding 2, low 1; dilated kernel 5 on 7: 2
    assert edge.windows == (Conv(3, 2, 1, -1), Conv(3, 1, 2, -2))
    r = jax_rf(f, (2, 9, 7))
    assert r.receptive_field == (3, 5) and r.stride == (2, 1) and r.padding == (1, 2)


def test_batch_groups():
    # two groups of the batch: a reshape makes a batch of 2 from the channels
    def f(x):
        y = x.reshape(1, 9, 2, 2).transpose(2, 0, 1, 3).reshape(2, 9, 2)
        w = jnp.ones((3, 2, 2), x.dtype) / 6
        return lax.conv_general_dilated(
            y, w, (2,), [(1, 1)], batch_group_count=2, dimension_numbers=("NWC", "WIO", "NWC")
        )

    traced = assert_supports_equal(f, (4, 9))
    assert traced.graph.nodes[traced.graph.output].extents == (5,)


def test_grouped_conv_over_space_to_depth_channels():
    # the channels carry positions (even and odd steps): a depthwise convolution keeps
    # them apart, and depth-to-space puts them back
    def f(x):
        y = x.reshape(1, 6, 2)  # (1, 12, 1) -> 6 steps of (even, odd)
        w = jnp.ones((3, 1, 2), x.dtype) / 3
        y = lax.conv_general_dilated(
            y, w, (1,), "SAME", feature_group_count=2, dimension_numbers=("NWC", "WIO", "NWC")
        )
        return y.reshape(1, 12, 1)

    # a window over the outer digit of an axis whose inner digit sits in another dim is
    # beyond the layout algebra: the model is measured as a whole, exactly
    with pytest.raises(UnsupportedLayerError, match="sliding window over part of an axis"):
        trace_jax(f, (1, 12))
    r = jax_rf(f, (1, 12))
    assert r.method == "measured" and "measured as a whole" in r.notes[0]
    truth = jacobian_support(f, (1, 12, 1), (1,), (1,))
    for unit in range(12):
        assert r.input_box((unit,)) == box_of(truth[unit]), unit
    assert r.input_box((6,)) == ((4, 9),)  # the even channel: steps 4, 6, 8


def test_channels_first_and_last_give_the_same_field():
    w = jnp.ones((3, 3, 1, 1))

    def last(x):
        return lax.conv_general_dilated(
            x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    def first(x):
        return lax.conv_general_dilated(
            x, w, (1, 1), "VALID", dimension_numbers=("NCHW", "HWIO", "NCHW")
        )

    a = jax_rf(last, (1, 8, 6))
    b = jax_rf(first, (1, 8, 6), channels="first")
    assert a.receptive_field == b.receptive_field == (3, 3)
    assert a.grid == b.grid == (6, 4)


@jax.custom_vjp
def _clip_gradient(x):
    return x


_clip_gradient.defvjp(lambda x: (x, None), lambda _, g: (jnp.clip(g, -1, 1),))


@pytest.mark.parametrize(
    ("name", "fn", "size"),
    [
        ("cumsum", lambda x: jnp.cumsum(x, axis=1), (2, 7)),
        ("reverse cumsum", lambda x: lax.cumsum(x, axis=1, reverse=True), (2, 7)),
        ("reflect pad", lambda x: jnp.pad(x, ((0, 0), (2, 3), (0, 0)), mode="reflect"), (2, 7)),
        ("wrap pad", lambda x: jnp.pad(x, ((0, 0), (2, 1), (0, 0)), mode="wrap"), (2, 7)),
        ("edge pad", lambda x: jnp.pad(x, ((0, 0), (2, 1), (0, 0)), mode="edge"), (2, 7)),
        ("reversal", lambda x: x[:, ::-1] + x, (2, 7)),
        ("strided slice", lambda x: x[:, 1:6:2] * 2, (2, 7)),
        ("tile", lambda x: jnp.tile(x, (1, 3, 1)), (2, 5)),
        ("static dynamic slice", lambda x: lax.dynamic_slice_in_dim(x, 2, 3, axis=1), (2, 7)),
        ("take", lambda x: jnp.take(x, jnp.array([0, 3, 3, 6]), axis=1), (2, 7)),
        ("bilinear resize", lambda x: jax.image.resize(x, (1, 15, 2), "bilinear"), (2, 6)),
        ("nearest resize", lambda x: jax.image.resize(x, (1, 13, 2), "nearest"), (2, 6)),
        ("centring", lambda x: x - x.mean(axis=1, keepdims=True), (2, 6)),
        ("channel softmax", lambda x: jax.nn.softmax(x, axis=-1), (3, 6)),
        ("attention", lambda x: jax.nn.softmax(x @ x.transpose(0, 2, 1), -1) @ x, (3, 5)),
        ("interior pad", lambda x: lax.pad(x, 0.0, ((0, 0, 0), (1, 2, 2), (0, 0, 0))), (2, 5)),
        ("stack", lambda x: jnp.stack([x, 2 * x], axis=2).reshape(1, 12, 2), (2, 6)),
        ("split", lambda x: jnp.concatenate(jnp.split(x, 3, axis=1)[::-1], axis=1), (2, 6)),
        ("cond", lambda x: lax.cond(True, lambda a: jnp.cumsum(a, 1), lambda a: a, x), (2, 6)),
        ("gelu", lambda x: jax.nn.gelu(x) * jax.nn.sigmoid(x), (2, 6)),
        ("checkpoint", jax.checkpoint(lambda x: jnp.cumsum(x, 1)), (2, 6)),
        ("custom vjp", lambda x: _clip_gradient(jnp.cumsum(x, 1)), (2, 6)),
        ("argmax", lambda x: jnp.argmax(x, axis=-1), (3, 6)),
        ("fori loop", lambda x: lax.fori_loop(0, 2, lambda i, y: y + y[:, ::-1], x), (2, 5)),
    ],
)
def test_primitive_rules_equal_the_gradient(name, fn, size):
    # non-linear functions: compare with the linearised measurement (every unit)
    jm = as_jax_model(fn, size)
    traced = jm.trace()
    assert not traced.measured, name
    graph = traced.graph
    grid = graph.nodes[graph.output].extents
    for unit in itertools.product(*map(range, grid)):
        measured = jm.measure(unit)
        got = analytic_mask(graph, graph.output, unit, size[1:])
        assert np.array_equal(measured.mask, got), (name, unit, box_of(got), measured.box)


def test_linear_primitives_equal_the_plain_jacobian():
    def f(x):
        y = jnp.pad(x, ((0, 0), (2, 1), (0, 0)), mode="reflect")
        y = jnp.cumsum(y[:, ::-1], axis=1)[:, ::2]
        return jax.image.resize(y, (1, 11, 2), "linear")

    assert_supports_equal(f, (2, 7))


# -- unknown primitives, registry, errors ------------------------------------------------


def _blur_primitive():
    from jax.extend.core import Primitive
    from jax.interpreters import ad, batching

    prim = Primitive("rfmap_test_blur")

    def impl(x):
        return x + jnp.roll(x, 1, axis=1) + jnp.roll(x, -1, axis=1)

    prim.def_impl(impl)
    prim.def_abstract_eval(lambda x: jax.core.ShapedArray(x.shape, x.dtype))
    ad.deflinear2(prim, lambda ct, x: [impl(ct)])
    batching.defvectorized(prim)
    return prim


def test_unknown_primitive_is_measured_or_reported():
    prim = _blur_primitive()

    def f(x):
        return prim.bind(x) * 2

    r = jax_rf(f, (1, 8))
    assert r.method == "mixed" and r.measured_nodes == ("rfmap_test_blur",)
    assert "no rule for the JAX primitive 'rfmap_test_blur'" in r.notes[0]
    # a circular blur: unit 0 reads 7, 0, 1
    assert r.input_box((3,)) == ((2, 5),)
    with pytest.raises(
        UnsupportedLayerError, match="no rule for the JAX primitive 'rfmap_test_blur'"
    ):
        jax_rf(f, (1, 8), method="analytic")


def test_registered_rule_is_used():
    from rfmap.builder import Same, Slide

    prim = _blur_primitive()
    try:

        @register_jax_rule(prim)
        def _blur(ctx, eqn, ins):
            (x,) = ins
            rel = [Same(0), Slide(1, Conv(3, 1, 1, -1)), Same(2)]
            return ctx.builder.apply(ctx.name, "blur", x.shape, [(x, rel)])

        r = jax_rf(lambda x: prim.bind(x), (1, 8), method="analytic")
        assert r.method == "analytic" and r.receptive_field == (3,) and r.padding == (1,)
        assert r.layers[-1].op == "blur"
    finally:
        JAX_RULES.pop(prim, None)


def test_loops_are_unrolled():
    def body(i, y):  # shift by one position per step, the counter picks the step
        return y + jnp.roll(y, 1, axis=1) * (i + 1)

    def fori(x):
        return lax.fori_loop(0, 3, body, x)

    def while_(x):
        return lax.while_loop(lambda c: c[0] < 2, lambda c: (c[0] + 1, body(c[0], c[1])), (0, x))[1]

    def scan(x):
        def step(carry, t):
            return carry + t, carry * t

        total, ys = lax.scan(step, jnp.zeros((1, 2)), jnp.swapaxes(x, 0, 1))
        return jnp.swapaxes(ys, 0, 1) + total[:, None]

    for f, size in ((fori, (1, 6)), (while_, (1, 6)), (scan, (2, 5))):
        jm = as_jax_model(f, size)
        traced = jm.trace(method="analytic")
        grid = traced.graph.nodes[traced.graph.output].extents
        for unit in itertools.product(*map(range, grid)):
            got = analytic_mask(traced.graph, traced.graph.output, unit, size[1:])
            assert np.array_equal(jm.measure(unit).mask, got), (f.__name__, unit)


def test_a_loop_on_values_is_one_clear_error():
    def f(x):
        return lax.while_loop(lambda y: y.sum() < 10, lambda y: y * 2, x)

    message = r"the JAX primitive 'while': a while loop whose condition"
    with pytest.raises(UnsupportedLayerError, match=message):
        jax_rf(f, (1, 6), method="analytic")


def test_errors():
    with pytest.raises(ModelError, match=r"failed on input shape \[1, 6, 1\]"):
        jax_rf(lambda x: x.reshape(5), (1, 6))
    with pytest.raises(ModelError, match="does not depend on its input"):
        jax_rf(lambda x: jnp.zeros(3), (1, 6))
    with pytest.raises(ModelError, match="cannot analyse a int"):
        jax_rf(3, (1, 6))
    from rfmap.errors import InvalidSpecError

    with pytest.raises(InvalidSpecError, match="channels must be one of"):
        jax_rf(lambda x: x, (1, 6), channels="middle")
    with pytest.raises(InvalidSpecError, match="no layer named 'nope'"):
        jax_rf(lambda x: x * 2, (1, 6), "nope")
