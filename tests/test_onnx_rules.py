"""Every ONNX operator rule against brute-force perturbation with onnxruntime.

Each case is a small hand-built graph (``onnx.helper``); :func:`onnx_oracle.check`
compares, element by element of the output, the input positions the frontend says each
unit reads with those whose change changes it in onnxruntime.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from onnx import helper

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx_oracle import OPSET, check, floats, ints, model, weight

node = helper.make_node


def conv(name: str, x: str, y: str, c_in: int, c_out: int, k: int = 3, **attrs: Any):
    """A Conv node and its weight (positive), ``k`` in every spatial dim of a 2D input."""
    return node("Conv", [x, name], [y], **attrs), weight(name, (c_out, c_in, k, k))


CASES: dict[str, Callable[[], tuple[Any, tuple[int, ...]]]] = {}


def case(fn: Callable[[], tuple[Any, tuple[int, ...]]]) -> Callable[[], Any]:
    CASES[fn.__name__] = fn
    return fn


# -- element-wise, layout, products -----------------------------------------------------


@case
def residual_add_relu_sigmoid():
    c1, w1 = conv("w1", "x", "a", 2, 2, pads=[1, 1, 1, 1])
    nodes = [c1, node("Relu", ["a"], ["r"]), node("Add", ["r", "x"], ["s"])]
    nodes.append(node("Sigmoid", ["s"], ["y"]))
    return model(nodes, [1, 2, 6, 6], [w1]), (2, 6, 6)


@case
def mul_broadcast_clip_where():
    nodes = [
        node("Mul", ["x", "scale"], ["m"]),
        node("Clip", ["m", "lo", "hi"], ["c"]),
        node("Greater", ["c", "zero"], ["g"]),
        node("Where", ["g", "c", "x"], ["y"]),
    ]
    inits = [floats("scale", [2.0]), floats("lo", [-1.0]), floats("hi", [6.0]), floats("zero", [0])]
    return model(nodes, [1, 2, 5, 4], inits), (2, 5, 4)


@case
def batchnorm_prelu_identity_dropout_cast():
    nodes = [
        node("BatchNormalization", ["x", "s", "b", "m", "v"], ["bn"]),
        node("PRelu", ["bn", "slope"], ["p"]),
        node("Identity", ["p"], ["i"]),
        node("Dropout", ["i"], ["d"]),
        node("Cast", ["d"], ["y"], to=1),
    ]
    inits = [floats(n, [1.0, 2.0]) for n in ("s", "b", "m", "v")]
    inits.append(numpy_from([[[0.1]], [[0.2]]], "slope"))
    return model(nodes, [1, 2, 4, 5], inits), (2, 4, 5)


def numpy_from(values: Any, name: str) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.array(values, dtype=np.float32), name)


@case
def layernorm_over_width():
    nodes = [node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1)]
    return model(nodes, [1, 2, 3, 5], [floats("g", [1.0] * 5), floats("b", [0.0] * 5)]), (2, 3, 5)


@case
def instance_norm_then_conv():
    c1, w1 = conv("w1", "n", "y", 2, 3, pads=[1, 1, 1, 1])
    nodes = [node("InstanceNormalization", ["x", "s", "b"], ["n"]), c1]
    return model(nodes, [1, 2, 4, 4], [floats("s", [1, 1]), floats("b", [0, 0]), w1]), (2, 4, 4)


@case
def softmax_over_channels_and_width():
    nodes = [node("Softmax", ["x"], ["s"], axis=1), node("LogSoftmax", ["s"], ["y"], axis=-1)]
    return model(nodes, [1, 3, 4, 5]), (3, 4, 5)


@case
def softmax_opset11_coerces_to_2d():
    nodes = [node("Softmax", ["x"], ["y"], axis=2)]
    return model(nodes, [1, 2, 3, 4], opset=11), (2, 3, 4)


@case
def reductions_keepdims_and_axes_input():
    nodes = [
        node("ReduceMean", ["x", "ax_h"], ["m"], keepdims=1),
        node("Add", ["x", "m"], ["a"]),
        node("ReduceMax", ["a", "ax_c"], ["y"], keepdims=0),
    ]
    return model(nodes, [1, 3, 4, 5], [ints("ax_h", [2]), ints("ax_c", [1])]), (3, 4, 5)


@case
def reduce_sum_opset13_and_argmax():
    nodes = [
        node("ReduceSum", ["x", "ax"], ["s"], keepdims=1),
        node("ArgMax", ["s"], ["am"], axis=3, keepdims=1),
        node("Cast", ["am"], ["c"], to=1),
        node("Add", ["c", "x"], ["y"]),
    ]
    return model(nodes, [1, 2, 3, 4], [ints("ax", [1])], opset=13), (2, 3, 4)


@case
def slice_steps_negative_starts_and_channels():
    nodes = [
        node("Slice", ["x", "st", "en", "ax", "sp"], ["a"]),
        node("Slice", ["a", "st2", "en2", "ax2"], ["y"]),
    ]
    inits = [
        ints("st", [1, -6]),
        ints("en", [100, -1]),
        ints("ax", [2, 3]),
        ints("sp", [2, 1]),
        ints("st2", [1]),
        ints("en2", [2]),
        ints("ax2", [1]),
    ]
    return model(nodes, [1, 3, 9, 8], inits), (3, 9, 8)


@case
def slice_negative_step_of_channels():
    nodes = [node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])]
    inits = [ints("st", [-1]), ints("en", [-100]), ints("ax", [1]), ints("sp", [-1])]
    return model(nodes, [1, 3, 4, 4], inits), (3, 4, 4)


@case
def slice_opset9_attributes():
    nodes = [node("Slice", ["x"], ["y"], starts=[1, 2], ends=[4, 6], axes=[2, 3])]
    return model(nodes, [1, 2, 5, 7], opset=9), (2, 5, 7)


@case
def concat_channels_and_height():
    c1, w1 = conv("w1", "x", "a", 2, 2, pads=[1, 1, 1, 1])
    nodes = [c1, node("Concat", ["x", "a"], ["cat"], axis=1)]
    nodes.append(node("Concat", ["cat", "x4"], ["y"], axis=2))
    nodes.insert(0, node("Concat", ["x", "x"], ["x4"], axis=1))
    return model(nodes, [1, 2, 4, 5], [w1]), (2, 4, 5)


@case
def split_width_then_add():
    nodes = [
        node("Split", ["x", "sizes"], ["a", "b"], axis=3),
        node("Conv", ["b", "w"], ["c"], pads=[0, 1, 0, 1], kernel_shape=[1, 3]),
        node("Add", ["a", "c"], ["y"]),
    ]
    return model(nodes, [1, 2, 4, 6], [ints("sizes", [3, 3]), weight("w", (2, 2, 1, 3))]), (
        2,
        4,
        6,
    )


@case
def split_num_outputs_opset18():
    nodes = [
        node("Split", ["x"], ["a", "b"], axis=2, num_outputs=2),
        node("Mul", ["a", "b"], ["y"]),
    ]
    return model(nodes, [1, 2, 6, 3]), (2, 6, 3)


@case
def reshape_from_shape_gather_concat():
    nodes = [
        node("Shape", ["x"], ["shape"]),
        node("Gather", ["shape", "i01"], ["nc"], axis=0),
        node("Concat", ["nc", "minus1"], ["target"], axis=0),
        node("Reshape", ["x", "target"], ["flat"]),
        node("Softmax", ["flat"], ["s"], axis=-1),
        node("Reshape", ["s", "back"], ["y"]),
    ]
    inits = [ints("i01", [0, 1]), ints("minus1", [-1]), ints("back", [0, 0, 4, 5])]
    return model(nodes, [1, 2, 4, 5], inits), (2, 4, 5)


@case
def transpose_nhwc_softmax_back():
    nodes = [
        node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
        node("Softmax", ["t"], ["s"], axis=2),
        node("Transpose", ["s"], ["y"], perm=[0, 3, 1, 2]),
    ]
    return model(nodes, [1, 2, 3, 4]), (2, 3, 4)


@case
def flatten_gemm():
    nodes = [
        node("Flatten", ["x"], ["f"], axis=1),
        node("Gemm", ["f", "w", "b"], ["y"], transB=1),
    ]
    return model(nodes, [1, 2, 3, 3], [weight("w", (4, 18)), floats("b", [0.0] * 4)]), (2, 3, 3)


@case
def squeeze_unsqueeze_matmul_over_width():
    nodes = [
        node("Unsqueeze", ["x", "ax0"], ["u"]),
        node("Squeeze", ["u", "ax0"], ["s"]),
        node("MatMul", ["s", "w"], ["y"]),
    ]
    return model(nodes, [1, 2, 3, 4], [ints("ax0", [0]), weight("w", (4, 6))]), (2, 3, 4)


@case
def matmul_of_two_computed_tensors():
    nodes = [node("Transpose", ["x"], ["t"], perm=[0, 1, 3, 2]), node("MatMul", ["x", "t"], ["y"])]
    return model(nodes, [1, 1, 3, 4]), (1, 3, 4)


@case
def einsum_channel_mix_and_width_contraction():
    nodes = [
        node("Einsum", ["x", "w"], ["a"], equation="nchw,cd->ndhw"),
        node("Einsum", ["a", "v"], ["y"], equation="...w,wv->...v"),
    ]
    return model(nodes, [1, 2, 3, 4], [weight("w", (2, 3)), weight("v", (4, 2))]), (2, 3, 4)


@case
def tile_expand_height():
    nodes = [
        node("Tile", ["x", "rep"], ["t"]),
        node("Expand", ["t", "shape"], ["y"]),
    ]
    return model(nodes, [1, 1, 3, 4], [ints("rep", [1, 2, 2, 1]), ints("shape", [2, 1, 1, 1])]), (
        1,
        3,
        4,
    )


@case
def cumsum_forward_reverse_exclusive():
    nodes = [
        node("CumSum", ["x", "ax2"], ["a"]),
        node("CumSum", ["a", "ax3"], ["b"], reverse=1, exclusive=1),
        node("CumSum", ["x", "ax3"], ["c"], exclusive=1),
        node("Add", ["b", "c"], ["y"]),
    ]
    return model(nodes, [1, 2, 5, 4], [ints("ax2", [2]), ints("ax3", [3])]), (2, 5, 4)


@case
def topk_over_width():
    nodes = [node("TopK", ["x", "k"], ["y", "idx"], axis=3)]
    return model(nodes, [1, 2, 3, 5], [ints("k", [2])]), (2, 3, 5)


@case
def gather_rows_and_a_column():
    nodes = [
        node("Gather", ["x", "rows"], ["g"], axis=2),
        node("Gather", ["g", "col"], ["y"], axis=3),
    ]
    rows = numpy_int([0, 2, 2, 5], "rows")
    return model(nodes, [1, 2, 6, 4], [rows, numpy_int(1, "col")]), (2, 6, 4)


def numpy_int(values: Any, name: str) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


@case
def depth_to_space_space_to_depth():
    nodes = [
        node("SpaceToDepth", ["x"], ["s"], blocksize=2),
        node("Conv", ["s", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        node("DepthToSpace", ["c"], ["y"], blocksize=2, mode="CRD"),
    ]
    return model(nodes, [1, 1, 6, 4], [weight("w", (4, 4, 3, 3))]), (1, 6, 4)


@case
def constant_nodes_and_size():
    nodes = [
        node("Constant", [], ["c"], value_float=2.0),
        node("Size", ["x"], ["n"]),
        node("Cast", ["n"], ["nf"], to=1),
        node("Mul", ["c", "nf"], ["k"]),
        node("Add", ["x", "k"], ["y"]),
    ]
    return model(nodes, [1, 2, 3, 3]), (2, 3, 3)


# -- convolutions and pools -------------------------------------------------------------


@case
def conv_strided_dilated_grouped():
    nodes = [
        node("Conv", ["x", "w1"], ["a"], pads=[2, 1, 0, 2], strides=[2, 1], dilations=[1, 2]),
        node("Conv", ["a", "w2"], ["y"], group=2, kernel_shape=[2, 3], auto_pad="SAME_LOWER"),
    ]
    return model(nodes, [1, 2, 9, 8], [weight("w1", (4, 2, 3, 3)), weight("w2", (4, 2, 2, 3))]), (
        2,
        9,
        8,
    )


@case
def conv_same_upper_valid_1d():
    nodes = [
        node("Conv", ["x", "w1"], ["a"], auto_pad="SAME_UPPER", strides=[3]),
        node("Conv", ["a", "w2", "b"], ["y"], auto_pad="VALID", strides=[2]),
    ]
    inits = [weight("w1", (2, 2, 4)), weight("w2", (2, 2, 3)), floats("b", [0.5, 0.5])]
    return model(nodes, [1, 2, 17], inits), (2, 17)


@case
def conv_3d():
    nodes = [node("Conv", ["x", "w"], ["y"], pads=[1, 0, 1, 0, 1, 1], strides=[1, 2, 2])]
    return model(nodes, [1, 1, 3, 5, 5], [weight("w", (1, 1, 2, 3, 3))]), (1, 3, 5, 5)


@case
def conv_transpose_padded():
    nodes = [
        node(
            "ConvTranspose",
            ["x", "w"],
            ["y"],
            strides=[2, 2],
            pads=[1, 1, 1, 0],
            output_padding=[1, 0],
        ),
    ]
    return model(nodes, [1, 2, 4, 3], [weight("w", (2, 3, 3, 3))]), (2, 4, 3)


@case
def conv_transpose_output_shape_dilated_grouped():
    nodes = [
        node(
            "ConvTranspose",
            ["x", "w"],
            ["y"],
            strides=[3, 2],
            dilations=[2, 1],
            group=2,
            output_shape=[11, 8],
        ),
    ]
    return model(nodes, [1, 2, 4, 3], [weight("w", (2, 1, 2, 3))]), (2, 4, 3)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_conv_transpose_auto_pad(auto_pad):
    nodes = [node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 3], auto_pad=auto_pad)]
    check(model(nodes, [1, 1, 3, 4], [weight("w", (1, 2, 4, 3))]), (1, 3, 4))


@case
def maxpool_ceil_dilated_with_indices():
    nodes = [
        node(
            "MaxPool",
            ["x"],
            ["a", "idx"],
            kernel_shape=[3, 2],
            strides=[2, 2],
            pads=[1, 0, 1, 1],
            ceil_mode=1,
        ),
        node("MaxPool", ["a"], ["y"], kernel_shape=[2, 2], dilations=[2, 1]),
    ]
    return model(nodes, [1, 2, 9, 7]), (2, 9, 7)


@case
def average_and_lp_pools():
    nodes = [
        node(
            "AveragePool",
            ["x"],
            ["a"],
            kernel_shape=[3, 3],
            strides=[2, 2],
            auto_pad="SAME_UPPER",
            count_include_pad=1,
        ),
        node("LpPool", ["a"], ["y"], kernel_shape=[2, 2], p=2, pads=[1, 1, 0, 0]),
    ]
    return model(nodes, [1, 2, 8, 7]), (2, 8, 7)


@case
def global_pools_and_gate():
    nodes = [
        node("GlobalAveragePool", ["x"], ["a"]),
        node("GlobalMaxPool", ["x"], ["m"]),
        node("GlobalLpPool", ["x"], ["l"], p=2),
        node("Sum", ["a", "m", "l"], ["g"]),
        node("Mul", ["x", "g"], ["y"]),
    ]
    return model(nodes, [1, 2, 4, 5]), (2, 4, 5)


@case
def global_pool_output():
    nodes = [node("GlobalAveragePool", ["x"], ["y"])]
    return model(nodes, [1, 2, 4, 5]), (2, 4, 5)


# -- padding ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_modes(mode):
    opset = 19 if mode == "wrap" else OPSET
    nodes = [
        node("Pad", ["x", "pads"], ["p"], mode=mode),
        node("Conv", ["p", "w"], ["y"]),
    ]
    inits = [ints("pads", [0, 0, 2, 1, 0, 0, 1, 2]), weight("w", (1, 2, 3, 2))]
    check(model(nodes, [1, 2, 4, 5], inits, opset=opset), (2, 4, 5))


@case
def pad_constant_node_value_crop_and_axes():
    nodes = [
        node("Constant", [], ["pads"], value=ints("v", [2, -1, 0, 1])),
        node("Pad", ["x", "pads", "value", "axes"], ["y"]),
    ]
    inits = [floats("value", [3.0]), ints("axes", [3, 2])]
    return model(nodes, [1, 1, 4, 5], inits), (1, 4, 5)


@case
def pad_opset7_attribute():
    nodes = [node("Pad", ["x"], ["y"], pads=[0, 1, 1, 0, 0, 0, 2, 1], mode="edge")]
    return model(nodes, [1, 2, 3, 4], opset=7), (2, 3, 4)


# -- resizing ---------------------------------------------------------------------------

RESIZE = [
    ("nearest", "asymmetric", "floor", [1, 1, 2, 2], None),
    ("nearest", "half_pixel", "round_prefer_floor", [1, 1, 2, 3], None),
    ("nearest", "half_pixel", "round_prefer_ceil", [1, 1, 0.5, 2], None),
    ("nearest", "align_corners", "round_prefer_floor", None, [1, 1, 7, 5]),
    ("nearest", "asymmetric", "ceil", None, [1, 1, 3, 7]),
    ("nearest", "tf_half_pixel_for_nn", "floor", [1, 1, 1.5, 2.5], None),
    ("linear", "half_pixel", "", [1, 1, 2, 2], None),
    ("linear", "align_corners", "", None, [1, 1, 7, 9]),
    ("linear", "asymmetric", "", [1, 1, 0.5, 1.5], None),
    ("linear", "pytorch_half_pixel", "", None, [1, 1, 1, 10]),
    ("cubic", "half_pixel", "", [1, 1, 2, 2], None),
    ("cubic", "align_corners", "", None, [1, 1, 9, 6]),
    ("cubic", "asymmetric", "", [1, 1, 1.5, 3], None),
]


RESIZE += [(*r[:3], r[3], r[4], 1) for r in RESIZE if r[0] == "cubic"]


@pytest.mark.parametrize(
    ("mode", "ctm", "nearest", "scales", "sizes", "exclude_outside"),
    [(*r, 0) if len(r) == 5 else r for r in RESIZE],
)
def test_resize(mode, ctm, nearest, scales, sizes, exclude_outside):
    attrs: dict[str, Any] = {"mode": mode, "coordinate_transformation_mode": ctm}
    if nearest:
        attrs["nearest_mode"] = nearest
    if exclude_outside:
        attrs["exclude_outside"] = 1
    inputs = ["x", "", "scales" if scales else "", "sizes" if sizes else ""]
    inits = [floats("scales", scales)] if scales else [ints("sizes", sizes)]
    nodes = [node("Resize", inputs, ["r"], **attrs), node("Conv", ["r", "w"], ["y"])]
    check(model(nodes, [1, 1, 5, 4], [*inits, weight("w", (1, 1, 1, 2))]), (1, 5, 4))


@case
def resize_sizes_not_a_multiple_with_axes_and_aspect_policy():
    nodes = [
        node(
            "Resize",
            ["x", "", "", "sizes"],
            ["y"],
            mode="linear",
            axes=[2, 3],
            keep_aspect_ratio_policy="not_larger",
        ),
    ]
    return model(nodes, [1, 1, 4, 6], [ints("sizes", [7, 9])]), (1, 4, 6)


@case
def resize_opset10():
    nodes = [node("Resize", ["x", "s"], ["y"], mode="nearest")]
    return model(nodes, [1, 1, 3, 4], [floats("s", [1, 1, 0.5, 1.5])], opset=10), (1, 3, 4)


@case
def upsample_opset9():
    nodes = [node("Upsample", ["x", "s"], ["y"], mode="linear")]
    return model(nodes, [1, 1, 3, 4], [floats("s", [1, 1, 1.5, 2])], opset=9), (1, 3, 4)


@case
def upsample_opset7_attribute():
    nodes = [node("Upsample", ["x"], ["y"], mode="nearest", scales=[1.0, 1.0, 2.0, 3.0])]
    return model(nodes, [1, 1, 3, 2], opset=7), (1, 3, 2)


@case
def resize_of_channels():
    nodes = [node("Resize", ["x", "", "scales"], ["y"], mode="nearest")]
    return model(nodes, [1, 2, 3, 2], [floats("scales", [1, 2, 2, 1])]), (2, 3, 2)


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_matches_perturbation(name):
    m, size = CASES[name]()
    traced = check(m, size)
    assert not traced.measured, traced.notes  # every operator here has a rule


def test_every_listed_operator_has_a_rule():
    from rfmap.frontends.onnx import registered_onnx_ops

    listed = [
        "Conv",
        "ConvTranspose",
        "MaxPool",
        "AveragePool",
        "LpPool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "GlobalLpPool",
        "Pad",
        "Resize",
        "Upsample",
        "Slice",
        "Concat",
        "Split",
        "Reshape",
        "Transpose",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Gemm",
        "MatMul",
        "Add",
        "Mul",
        "Relu",
        "Sigmoid",
        "BatchNormalization",
        "LayerNormalization",
        "Clip",
        "ReduceMean",
        "ReduceSum",
        "ReduceMax",
        "Softmax",
        "Identity",
        "Dropout",
        "Shape",
        "Gather",
        "Einsum",
    ]
    have = {op for domain, op in registered_onnx_ops() if domain == ""}
    assert set(listed) <= have
