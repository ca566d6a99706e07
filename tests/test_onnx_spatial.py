"""Random stacks of ONNX convolutions and pools against brute-force perturbation.

Every ``auto_pad`` mode, explicit asymmetric pads, strides, dilations and ``ceil_mode``,
in 1D and 2D; the output shape must be onnxruntime's and every unit's support must be
the set of input positions whose change changes it.  Plus hand-checked windows.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from onnx import helper

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx_oracle import check, floats, model, perturbation_supports, weight
from oracles import examples
from rfmap.builder import GraphBuilder
from rfmap.errors import ModelError
from rfmap.frontends.onnx import trace
from rfmap.frontends.onnx_rules import OnnxContext, rule_for
from rfmap.frontends.onnx_spatial import Taps, resize_taps
from rfmap.windows import Conv, Resample, ResampleMode, Transposed


@st.composite
def layers(draw, nd):
    op = draw(st.sampled_from(["Conv", "MaxPool", "AveragePool", "LpPool", "ConvTranspose"]))
    kernel = [draw(st.integers(1, 4)) for _ in range(nd)]
    strides = [draw(st.integers(1, 3)) for _ in range(nd)]
    attrs: dict = {"kernel_shape": kernel, "strides": strides}
    if op in ("Conv", "MaxPool", "ConvTranspose") and draw(st.booleans()):
        attrs["dilations"] = [draw(st.integers(1, 3)) for _ in range(nd)]
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    if auto_pad == "NOTSET":
        attrs["pads"] = [draw(st.integers(0, k - 1)) for k in kernel * 2]
    else:
        attrs["auto_pad"] = auto_pad
    if op in ("MaxPool", "AveragePool", "LpPool") and draw(st.booleans()):
        attrs["ceil_mode"] = 1
    if op == "ConvTranspose" and draw(st.booleans()):
        attrs["output_padding"] = [draw(st.integers(0, s - 1)) for s in strides]
    return op, attrs


@settings(max_examples=examples(60), deadline=None)
@given(
    nd=st.integers(1, 2),
    data=st.data(),
)
def test_random_stacks_match_perturbation(nd, data):
    sizes = [data.draw(st.integers(3, 9 if nd == 2 else 16)) for _ in range(nd)]
    stack = data.draw(st.lists(layers(nd), min_size=1, max_size=3))
    nodes, inits = [], []
    name = "x"
    for i, (op, attrs) in enumerate(stack):
        out = "y" if i == len(stack) - 1 else f"t{i}"
        if op in ("Conv", "ConvTranspose"):
            w = f"w{i}"
            inits.append(weight(w, (1, 1, *attrs["kernel_shape"]), seed=i))
            nodes.append(helper.make_node(op, [name, w], [out], **attrs))
        else:
            nodes.append(helper.make_node(op, [name], [out], **attrs))
        name = out
    m = model(nodes, [1, 1, *sizes], inits)
    try:
        traced = trace(m, (1, *sizes))
    except ModelError as exc:
        assert "would be empty" in str(exc) or "output size" in str(exc), exc
        return
    try:
        perturbation_supports(m, traced.input_shape, traced.spatial_dims, "y")
    except Exception:  # onnxruntime refuses the configuration: nothing to compare with
        assume(False)
    check(m, (1, *sizes))


def _ctx(op, attrs, shape, opset=18, n_outputs=1):
    b = GraphBuilder(len(shape) - 2)
    x = b.input("x", shape, tuple(range(2, len(shape))))
    return b, OnnxContext(b, op, "", op.lower(), opset, attrs, [x], n_outputs)


def test_ceil_mode_drops_a_window_that_starts_in_the_padding():
    # size 5, k 2, s 2, pads 1: ceil((5 + 2 - 2) / 2) + 1 = 4 windows, but the fourth
    # would start at 3 * 2 - 1 = 5, in the padding: 3 windows (onnxruntime, PyTorch)
    b, ctx = _ctx(
        "MaxPool", {"kernel_shape": [2], "strides": [2], "pads": [1, 1], "ceil_mode": 1}, (1, 1, 5)
    )
    (y,) = rule_for("MaxPool")(ctx)[:1]
    assert y.shape == (1, 1, 3)
    assert b.nodes["maxpool"].edges[0][1] == (Conv(2, 2, 1, -1),)


def test_same_lower_puts_the_odd_pad_first():
    b, ctx = _ctx(
        "AveragePool", {"kernel_shape": [4], "strides": [1], "auto_pad": "SAME_LOWER"}, (1, 1, 6)
    )
    rule_for("AveragePool")(ctx)
    assert b.nodes["averagepool"].edges[0][1] == (Conv(4, 1, 1, -2),)


def test_conv_transpose_window():
    b = GraphBuilder(1)
    x = b.input("x", (1, 2, 4), (2,))
    w = np.zeros((2, 3, 3), dtype=np.float32)
    ctx = OnnxContext(b, "ConvTranspose", "", "up", 18, {"strides": [2], "pads": [1, 0]}, [x, w], 1)
    (y,) = rule_for("ConvTranspose")(ctx)
    # 2 * (4 - 1) + 3 - 1 = 8 outputs of 3 channels
    assert y.shape == (1, 3, 8)
    assert b.nodes["up"].edges[0][1] == (Transposed(3, 2, 1, 1),)


def test_resize_taps_by_hand():
    # half_pixel, 4 -> 6: x = (u + 0.5) * 2/3 - 0.5 = -1/6, 1/2, 7/6, 11/6, 5/2, 19/6
    assert resize_taps("linear", "half_pixel", "", 4, 6, 1.5) == (
        (0,),
        (0, 1),
        (1, 2),
        (1, 2),
        (2, 3),
        (3,),
    )
    # the same source coordinates, nearest: round half down (1/2 -> 0, 5/2 -> 2)
    assert resize_taps("nearest", "half_pixel", "round_prefer_floor", 4, 6, 1.5) == (
        (0,),
        (0,),
        (1,),
        (2,),
        (2,),
        (3,),
    )
    assert resize_taps("nearest", "half_pixel", "round_prefer_ceil", 4, 6, 1.5) == (
        (0,),
        (1,),
        (1,),
        (2,),
        (3,),
        (3,),
    )
    # cubic at integer coordinates reads one tap (align_corners 3 -> 5: 0, 1/2, 1, 3/2, 2)
    assert resize_taps("cubic", "align_corners", "", 3, 5, 5 / 3) == (
        (0,),
        (0, 1, 2),
        (1,),
        (0, 1, 2),
        (2,),
    )


@pytest.mark.parametrize(
    ("mode", "ctm", "nearest", "scale", "want"),
    [
        (
            "nearest",
            "asymmetric",
            "floor",
            2.0,
            Resample(4, 8, ResampleMode.NEAREST, Fraction(1, 2)),
        ),
        (
            "nearest",
            "half_pixel",
            "round_prefer_ceil",
            2.0,
            Resample(4, 8, ResampleMode.NEAREST_EXACT, Fraction(1, 2)),
        ),
        ("linear", "half_pixel", "", 2.0, Resample(4, 8, ResampleMode.LINEAR, Fraction(1, 2))),
        (
            "linear",
            "align_corners",
            "",
            2.0,
            Resample(4, 8, ResampleMode.LINEAR, Fraction(3, 7), True),
        ),
    ],
)
def test_resize_uses_pytorchs_window_when_the_taps_agree(mode, ctm, nearest, scale, want):
    b, ctx = _ctx(
        "Resize",
        {"mode": mode, "coordinate_transformation_mode": ctm, "nearest_mode": nearest or "floor"},
        (1, 1, 4),
    )
    ctx.inputs += [None, np.array([1, 1, scale], dtype=np.float32)]
    rule_for("Resize")(ctx)
    window = b.nodes["resize"].edges[0][1][0]
    assert (window.size_in, window.size_out, window.mode, window.align_corners) == (
        want.size_in,
        want.size_out,
        want.mode,
        want.align_corners,
    )


def test_resize_taps_window_keeps_the_jump():
    b, ctx = _ctx(
        "Resize", {"mode": "nearest", "coordinate_transformation_mode": "half_pixel"}, (1, 1, 5)
    )
    ctx.inputs += [None, np.array([1, 1, 1.5], dtype=np.float32)]
    rule_for("Resize")(ctx)
    window = b.nodes["resize"].edges[0][1][0]
    assert isinstance(window, Taps) and window.scale == Fraction(5, 7)


def test_a_padded_unet_block_matches_perturbation():
    nodes = [
        helper.make_node("MaxPool", ["x"], ["d"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["d", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Resize", ["c", "", "s"], ["u"], mode="linear"),
        helper.make_node("Concat", ["x", "u"], ["y"], axis=1),
    ]
    inits = [weight("w", (1, 1, 3, 3)), floats("s", [1, 1, 2, 2])]
    check(model(nodes, [1, 1, 8, 6], inits), (1, 8, 6))
