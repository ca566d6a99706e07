"""The ONNX frontend: untrusted files, input layouts, layers, folding, operators without a
rule, PyTorch exports (torchvision trunks), and the perturbation measurement."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx_oracle import check, floats, ints, model, perturbation_supports, weight
from oracles import examples
from rfmap.builder import Same
from rfmap.errors import InvalidSpecError, ModelError, UnsupportedLayerError
from rfmap.frontends import onnx as frontend
from rfmap.frontends import onnx_measure, onnx_rules
from rfmap.frontends.onnx import load_onnx, measure_rf, model_rf, register_onnx_rule, trace

node = helper.make_node


def small_net(opset: int = 18):
    """conv 3 p1 -> maxpool 2 -> conv 3 p1: RF 8, jump 2, padding 3 (as tests/test_cli_model)."""
    nodes = [
        node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1], name="conv1"),
        node("Relu", ["a"], ["r"], name="relu1"),
        node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
        node("Conv", ["p", "w2"], ["y"], pads=[1, 1, 1, 1], name="conv2"),
    ]
    return model(
        nodes,
        ["N", 1, "H", "W"],
        [weight("w1", (2, 1, 3, 3)), weight("w2", (2, 2, 3, 3))],
        opset=opset,
    )


def save(tmp_path: Path, m, name: str = "net.onnx") -> Path:
    path = tmp_path / name
    path.write_bytes(m.SerializeToString())
    return path


# -- loading untrusted files ------------------------------------------------------------


def test_a_file_and_a_proto_give_the_same_answer(tmp_path):
    path = save(tmp_path, small_net())
    a, b = model_rf(path, (1, 16, 16)), model_rf(small_net(), (1, 16, 16))
    assert (a.receptive_field, a.stride, a.padding) == ((8, 8), (2, 2), (3, 3))
    assert a.to_dict() == b.to_dict()
    assert [r.op for r in a.layers] == ["input", "Conv", "MaxPool", "Conv"]
    assert [r.name for r in a.layers] == ["x", "conv1", "pool", "conv2"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "ONNX file not found"),
        (b"", "is empty"),
        (b"\x00\xff" * 64, "is not an ONNX model"),
        (b"hello world, not protobuf", "is not an ONNX model"),
    ],
)
def test_bad_files_are_one_line_model_errors(tmp_path, content, message):
    path = tmp_path / "bad.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=message) as info:
        model_rf(path, (1, 8, 8))
    assert "\n" not in str(info.value)


def test_every_truncation_of_a_model_is_a_clean_error(tmp_path):
    data = small_net().SerializeToString()
    path = tmp_path / "cut.onnx"
    for size in range(0, len(data), 7):
        path.write_bytes(data[:size])
        with pytest.raises(ModelError) as info:
            model_rf(path, (1, 8, 8))
        assert "\n" not in str(info.value)


def test_size_and_node_limits_are_checked_before_work(tmp_path, monkeypatch):
    path = save(tmp_path, small_net())
    with pytest.raises(ModelError, match="more than the limit of 100 bytes"):
        load_onnx(path, max_bytes=100)
    monkeypatch.setattr(frontend, "MAX_NODES", 3)
    with pytest.raises(ModelError, match="has 4 nodes, more than the limit of 3"):
        load_onnx(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.ClearField("opset_import"), "imports no version of the ONNX operator set"),
        (lambda m: m.graph.ClearField("output"), "has no graph output"),
        (lambda m: m.graph.ClearField("node"), "not an ONNX model with a graph of nodes"),
        (lambda m: m.graph.node[1].input.__setitem__(0, "nowhere"), "reads tensor 'nowhere'"),
        (lambda m: m.graph.node.reverse(), "which no earlier node"),
        (
            lambda m: m.graph.input.append(helper.make_tensor_value_info("z", 1, [1])),
            "has 2 inputs ('x', 'z')",
        ),
        (lambda m: m.graph.node[0].attribute[0].ints.__setitem__(0, -5), "pads must be 4 integers"),
        (
            lambda m: m.graph.node[2].attribute.append(helper.make_attribute("auto_pad", "MIDDLE")),
            "auto_pad 'MIDDLE' is not an ONNX value",
        ),
        (lambda m: setattr(m.graph.node[0], "domain", "my.ops"), "which the model does not import"),
    ],
)
def test_broken_graphs_are_one_line_errors(edit, message):
    m = small_net()
    edit(m)
    with pytest.raises((ModelError, InvalidSpecError)) as info:
        model_rf(m, (1, 8, 8))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_external_data_is_never_read(tmp_path):
    """A model may name any file as external data: rfmap reads none, not even to measure."""
    m = small_net()
    w1 = m.graph.initializer[0]
    w1.ClearField("raw_data")
    w1.ClearField("float_data")
    w1.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../../../../etc/shadow"), ("offset", "0"), ("length", "72")):
        entry = w1.external_data.add()
        entry.key, entry.value = key, value
    r = model_rf(m, (1, 16, 16))
    assert (r.receptive_field, r.stride, r.padding) == ((8, 8), (2, 2), (3, 3))
    assert measure_rf(m, (1, 16, 16), (2, 3)).box == r.input_box((2, 3))


def test_a_shape_stored_in_external_data_is_an_error_naming_the_node():
    nodes = [node("Reshape", ["x", "shape"], ["y"], name="flat")]
    shape = ints("shape", [1, -1])
    shape.ClearField("raw_data")
    shape.data_location = TensorProto.EXTERNAL
    entry = shape.external_data.add()
    entry.key, entry.value = "location", "shape.bin"
    with pytest.raises(UnsupportedLayerError, match=r"'flat'.*external data") as info:
        model_rf(model(nodes, [1, 1, 4, 4], [shape]), (1, 4, 4), method="analytic")
    assert "\n" not in str(info.value)


# -- inputs and layers ------------------------------------------------------------------


def test_fixed_input_dims_are_checked():
    m = model([node("Relu", ["x"], ["y"])], [1, 3, 32, 32])
    assert model_rf(m, (3, 32, 32)).grid == (32, 32)
    with pytest.raises(ModelError, match=r"input size 3,64,64 does not fit .* \[1, 3, 32, 32\]"):
        model_rf(m, (3, 64, 64))
    with pytest.raises(ModelError, match=r"has 4 dims .* needs 3"):
        model_rf(m, (3, 32))


def test_a_channels_last_model_is_read_channels_last():
    nodes = [
        node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
        node("Conv", ["t", "w"], ["y"], kernel_shape=[3, 5], strides=[1, 2]),
    ]
    m = model(nodes, ["N", 12, 16, 3], [weight("w", (4, 3, 3, 5))])
    r = model_rf(m, (3, 12, 16))
    assert (r.receptive_field, r.stride, r.grid) == ((3, 5), (1, 2), (10, 6))
    traced = trace(m, (3, 12, 16))
    assert traced.input_shape == (1, 12, 16, 3) and traced.spatial_dims == (1, 2)


def test_1d_and_3d_models():
    conv1d = model(
        [node("Conv", ["x", "w"], ["y"], strides=[2])], ["N", 2, "L"], [weight("w", (2, 2, 5))]
    )
    r = model_rf(conv1d, (2, 100))
    assert (r.receptive_field, r.stride, r.grid) == ((5,), (2,), (48,))
    conv3d = model(
        [node("Conv", ["x", "w"], ["y"], pads=[1, 2, 2, 1, 2, 2])],
        ["N", 2, 5, 9, 9],
        [weight("w", (3, 2, 3, 5, 5))],
    )
    r = model_rf(conv3d, (2, 5, 9, 9))
    assert (r.receptive_field, r.padding, r.grid) == ((3, 5, 5), (1, 2, 2), (5, 9, 9))


def test_layers_by_node_or_tensor_name():
    m = small_net()
    by_node = model_rf(m, (1, 16, 16), "pool")
    by_tensor = model_rf(m, (1, 16, 16), "p")
    assert by_node.to_dict() == by_tensor.to_dict()
    assert (by_node.receptive_field, by_node.stride) == ((4, 4), (2, 2))
    # an activation creates no node: its name stands for the convolution it follows
    assert model_rf(m, (1, 16, 16), "relu1").receptive_field == (3, 3)
    with pytest.raises(InvalidSpecError, match=r"no layer named 'pol'.*did you mean 'pool'"):
        model_rf(m, (1, 16, 16), "pol")


def test_a_layer_made_of_blocks_becomes_one_node():
    nodes = [
        node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 3], pads=[0, 1, 0, 1]),
        node("Concat", ["x", "c"], ["cat"], axis=3, name="join"),
        node("Relu", ["cat"], ["y"]),
    ]
    m = model(nodes, [1, 1, 4, 5], [weight("w", (1, 1, 1, 3))])
    r = model_rf(m, (1, 4, 5), "join")
    assert r.node == "cat" and r.layers[-1].op == "merge"  # named after the tensor
    check(m, (1, 4, 5))


def test_a_layer_that_does_not_depend_on_the_input():
    nodes = [node("Shape", ["x"], ["s"], name="shape"), node("Relu", ["x"], ["y"])]
    with pytest.raises(InvalidSpecError, match="'shape' does not depend on the model input"):
        model_rf(model(nodes, [1, 1, 4, 4]), (1, 4, 4), "shape")


def test_local_functions_are_inlined():
    fn = helper.make_function(
        "my.fns",
        "Smooth",
        ["a", "k"],
        ["b"],
        [node("Conv", ["a", "k"], ["b"], pads=[1, 1, 1, 1])],
        opset_imports=[helper.make_opsetid("", 18)],
    )
    m = model(
        [node("Smooth", ["x", "w"], ["y"], domain="my.fns")],
        [1, 1, 6, 6],
        [weight("w", (1, 1, 3, 3))],
    )
    m.functions.append(fn)
    m.opset_import.append(helper.make_opsetid("my.fns", 1))
    r = model_rf(m, (1, 6, 6))
    assert (r.receptive_field, r.padding, r.exact) == ((3, 3), (1, 1), True)


# -- operators without a rule -------------------------------------------------------------


def _grid_sample_net():
    """GridSample with a constant axis-aligned grid (no rule): a 2x bilinear zoom."""
    h, w = 4, 6
    ys = np.linspace(-0.5, 0.5, h)
    xs = np.linspace(-0.5, 0.5, w)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1)[None].astype(np.float32)
    nodes = [
        node("GridSample", ["x", "grid"], ["g"], align_corners=0, name="sample"),
        node("Conv", ["g", "w"], ["y"], pads=[1, 1, 1, 1]),
    ]
    inits = [numpy_helper.from_array(grid, "grid"), weight("w", (1, 1, 3, 3))]
    return model(nodes, [1, 1, h, w], inits)


def test_an_operator_without_a_rule_is_measured_and_flagged():
    m = _grid_sample_net()
    traced = check(m, (1, 4, 6))
    assert traced.measured == ["sample"]
    r = model_rf(m, (1, 4, 6))
    assert r.method == "mixed" and r.measured_nodes == ("sample",) and not r.exact
    assert any("'GridSample'" in n and "measured by perturbation" in n for n in r.notes)


def test_analytic_method_names_the_operator():
    with pytest.raises(UnsupportedLayerError, match=r"ONNX operator 'GridSample'.*'sample'"):
        model_rf(_grid_sample_net(), (1, 4, 6), method="analytic")


def test_without_onnxruntime_an_unknown_operator_is_a_clear_error(monkeypatch):
    def missing():
        raise ModelError("no onnxruntime")

    monkeypatch.setattr(onnx_measure, "require_onnxruntime", missing)
    with pytest.raises(UnsupportedLayerError, match=r"'GridSample'.*install onnxruntime"):
        model_rf(_grid_sample_net(), (1, 4, 6))


def test_an_operator_nothing_can_run_is_a_clear_error():
    nodes = [node("Blur", ["x"], ["y"], domain="my.ops", name="blur")]
    m = model(nodes, [1, 1, 4, 4])
    m.opset_import.append(helper.make_opsetid("my.ops", 1))
    with pytest.raises(UnsupportedLayerError, match=r"'Blur' of domain 'my.ops'.*'blur'") as info:
        model_rf(m, (1, 4, 4))
    assert "\n" not in str(info.value)


def test_a_registered_rule_is_used():
    nodes = [node("Blur", ["x"], ["y"], domain="my.ops", name="blur")]
    m = model(nodes, [1, 1, 8, 8])
    m.opset_import.append(helper.make_opsetid("my.ops", 1))

    @register_onnx_rule("Blur", domain="my.ops")
    def _blur(ctx):
        from rfmap.builder import Slide
        from rfmap.windows import Conv

        x = ctx.tensor(0)
        rel = (Same(0), Same(1), Slide(2, Conv(5, 1, 1, -2)), Slide(3, Conv(5, 1, 1, -2)))
        return [ctx.builder.apply(ctx.name, ctx.op, x.shape, [(x, rel)])]

    try:
        r = model_rf(m, (1, 8, 8))
        assert (r.receptive_field, r.padding, r.exact) == ((5, 5), (2, 2), True)
    finally:
        del onnx_rules._RULES[("my.ops", "Blur")]


def test_unknown_operator_measured_inside_a_resize_gives_exact_taps():
    # cubic_coeff_a -0.6 has no exact rule (rounding): measured, and still exact
    nodes = [node("Resize", ["x", "", "s"], ["y"], mode="cubic", cubic_coeff_a=-0.6)]
    traced = check(model(nodes, [1, 1, 5, 4], [floats("s", [1, 1, 2, 1.5])]), (1, 5, 4))
    assert traced.measured


# -- folding ----------------------------------------------------------------------------


def test_folding_is_bounded_and_never_runs_control_flow():
    then = helper.make_graph(
        [node("Constant", [], ["t"], value_ints=[1, -1])],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.INT64, [2])],
    )
    nodes = [
        node("Constant", [], ["c"], value_int=1),
        node("Cast", ["c"], ["b"], to=TensorProto.BOOL),
        node("If", ["b"], ["shape"], then_branch=then, else_branch=then),
        node("Reshape", ["x", "shape"], ["y"], name="flat"),
    ]
    with pytest.raises(UnsupportedLayerError, match=r"'flat'.*If") as info:
        model_rf(model(nodes, [1, 1, 4, 4]), (1, 4, 4), method="analytic")
    assert "\n" not in str(info.value)
    big = [node("ConstantOfShape", ["n"], ["z"]), node("Add", ["x", "z"], ["y"])]
    r = model_rf(model(big, [1, 1, 4, 4], [ints("n", [1, 1, 4, 4])]), (1, 4, 4))
    assert r.receptive_field == (1, 1)


# -- PyTorch exports ----------------------------------------------------------------------

TRUNKS = {
    "resnet18": (
        (435, 32, 217),
        lambda tv, nn: nn.Sequential(*list(tv.resnet18().children())[:-2]),
    ),
    "resnet50": (
        (427, 32, 213),
        lambda tv, nn: nn.Sequential(*list(tv.resnet50().children())[:-2]),
    ),
    # vgg16().features without building the 100M-parameter classifier
    "vgg16": ((212, 32, 90), lambda tv, nn: tv.vgg.make_layers(tv.vgg.cfgs["D"])),
    "mobilenet_v2": ((491, 32, 245), lambda tv, nn: tv.mobilenet_v2().features),
    "densenet121": ((2071, 32, 1021), lambda tv, nn: tv.densenet121().features),
}


def _export(module, size, path, dynamo=False):
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.zeros(1, *size),), str(path), dynamo=dynamo)
    return path


@pytest.fixture(scope="session")
def trunk(tmp_path_factory):
    """``trunk(name) -> (torch module, exported path)``, exported once per session."""
    pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    import torch

    cache: dict[str, tuple] = {}

    def get(name):
        if name not in cache:
            torch.manual_seed(0)
            module = TRUNKS[name][1](tv.models, torch.nn).eval()
            path = tmp_path_factory.mktemp("trunks") / f"{name}.onnx"
            cache[name] = (module, _export(module, (3, 224, 224), path))
        return cache[name]

    return get


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TRUNKS))
def test_torchvision_trunks_match_the_pytorch_frontend(trunk, name):
    from rfmap.trace import model_rf as torch_rf

    module, path = trunk(name)
    r = model_rf(path, (3, 224, 224))
    rf, stride, padding = TRUNKS[name][0]
    assert (r.receptive_field, r.stride, r.padding) == ((rf, rf), (stride, stride), (padding,) * 2)
    t = torch_rf(module, (3, 224, 224))
    keys = (
        "receptive_field",
        "stride",
        "padding",
        "min_receptive_field",
        "max_path_receptive_field",
        "aligned",
        "grid",
        "exact",
        "is_global",
    )
    assert {k: r.to_dict()[k] for k in keys} == {k: t.to_dict()[k] for k in keys}


def _mixed_net():
    torch = pytest.importorskip("torch")
    nn, F = torch.nn, torch.nn.functional

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(2, 4, 3, stride=2, padding=1)
            self.dil = nn.Conv2d(4, 4, 3, padding=2, dilation=2, padding_mode="reflect")
            self.pool = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True)
            self.up = nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1)
            self.head = nn.Conv2d(14, 3, 1)

        def forward(self, x):
            a = F.relu(self.stem(x))
            b = self.pool(self.dil(a))
            c = F.interpolate(b, scale_factor=2, mode="nearest")
            d = F.interpolate(b, size=a.shape[-2:], mode="bilinear", align_corners=False)
            e = F.interpolate(b, size=a.shape[-2:], mode="bicubic", align_corners=True)
            f = F.pad(self.up(b), (1, 0, 0, 1), mode="replicate")[
                ..., : a.shape[-2], 1 : a.shape[-1] + 1
            ]
            return self.head(
                torch.cat([a, c[..., : a.shape[-2], : a.shape[-1]], d, e[:, :1], f[:, :1]], 1)
            )

    return Net().eval()


@pytest.mark.torch
@pytest.mark.parametrize("dynamo", [False, True])
def test_a_mixed_pytorch_export_matches_pytorch_and_perturbation(tmp_path, dynamo):
    from rfmap.trace import model_rf as torch_rf

    net = _mixed_net()
    size = (2, 13, 11)
    path = _export(net, size, tmp_path / "mixed.onnx", dynamo=dynamo)
    r = model_rf(path, size)
    t = torch_rf(net, size)
    for key in ("receptive_field", "stride", "padding", "grid"):
        assert r.to_dict()[key] == t.to_dict()[key], key
    for unit in [(0, 0), (3, 2), (6, 5)]:
        assert r.input_box(unit) == t.input_box(unit)
    check(onnx.load(str(path)), size)


# -- the perturbation measurement ---------------------------------------------------------


@settings(max_examples=examples(15), deadline=None)
@given(
    ops=st.lists(st.sampled_from(["conv", "pool", "up", "avg", "pad"]), min_size=1, max_size=4),
    size=st.integers(6, 14),
    data=st.data(),
)
def test_measured_boxes_equal_the_analysis(ops, size, data):
    nodes, inits, name = [], [], "x"
    for i, op in enumerate(ops):
        out = "y" if i == len(ops) - 1 else f"t{i}"
        if op == "conv":
            k = data.draw(st.integers(1, 3))
            inits.append(weight(f"w{i}", (2, 2, k, k), seed=i))
            nodes.append(
                node(
                    "Conv",
                    [name, f"w{i}"],
                    [out],
                    pads=[k // 2] * 4,
                    dilations=[data.draw(st.integers(1, 2))] * 2,
                )
            )
        elif op == "pool":
            nodes.append(
                node("MaxPool", [name], [out], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
            )
        elif op == "avg":
            nodes.append(node("AveragePool", [name], [out], kernel_shape=[3, 3], pads=[1] * 4))
        elif op == "up":
            inits.append(floats(f"s{i}", [1, 1, 2, 2]))
            nodes.append(node("Resize", [name, "", f"s{i}"], [out], mode="linear"))
        else:
            inits.append(ints(f"p{i}", [0, 0, 1, 2, 0, 0, 2, 1]))
            mode = data.draw(st.sampled_from(["constant", "edge", "wrap"]))
            nodes.append(node("Pad", [name, f"p{i}"], [out], mode=mode))
        name = out
    m = model(nodes, [1, 2, size, size], inits, opset=19)
    try:
        r = model_rf(m, (2, size, size))
    except ModelError:  # a window that does not fit a pooled map
        assume(False)
    # an axis pooled down to one unit has no positions left (the builder's convention),
    # so a window over it is read whole, even one that falls in the padding
    assume(all(min(row.shape[2:]) > 1 for row in r.layers if row.shape))
    unit = tuple(data.draw(st.integers(0, n - 1)) for n in r.grid)
    assert measure_rf(m, (2, size, size), unit).box == r.input_box(unit)


def test_measure_method_and_layers():
    m = small_net()
    measured = model_rf(m, (1, 32, 32), method="measure")
    derived = model_rf(m, (1, 32, 32))
    assert measured.method == "measured" and not measured.exact
    assert (measured.receptive_field, measured.stride, measured.padding) == (
        derived.receptive_field,
        derived.stride,
        derived.padding,
    )
    box = measure_rf(m, (1, 32, 32), (0, 0), layer="pool")
    # conv 3 pad 1, then max-pool 2: unit (0, 0) reads conv units 0 and 1, rows [-1, 3)
    assert box.box == model_rf(m, (1, 32, 32), "pool").input_box((0, 0)) == ((0, 3), (0, 3))
    assert box.to_dict()["receptive_field"] == [3, 3]


def test_measuring_a_model_that_cannot_be_linearised_is_an_error():
    acos = model([node("Acos", ["x"], ["y"])], [1, 1, 3, 3])  # acos(0) != 0
    with pytest.raises(ModelError, match="not zero on a zero input") as info:
        measure_rf(acos, (1, 3, 3))
    assert "\n" not in str(info.value)


def test_the_oracle_itself_sees_max_pool_windows():
    m = model([node("MaxPool", ["x"], ["y"], kernel_shape=[3], strides=[2])], [1, 1, 7])
    deps = perturbation_supports(m, (1, 1, 7), (2,), "y")
    assert [sorted(p[0] for p in deps[0, 0, u]) for u in range(3)] == [
        [0, 1, 2],
        [2, 3, 4],
        [4, 5, 6],
    ]
