"""Tests of rfmap.trace: receptive fields of PyTorch models, captured at the ATen level.

Oracles: the gradient support of the real model (rfmap.measure, an independent
method) for every unit of random DAGs and of torchvision backbones; the published
table of Araujo et al. (Distill 2019, google-research/receptive_field); hand-computed
small models.
"""

from __future__ import annotations

import itertools
import warnings

import pytest

torch = pytest.importorskip("torch", reason="model tracing needs PyTorch")
torchvision = pytest.importorskip("torchvision", reason="backbone tests need torchvision")

from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from rfmap.errors import InvalidSpecError, ModelError, UnsupportedLayerError  # noqa: E402
from rfmap.measure import measure_boxes, measure_model_rf  # noqa: E402
from rfmap.receptive import graph_rf  # noqa: E402
from rfmap.trace import Method, model_rf, trace_model  # noqa: E402

nn = torch.nn
F = torch.nn.functional


def _edge_units(grid, few=False):
    """First, second, middle, second-last and last index per axis (all combinations);
    ``few``: first, middle and last only."""
    picks = (lambda n: {0, n // 2, n - 1}) if few else (lambda n: {0, 1, n // 2, n - 2, n - 1})
    axes = [sorted(picks(n) & set(range(n))) for n in grid]
    return list(itertools.product(*axes))


def assert_matches_gradient(model, size, layer=None, units=None, few=False):
    """Every chosen unit's analytic input box equals the gradient's support box."""
    r = model_rf(model, size, layer)
    units = _edge_units(r.grid, few) if units is None else units
    measured = measure_boxes(model, size, units, layer=layer)
    for unit, box in zip(units, measured, strict=True):
        assert r.input_box(unit) == box, (layer, unit)
    return r


# -- random DAGs: analytic == gradient --------------------------------------------------


class RandomNet(nn.Module):
    """Ops read earlier tensors: conv, pools, transposed conv, upsample, add, cat."""

    def __init__(self, ops, ndim):
        super().__init__()
        self.ops = ops
        self.layers = nn.ModuleList()
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[ndim - 1]
        tconv = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[ndim - 1]
        maxpool = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)[ndim - 1]
        avgpool = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)[ndim - 1]
        for op in ops:
            kind, args = op[0], op[2:]
            if kind == "conv":
                k, s, d, p, mode = args
                self.layers.append(conv(2, 2, k, s, p, d, padding_mode=mode))
            elif kind == "tconv":
                k, s, p = args
                self.layers.append(tconv(2, 2, k, s, p))
            elif kind == "max":
                k, s, p, d, ceil = args
                self.layers.append(maxpool(k, s, p, d, ceil_mode=ceil))
            elif kind == "avg":
                k, s, p, ceil = args
                self.layers.append(avgpool(k, s, p, ceil_mode=ceil))
            else:
                self.layers.append(nn.Identity())

    def forward(self, x):
        values = [x]
        for op, layer in zip(self.ops, self.layers, strict=True):
            src = values[op[1]]
            if op[0] == "add":
                out = F.relu(src) + values[op[2]]
            elif op[0] == "cat":
                out = torch.cat([src, values[op[2]]], 1)[:, 1:3]
            elif op[0] == "up":
                out = F.interpolate(src, scale_factor=2, mode=op[2])
            else:
                out = layer(src)
            values.append(out)
        return values[-1]


@st.composite
def random_nets(draw, ndim):
    """A RandomNet and an input size for which every op has a non-empty output."""
    sizes = [tuple(draw(st.integers(5, 16 if ndim < 3 else 8)) for _ in range(ndim))]
    ops = []
    for _ in range(draw(st.integers(1, 5))):
        src = draw(st.integers(0, len(sizes) - 1))
        n = sizes[src]
        kind = draw(st.sampled_from(["conv", "conv", "max", "avg", "tconv", "add", "cat", "up"]))
        if kind == "conv":
            k, s, d = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
            p = draw(st.integers(0, 2))
            mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
            if (mode == "reflect" and p >= min(n)) or (mode == "circular" and p > min(n)):
                mode = "zeros"
            op = ("conv", src, k, s, d, p, mode)
            out = tuple((m + 2 * p - d * (k - 1) - 1) // s + 1 for m in n)
        elif kind in ("max", "avg"):
            k, s = draw(st.integers(2, 3)), draw(st.integers(1, 2))
            p, d = draw(st.integers(0, k // 2)), draw(st.integers(1, 2)) if kind == "max" else 1
            ceil = draw(st.booleans())
            out = []
            for m in n:
                span = d * (k - 1) + 1
                o = (-(-(m + 2 * p - span) // s) if ceil else (m + 2 * p - span) // s) + 1
                if ceil and (o - 1) * s >= m + p:
                    o -= 1
                out.append(o)
            op = ("max", src, k, s, p, d, ceil) if kind == "max" else ("avg", src, k, s, p, ceil)
            out = tuple(out)
            if kind == "avg" and ndim == 3:
                assume(min(n) >= k)  # PyTorch's avg_pool3d wants the unpadded input to fit
        elif kind == "tconv":
            k, s = draw(st.integers(1, 4)), draw(st.integers(1, 2))
            p = draw(st.integers(0, k - 1))
            op = ("tconv", src, k, s, p)
            out = tuple((m - 1) * s - 2 * p + k for m in n)
        elif kind == "up":
            op = (
                "up",
                src,
                draw(st.sampled_from(["nearest", "bilinear" if ndim == 2 else "nearest"])),
            )
            out = tuple(2 * m for m in n)
        else:
            same = [i for i, m in enumerate(sizes) if m == n]
            op = (kind, src, draw(st.sampled_from(same)))
            out = n
        assume(min(out) >= 1 and max(out) <= (40 if ndim < 3 else 12))
        ops.append(op)
        sizes.append(out)
    return RandomNet(ops, ndim), (2, *sizes[0])


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_random_dags_match_the_gradient(ndim):
    @settings(
        max_examples={1: 40, 2: 25, 3: 12}[ndim],
        deadline=None,
        suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
    )
    @given(random_nets(ndim))
    def check(case):
        net, size = case
        r = model_rf(net, size)
        units = _edge_units(r.grid, few=ndim == 3)
        measured = measure_boxes(net, size, units)
        # A transposed conv with padding crops its output; a later conv's zero padding
        # then stands where the cropped positions were, so an unbounded box inside the
        # input no longer implies that every position of it is read.
        crops = any(op[0] == "tconv" and op[4] > 0 for op in net.ops)
        for unit, box in zip(units, measured, strict=True):
            assert r.input_box(unit) == box, unit
            # a unit whose unbounded box lies inside the input sees all of it
            free = r.input_box(unit, clip=False)
            inside = all(a >= 0 and b <= n for (a, b), n in zip(free, size[1:], strict=True))
            if inside and not crops:
                assert free == box
        assert r.exact and r.method == "analytic"

    check()


# -- the published table (Araujo et al., Distill 2019) ----------------------------------

# TF-Slim end-points and their (receptive field, effective stride, effective padding),
# from google-research/receptive_field, RECEPTIVE_FIELD_TABLE.md (size independent rows).
VGG_16 = {
    "features.0": (3, 1, 1),  # conv1/conv1_1
    "features.4": (6, 2, 2),  # pool1
    "features.5": (10, 2, 4),  # conv2/conv2_1
    "features.9": (16, 4, 6),  # pool2
    "features.10": (24, 4, 10),  # conv3/conv3_1
    "features.12": (32, 4, 14),  # conv3/conv3_2
    "features.16": (44, 8, 18),  # pool3
    "features.17": (60, 8, 26),  # conv4/conv4_1
    "features.19": (76, 8, 34),  # conv4/conv4_2
    "features.23": (100, 16, 42),  # pool4
    "features.24": (132, 16, 58),  # conv5/conv5_1
    "features.26": (164, 16, 74),  # conv5/conv5_2
    "features.30": (212, 32, 90),  # pool5
}
VGG_A = {  # torchvision's vgg11 is VGG configuration A
    "features.0": (3, 1, 1),
    "features.2": (4, 2, 1),
    "features.3": (8, 2, 3),
    "features.5": (10, 4, 3),
    "features.6": (18, 4, 7),
    "features.8": (26, 4, 11),
    "features.10": (30, 8, 11),
    "features.11": (46, 8, 19),
    "features.13": (62, 8, 27),
    "features.15": (70, 16, 27),
    "features.16": (102, 16, 43),
    "features.18": (134, 16, 59),
    "features.20": (150, 32, 59),
}
INCEPTION_V3 = {  # torchvision's module names are TF-Slim's end-point names
    "Conv2d_1a_3x3": (3, 2, 0),
    "Conv2d_2a_3x3": (7, 2, 0),
    "Conv2d_2b_3x3": (11, 2, 2),
    "maxpool1": (15, 4, 2),  # MaxPool_3a_3x3
    "Conv2d_3b_1x1": (15, 4, 2),
    "Conv2d_4a_3x3": (23, 4, 2),
    "maxpool2": (31, 8, 2),  # MaxPool_5a_3x3
    "Mixed_5b": (63, 8, 18),
    "Mixed_5c": (95, 8, 34),
    "Mixed_5d": (127, 8, 50),
    "Mixed_6a": (159, 16, 58),
    "Mixed_6b": (351, 16, 154),
    "Mixed_6c": (543, 16, 250),
    "Mixed_6d": (735, 16, 346),
    "Mixed_6e": (927, 16, 442),
    "Mixed_7a": (1055, 32, 490),
    "Mixed_7b": (1183, 32, 554),
    "Mixed_7c": (1311, 32, 618),
}
ALEXNET_V2 = {
    "features.0": (11, 4, 0),  # conv1
    "features.2": (19, 8, 0),  # pool1
    "features.3": (51, 8, 16),  # conv2
    "features.6": (99, 16, 32),  # conv3
    "features.8": (131, 16, 48),  # conv4
    "features.10": (163, 16, 64),  # conv5
    "features.12": (195, 32, 64),  # pool5
}


def _published(model, size, table, padding_offset=0):
    traced = trace_model(model, size)
    for layer, (rf, stride, padding) in table.items():
        r = graph_rf(traced.graph, traced.resolve(layer))
        assert r.receptive_field == (rf, rf), layer
        assert r.stride == (stride, stride), layer
        assert r.padding == (padding + padding_offset,) * 2, layer
        assert r.aligned is True


@pytest.mark.parametrize(
    ("name", "table"), [("vgg16", VGG_16), ("vgg11", VGG_A)], ids=["vgg_16", "vgg_a"]
)
def test_vgg_matches_published_table(name, table):
    _published(getattr(torchvision.models, name)(), (3, 224, 224), table)


def test_inception_v3_matches_published_table():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = torchvision.models.inception_v3(aux_logits=False, init_weights=False)
    _published(model, (3, 299, 299), INCEPTION_V3)


def test_alexnet_matches_published_table_up_to_conv1_padding():
    # TF-Slim's alexnet_v2 conv1 is VALID; torchvision pads it by 2, which shifts the
    # effective padding of every later layer by exactly 2 (RF and stride are the same).
    _published(torchvision.models.alexnet(), (3, 224, 224), ALEXNET_V2, padding_offset=2)


# -- torchvision backbones: analytic == gradient ----------------------------------------


@pytest.mark.parametrize(
    ("name", "layer", "size"),
    [
        ("resnet18", "layer2", (3, 40, 56)),
        ("resnet18", None, (3, 32, 32)),
        ("resnet50", "layer1", (3, 40, 32)),
        ("alexnet", "features", (3, 67, 75)),
        ("vgg11", "features.10", (3, 40, 48)),
        ("mobilenet_v2", "features.10", (3, 48, 40)),
        ("densenet121", "features.denseblock2", (3, 40, 40)),
        ("efficientnet_b0", "features.3", (3, 40, 48)),
        ("convnext_tiny", "features.3", (3, 40, 40)),
    ],
)
def test_backbones_match_the_gradient(name, layer, size):
    model = getattr(torchvision.models, name)()
    r = assert_matches_gradient(model, size, layer, few=True)
    assert r.exact


@pytest.mark.parametrize(
    ("name", "layer", "size", "axis"),
    [
        ("resnet18", "layer2", (3, 240, 16), 0),
        ("mobilenet_v2", "features.6", (3, 16, 200), 1),
    ],
)
def test_backbone_summary_matches_gradient_on_a_large_axis(name, layer, size, axis):
    # along a long axis the centre unit's box is inside the input, so the gradient
    # gives the unclipped receptive field, stride and padding directly
    model = getattr(torchvision.models, name)()
    r = model_rf(model, size, layer)
    m = measure_model_rf(model, size, layer)
    assert m.receptive_field[axis] == r.receptive_field[axis]
    assert m.stride[axis] == r.stride[axis]
    assert m.padding[axis] == r.padding[axis]
    assert not any(f"axis {axis}" in note for note in m.notes)


def test_resnet50_output_is_global_and_known():
    r = model_rf(torchvision.models.resnet50(), (3, 224, 224))
    assert r.is_global and r.global_axes == (True, True) and r.grid == (1, 1)
    assert r.input_box() == ((0, 224), (0, 224))
    # global pooling + Linear read the whole input: RF = the input, no padding, no stride
    assert r.receptive_field == (224, 224) and r.padding == (0, 0) and r.stride == (0, 0)
    # on an unbounded input the pool's 7 units (jump 32) of RF 427 span 427 + 6 * 32
    assert r.unbounded_receptive_field == (619, 619)
    assert r.input_box(clip=False) == ((-213, 406), (-213, 406))
    # every path goes through the pool: no local path quantities
    assert r.min_receptive_field == (None, None) and r.local_receptive_field == (None, None)
    layer4 = r.layer("layer4_2_relu_2")
    # torchvision's ResNet-50 (v1.5, stride in the 3x3 conv): RF 427, jump 32, padding 213
    # By hand (Araujo's recursion): stem conv 7/2 p3 -> RF 7, J 2, P 3; maxpool 3/2 p1 ->
    # 11, 4, 5; layer1 3 blocks +2*4 each -> 35, P 17; layer2 +2*4 (stride in the 3x3),
    # J 8, then 3x +2*8 -> 91, P 45; layer3 +2*8, J 16, 5x +2*16 -> 267, P 133;
    # layer4 +2*16, J 32, 2x +2*32 -> 427, P 213.
    assert layer4.receptive_field == (427, 427)
    assert layer4.stride == (32, 32) and layer4.padding == (213, 213)
    # the shortest path skips every block through the (1x1 or identity) shortcuts
    assert layer4.min_receptive_field == (11, 11) and layer4.aligned is True


def test_global_output_agrees_with_the_gradient_on_non_square_inputs():
    # ResNet-18 by hand: layer4 RF 435, jump 32, padding 217; at 64x96 its grid is 2x3
    model = torchvision.models.resnet18()
    r = model_rf(model, (3, 64, 96))
    m = measure_model_rf(model, (3, 64, 96))
    assert r.receptive_field == m.receptive_field == (64, 96)
    assert r.padding == m.padding == (0, 0) and r.stride == m.stride == (0, 0)
    assert r.is_global and m.is_global and r.input_box() == m.input_box()
    assert r.unbounded_receptive_field == (435 + 32, 435 + 2 * 32)
    assert r.layer("layer4_1_relu_1").receptive_field == (435, 435)


class SqueezeExcite(nn.Module):
    """conv -> x * gate(mean over H, W) -> strided conv: every unit reads the whole input
    through the gate, and a local box through the convolutions."""

    def __init__(self, gate=True):
        super().__init__()
        self.gate = gate
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 4)
        self.b = nn.Conv2d(4, 4, 5, stride=2, padding=2)

    def forward(self, x):
        y = self.a(x)
        if self.gate:
            y = y * torch.sigmoid(self.fc(y.mean((2, 3))))[:, :, None, None]
        return self.b(y)


def test_squeeze_excitation_reads_the_whole_input_and_keeps_its_local_field():
    size = (1, 20, 26)
    r = assert_matches_gradient(SqueezeExcite(), size)
    assert r.global_axes == (True, True) and r.grid == (10, 13)
    assert r.receptive_field == (20, 26) and r.padding == (0, 0) and r.stride == (2, 2)
    assert all(r.input_box(u) == ((0, 20), (0, 26)) for u in [(0, 0), (9, 12), (4, 7)])
    # the local paths are the model without the gate: conv 3 then conv 5 -> RF 7, padding 3
    plain = model_rf(SqueezeExcite(gate=False), size)
    measured = measure_model_rf(SqueezeExcite(gate=False), (1, 40, 40))
    assert plain.receptive_field == measured.receptive_field == (7, 7)
    assert r.local_receptive_field == plain.receptive_field
    assert r.local_padding == plain.padding == measured.padding == (3, 3)
    assert r.min_receptive_field == r.max_path_receptive_field == (7, 7)
    text = str(r)
    assert "receptive field: 20x26   (global: reads the whole input;" in text
    assert "local paths (through no global op): receptive field 7, padding 3" in text


class CroppedPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, stride=2)  # never reads the last row and column

    def forward(self, x):
        return F.adaptive_max_pool2d(self.conv(x)[:, :, 2:], 1)


def test_global_node_that_reads_part_of_the_input():
    r = model_rf(CroppedPool(), (1, 12, 16))
    (box,) = measure_boxes(CroppedPool(), (1, 12, 16), [None])
    # rows: conv units 2..4 read rows [4, 11); columns: units 0..6 read [0, 15)
    assert box == ((4, 11), (0, 15)) == r.input_box()
    assert r.receptive_field == (7, 15) and r.padding == (-4, 0) and r.is_global
    assert "global: reads only [4, 11) x [0, 15) of the input" in str(r)


def test_audio_and_video_classifiers_read_the_whole_input():
    audio = nn.Sequential(
        nn.Conv1d(1, 4, 400, stride=160, padding=200),
        nn.ReLU(),
        nn.Conv1d(4, 4, 3, padding=2, dilation=2),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    r = model_rf(audio, (1, 4000))
    assert r.receptive_field == measure_model_rf(audio, (1, 4000)).receptive_field == (4000,)
    # local field of the last conv: 400 + 2 * 2 * 160 = 1040, padding 200 + 2 * 160;
    # 26 units at jump 160 span 1040 + 25 * 160 on an unbounded input
    assert r.layer("_2").receptive_field == (1040,) and r.layer("_2").padding == (520,)
    assert r.unbounded_receptive_field == (1040 + 25 * 160,) and r.padding == (0,)
    video = nn.Sequential(
        nn.Conv3d(3, 2, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2)),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(2, 2),
    )
    r = model_rf(video, (3, 4, 10, 14))
    assert r.receptive_field == (4, 10, 14) and r.global_axes == (True, True, True)
    assert r.input_box() == measure_boxes(video, (3, 4, 10, 14), [None])[0]


# -- hand-checked models -----------------------------------------------------------------


class Functional(nn.Module):
    """Functional ops and methods: F.conv2d, F.max_pool2d, pad, slicing, view, cat."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 2, 3, 3))

    def forward(self, x):
        y = F.conv2d(x, self.w, padding=1)  # RF 3
        y = F.max_pool2d(y, 2)  # RF 4, jump 2
        y = F.pad(y, (1, 1, 1, 1))
        y = y[:, :, 1:-1, 1:-1]  # pad then crop back: no change
        # (shape entries one by one: torch.fx cannot star-unpack a traced shape)
        z = torch.cat([y, y.flip(1)], dim=1).view(y.shape[0], -1, y.shape[2], y.shape[3])
        return F.avg_pool2d(z, 3, stride=1, padding=1)  # RF 4 + 2*2 = 8


def test_functional_ops_by_hand():
    r = assert_matches_gradient(Functional(), (2, 12, 10))
    assert r.receptive_field == (8, 8) and r.stride == (2, 2) and r.padding == (3, 3)
    # derived through the functional rules, not measured as a whole
    assert r.exact and r.method == "analytic" and not r.measured_nodes


def test_audio_1d_model():
    net = nn.Sequential(
        nn.Conv1d(1, 4, 11, stride=5, padding=5),
        nn.ReLU(),
        *[nn.Conv1d(4, 4, 3, padding=d, dilation=d) for d in (1, 2, 4, 8)],
    )
    r = assert_matches_gradient(net, (1, 400))
    assert r.receptive_field == (11 + 2 * 5 * (1 + 2 + 4 + 8),)
    assert r.stride == (5,) and r.padding == (5 + 5 * 15,)


def test_video_3d_model_non_cubic():
    net = nn.Sequential(
        nn.Conv3d(3, 4, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3)),
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        nn.Conv3d(4, 4, 3, padding="same"),
    )
    r = assert_matches_gradient(net, (3, 6, 20, 14))
    assert r.receptive_field == (5, 7 + 2 * 2 + 2 * 4, 7 + 2 * 2 + 2 * 4)
    assert r.stride == (1, 4, 4)


def test_input_smaller_than_the_receptive_field():
    net = nn.Sequential(*[nn.Conv2d(1, 1, 5, padding=2) for _ in range(4)])
    r = assert_matches_gradient(net, (1, 6, 9))
    assert r.receptive_field == (17, 17)
    assert r.input_box((0, 0)) == ((0, 6), (0, 9))  # the whole (small) input


class Misaligned(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv1d(1, 1, 3, padding=1)
        self.b = nn.Conv1d(1, 1, 5, padding=1)  # centre shifted by one

    def forward(self, x):
        return self.a(x)[..., :-2] + self.b(x)


def test_misaligned_model_is_reported_not_crashed():
    r = assert_matches_gradient(Misaligned(), (1, 16))
    assert r.aligned is False
    assert r.min_receptive_field == (3,) and r.max_path_receptive_field == (5,)
    assert r.input_box((4,), clip=False) == ((3, 8),)


class TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 3, padding=1)
        self.head = nn.Conv2d(2, 2, 3, stride=2, padding=1)

    def forward(self, x):
        y = self.stem(x)
        return {"fine": y, "coarse": self.head(y)}


def test_multiple_outputs():
    r = model_rf(TwoOutputs(), (1, 16, 16))
    assert r.outputs == ("stem", "head")
    assert r.node == "stem" and r.receptive_field == (3, 3)
    head = model_rf(TwoOutputs(), (1, 16, 16), layer="head")
    assert head.receptive_field == (5, 5) and head.stride == (2, 2)  # 3 + (3 - 1) * 1


def test_upsampling_unet_like_model():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.down = nn.Conv2d(1, 2, 3, stride=2, padding=1)
            self.up = nn.ConvTranspose2d(2, 1, 4, stride=2, padding=1)
            self.fuse = nn.Conv2d(3, 1, 3, padding=1)

        def forward(self, x):
            d = self.down(x)
            u = F.interpolate(d, scale_factor=2, mode="bilinear")
            return self.fuse(torch.cat([x + self.up(d), u], 1))

    r = assert_matches_gradient(Net(), (1, 12, 10))
    assert r.stride == (1, 1) and r.exact


# -- unknown ops, untraceable models, methods --------------------------------------------


@torch.library.custom_op("rfmap_test::box3", mutates_args=())
def box3(x: torch.Tensor) -> torch.Tensor:
    """A 3-tap box filter along the last dim, as a custom op rfmap has no rule for."""
    return F.avg_pool1d(x, 3, 1, 1) * 3


@box3.register_fake
def _(x):
    return torch.empty_like(x)


box3.register_autograd(
    lambda ctx, grad: F.avg_pool1d(grad, 3, 1, 1) * 3,
    setup_context=lambda ctx, inputs, output: None,
)


class Box3(nn.Module):
    def forward(self, x):
        return box3(x)


def test_op_without_a_rule_is_measured_and_flagged():
    net = nn.Sequential(nn.Conv1d(1, 1, 3, padding=1), Box3(), nn.Conv1d(1, 1, 3, padding=1))
    r = assert_matches_gradient(net, (1, 12), units=[(u,) for u in range(12)])
    assert not r.exact and r.method == "mixed"
    assert r.measured_nodes == ("1",) and r.layer("1").op == "Box3 (measured)"
    assert any("box3" in note and "measured" in note for note in r.notes)
    assert [row.measured for row in r.layers] == [False, False, True, False]
    assert r.receptive_field == (7,)
    with pytest.raises(UnsupportedLayerError, match="box3"):
        model_rf(net, (1, 12), method="analytic")


def test_a_registered_rule_derives_a_custom_op():
    from rfmap.frontends.torch_rules import _RULES, register_rule

    @register_rule(torch.ops.rfmap_test.box3.default)
    def box3_rule(ctx):
        return ctx.conv(ctx.need("x"), kernel_size=3, padding=1)

    try:
        net = nn.Sequential(nn.Conv1d(1, 1, 3, padding=1), Box3())
        r = assert_matches_gradient(net, (1, 12), units=[(u,) for u in range(12)])
        assert r.exact and r.method == "analytic" and not r.measured_nodes
        assert (r.receptive_field, r.padding) == ((5,), (2,))
    finally:
        del _RULES[torch.ops.rfmap_test.box3.default]


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        if x.sum() > 1e9:  # control flow on values: torch.fx cannot trace this
            return x
        return self.conv(self.conv(x))


def test_data_dependent_control_flow_is_derived():
    r = assert_matches_gradient(DataDependent(), (1, 16, 16))
    assert r.method == "analytic" and r.exact and not r.measured_nodes
    assert r.receptive_field == (5, 5) and r.stride == (1, 1) and r.padding == (2, 2)
    assert r.input_box((0, 15)) == ((0, 3), (13, 16))
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), DataDependent(), nn.MaxPool2d(2))
    r = assert_matches_gradient(net, (1, 12, 12))
    assert not r.measured_nodes and r.receptive_field == (8, 8)


class Unfolded(nn.Module):
    def forward(self, x):
        return x.diag_embed().sum(-1)  # an op that adds a dim: no rule, not measurable


def test_a_model_whose_op_cannot_be_measured_alone_is_measured_whole():
    net = nn.Sequential(nn.Conv1d(1, 1, 3, padding=1), Unfolded())
    r = model_rf(net, (1, 12))
    assert r.method == "measured" and not r.exact
    assert any("measured as a whole" in note for note in r.notes)
    assert r.input_box((0,)) == ((0, 2),)
    with pytest.raises(UnsupportedLayerError, match="diag_embed"):
        model_rf(net, (1, 12), method=Method.ANALYTIC)


def test_method_measure():
    r = model_rf(nn.Conv2d(1, 1, 3, stride=2, padding=1), (1, 15, 15), method="measure")
    assert r.method == "measured"
    assert (r.receptive_field, r.stride, r.padding) == ((3, 3), (2, 2), (1, 1))
    with pytest.raises(InvalidSpecError, match="method must be one of"):
        model_rf(nn.Conv2d(1, 1, 3), (1, 8, 8), method="guess")


# -- layers, errors, and leaving the model alone -----------------------------------------


def test_layer_by_node_or_module_name():
    model = torchvision.models.resnet18()
    by_module = model_rf(model, (3, 64, 64), "layer1.0")
    by_node = model_rf(model, (3, 64, 64), by_module.node)
    assert by_module.node == "layer1.0.add" and by_node == by_module
    assert model_rf(model, (3, 64, 64), "layer1.0.conv1").node == "layer1.0.conv1"
    # torch.fx's names (the third call of a block's ReLU) still work
    assert model_rf(model, (3, 64, 64), "layer1_0_relu_1").node == "layer1.0.add"
    assert by_module.layer("layer1.0.conv2").receptive_field == (27, 27)
    with pytest.raises(InvalidSpecError, match="did you mean 'layer1'"):
        model_rf(model, (3, 64, 64), "layer1x")


def test_errors():
    conv = nn.Conv2d(3, 1, 3)
    with pytest.raises(ModelError, match=r"must be a torch\.nn\.Module"):
        model_rf(lambda x: x, (3, 8, 8))
    with pytest.raises(ModelError, match=r"input size must be positive integers C,L \(1D\)"):
        model_rf(conv, (3, 8, 8, 8, 8))
    with pytest.raises(ModelError, match=r"forward failed on input size \[1, 8, 8\]"):
        model_rf(conv, (1, 8, 8))
    with pytest.raises(ModelError, match="does not depend on its input"):
        model_rf(_Constant(), (1, 8))


class OptionalScale(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x, scale=None, *, crop=False):
        if scale is not None:
            x = x * scale
        y = self.conv(x)
        return y[..., 1:-1, 1:-1] if crop else y


class TwoInputs(nn.Module):
    def forward(self, x, y):
        return x + y


def test_forward_arguments_after_the_input():
    # optional arguments keep their defaults, as rfmap calls model(x)
    r = assert_matches_gradient(OptionalScale(), (1, 9, 7))
    assert r.receptive_field == (3, 3) and r.grid == (9, 7) and r.method == "analytic"
    with pytest.raises(ModelError, match=r"needs more inputs than one tensor \(y too\)"):
        model_rf(TwoInputs(), (1, 8, 8))


def test_lazy_modules_are_not_initialised():
    model = nn.Sequential(nn.LazyConv2d(2, 3, stride=2), nn.ReLU())
    r = model_rf(model, (3, 9, 9))
    assert r.receptive_field == (3, 3) and r.stride == (2, 2)
    assert isinstance(model[0], nn.LazyConv2d) and model[0].has_uninitialized_params()


class _Constant(nn.Module):
    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, x):
        return self.bias * 2


def test_model_is_left_untouched():
    model = torchvision.models.resnet18()
    model.train()
    model.layer1.eval()  # a mix of modes must survive
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    model_rf(model, (3, 32, 32))
    model_rf(model, (3, 32, 32), method="measure")
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == grads
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks for m in model.modules())


def test_ceil_mode_pools_and_padding_modes():
    net = nn.Sequential(
        nn.Conv2d(1, 2, (3, 2), stride=(2, 3), padding=(1, 0), dilation=(1, 2)),
        nn.MaxPool2d(3, stride=2, padding=1, dilation=1, ceil_mode=True),
        nn.AvgPool2d(2, stride=3, ceil_mode=True),
        nn.Conv2d(2, 2, 3, padding="same", padding_mode="reflect"),
        nn.ConvTranspose2d(2, 1, 3, stride=2, padding=1, output_padding=1),
    )
    for size in [(1, 23, 29), (1, 24, 30), (1, 31, 23), (1, 40, 41)]:
        r = assert_matches_gradient(net, size, few=True)
        assert r.grid == tuple(net(torch.zeros(1, *size)).shape[2:])


def test_modules_that_refuse_the_input_fail_as_their_forward_does():
    # PyTorch's avg_pool3d wants the unpadded input to fit the kernel; reflect and
    # circular paddings cannot be wider than the input.
    for net, size in [
        (nn.Sequential(nn.Conv3d(2, 2, 3, dilation=2), nn.AvgPool3d(2, 1, 1)), (2, 5, 5, 5)),
        (nn.Sequential(nn.Conv2d(2, 2, 3, padding=3, padding_mode="reflect")), (2, 2, 2)),
        (nn.Sequential(nn.Conv2d(2, 2, 3, padding=3, padding_mode="circular")), (2, 2, 2)),
    ]:
        with pytest.raises(RuntimeError) as real:
            net(torch.zeros(1, *size))
        message = str(real.value).splitlines()[0]
        with pytest.raises(ModelError, match="forward failed") as raised:
            model_rf(net, size)
        assert str(raised.value).endswith(message)


class TwoNames(nn.Module):
    """One convolution registered under two names, called under both."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 1, 3, padding=1)
        self.b = self.a
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.pool(self.b(self.a(x)) + self.a(x))


def test_module_registered_under_two_names():
    r = assert_matches_gradient(TwoNames(), (1, 12, 10))
    assert r.receptive_field == (6, 6) and r.stride == (2, 2) and r.padding == (2, 2)
    ops = [row.op for row in r.layers]
    assert ops == ["input", "Conv2d", "Conv2d", "Conv2d", "add", "MaxPool2d"]


def test_an_axis_pooled_to_one_position_keeps_it_through_squeeze():
    # max_pool1d runs as unsqueeze, max_pool2d, squeeze: the squeeze must drop the
    # inserted dim, not the pooled axis (found by test_random_dags_match_the_gradient)
    net = torch.nn.Sequential(
        torch.nn.MaxPool1d(3, stride=1, dilation=2), torch.nn.Conv1d(2, 2, 1, padding=1)
    )
    r = model_rf(net, (2, 5))
    assert r.grid == (3,)
    assert [r.input_box((u,)) for u in range(3)] == [((0, 0),), ((0, 5),), ((0, 0),)]
    assert [r.input_box((u,)) for u in range(3)] == [
        b for b in measure_boxes(net, (2, 5), [(0,), (1,), (2,)])
    ]


@pytest.mark.parametrize(
    "kernel, dilation, padding, stride", [(3, 1, 1, 1), (2, 1, 0, 2), (3, 2, 2, 1), (3, 1, 0, 2)]
)
def test_unfold_and_fold_equal_the_gradient(kernel, dilation, padding, stride):
    # F.unfold (im2col) then a mix of each window's values, then F.fold (col2im)
    class UnfoldFold(torch.nn.Module):
        def forward(self, x):
            args = {"dilation": dilation, "padding": padding, "stride": stride}
            cols = torch.nn.functional.unfold(x, kernel, **args)
            cols = cols * cols.sum(1, keepdim=True)
            return torch.nn.functional.fold(cols, x.shape[-2:], kernel, **args)

    r = model_rf(UnfoldFold(), (2, 9, 8))
    assert r.method == "analytic" and r.measured_nodes == ()
    units = _edge_units(r.grid)
    for unit, box in zip(units, measure_boxes(UnfoldFold(), (2, 9, 8), units), strict=True):
        assert r.input_box(unit) == box, unit
