"""Samples of the model zoo (issues 10 and 12), each against an independent answer.

Oracles: the float64 gradient support of a linearised copy of the real model
(tests/model_oracle.py), unit by unit, border units included; the numbers quoted in
the issues (hrnet_w18_small at 640 px: 583/32/291; tf_efficientnet_b0's local padding
394; pytorch-tcn's TCN 61/1/60).  The full sweep is benchmarks/zoo.py.
"""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch", reason="the zoo needs PyTorch")
timm = pytest.importorskip("timm", reason="the zoo samples timm models")

from model_oracle import GradientOracle, check_boxes, corner_units  # noqa: E402
from rfmap.trace import model_rf  # noqa: E402

nn = torch.nn


def _timm(name, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return timm.create_model(name, pretrained=False, **kwargs).eval()


def assert_equals_gradient(model, size, layer, units, result=None, slots=1):
    """Every unit's analytic input box equals the gradient support's box."""
    r = model_rf(model, size, layer) if result is None else result
    oracle = GradientOracle(model, size, [layer], slots=slots)
    mismatches, _ = check_boxes(oracle, layer, r, units)
    assert not mismatches, "\n".join(map(str, mismatches))
    return r


def _derived(r):
    return (
        r.method == "analytic"
        and r.measured_nodes == ()
        and not any(row.measured for row in r.layers)
    )


# -- transformers ---------------------------------------------------------------------------


def test_vit_tiny_is_global_with_no_measured_row():
    model = _timm("vit_tiny_patch16_224")
    r = model_rf(model, (3, 224, 224))
    assert r.global_axes == (True, True) and _derived(r)
    assert r.input_box() == ((0, 224), (0, 224))
    # the patch embedding is local: token (i, j) reads one 16x16 patch (tokens layout)
    patch = model_rf(model, (3, 224, 224), "patch_embed")
    assert not patch.is_global and patch.grid == (14, 14)
    assert (patch.receptive_field, patch.stride, patch.padding) == ((16, 16), (16, 16), (0, 0))
    assert_equals_gradient(model, (3, 224, 224), "patch_embed", [(0, 0), (5, 7), (13, 13)], patch)


def test_swin_tiny_layers0_per_unit_field_equals_the_gradient():
    # Shifted windows: a unit's field depends on where its window sits, and timm's
    # mask (-100) stops the tokens that the roll wrapped around from being read.
    # Window corners (7x7 windows on the 56x56 grid, shifted by 3), and units whose
    # shifted window wraps around the border.
    model = _timm("swin_tiny_patch4_window7_224")
    units = [(0, 0), (6, 6), (7, 7), (3, 10), (27, 28), (48, 55), (55, 55), (0, 55)]
    r = assert_equals_gradient(model, (3, 224, 224), "layers.0", units)
    assert _derived(r) and r.grid == (56, 56)


def test_hiera_unrolled_tokens_equal_the_gradient():
    # Hiera keeps its tokens "unrolled" (not row-major) until its last stage: the oracle
    # reads each unit's token through timm's own reroll
    model = _timm("hiera_tiny_224")
    r = model_rf(model, (3, 224, 224), "blocks.0")
    assert r.grid == (56, 56) and _derived(r)
    tokens = torch.arange(56 * 56, dtype=torch.float32).reshape(1, -1, 1)
    with torch.no_grad():
        order = model.reroll(tokens, 0)[0, ..., 0].long().numpy()
    oracle = GradientOracle(model, (3, 224, 224), ["blocks.0"], slots=3)
    oracle.token_order["blocks.0"] = order
    units = [(0, 0), (7, 8), (28, 28), (55, 0), (55, 55), (31, 17)]
    mismatches, _ = check_boxes(oracle, "blocks.0", r, units)
    assert not mismatches, "\n".join(map(str, mismatches))


# -- timm CNNs named in the issues ---------------------------------------------------------------


def test_vgg11_is_derived_and_equals_the_gradient():
    model = _timm("vgg11")
    pre = model_rf(model, (3, 224, 224), "pre_logits")
    assert (pre.receptive_field, pre.stride, pre.padding) == ((342, 342), (32, 32), (59, 59))
    assert _derived(pre) and _derived(model_rf(model, (3, 224, 224)))
    r = assert_equals_gradient(model, (3, 96, 80), "features.14", corner_units((12, 10)), slots=5)
    assert _derived(r)


def test_nasnetalarge_is_derived_and_equals_the_gradient():
    model = _timm("nasnetalarge")
    r = model_rf(model, (3, 331, 331))
    assert r.is_global and _derived(r)
    stem = model_rf(model, (3, 331, 331), "cell_stem_1.conv_1x1.act")
    assert (stem.receptive_field, stem.stride) == ((55, 55), (4, 4)) and _derived(stem)
    # the same layer on a smaller input, every border unit against the gradient
    small = assert_equals_gradient(
        model, (3, 72, 64), "cell_stem_1.conv_1x1.act", corner_units((18, 16)), slots=5
    )
    assert small.receptive_field == (55, 55) and small.padding == stem.padding


def test_hrnet_w18_small_at_640():
    model = _timm("hrnet_w18_small")
    r = model_rf(model, (3, 640, 640), "final_layer")
    assert (r.receptive_field, r.stride, r.padding) == ((583, 583), (32, 32), (291, 291))
    assert _derived(r) and _derived(model_rf(model, (3, 640, 640)))
    small = assert_equals_gradient(model, (3, 192, 160), "final_layer", [(0, 0), (3, 2), (5, 4)])
    assert small.stride == (32, 32)


def test_tf_efficientnet_b0_local_padding():
    model = _timm("tf_efficientnet_b0")
    r = model_rf(model, (3, 224, 224), "conv_head")
    # squeeze-excitation makes it global; its local paths (Conv2dSame padding) start at -394
    assert r.global_axes == (True, True) and r.local_padding == (394, 394)
    assert _derived(r)


# -- layers that pad or reparametrise inside forward() ------------------------------------


def _same_layers():
    from timm.layers import Conv2dSame
    from timm.layers.pool2d_same import AvgPool2dSame, MaxPool2dSame

    for k, s, d in [(2, 1, 1), (3, 2, 1), (4, 2, 1), (5, 2, 1), (5, 3, 1), (3, 2, 2), (4, 3, 2)]:
        yield f"conv k{k} s{s} d{d}", Conv2dSame(1, 1, k, stride=s, dilation=d)
    for k, s in [(2, 2), (3, 1), (3, 2), (4, 3), (5, 2)]:
        yield f"max k{k} s{s}", MaxPool2dSame(k, stride=s)
        yield f"avg k{k} s{s}", AvgPool2dSame(k, stride=s)
    yield (
        "chain",
        nn.Sequential(
            Conv2dSame(1, 2, 5, stride=2), MaxPool2dSame(3, stride=2), AvgPool2dSame(2, stride=1)
        ),
    )


@pytest.mark.parametrize("size", [(16, 16), (15, 17)])
def test_tf_same_padding_layers_border_units_equal_the_gradient(size):
    # TF "same" padding is computed in forward() from the input size: total
    # max((ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0), the odd one after
    for what, layer in _same_layers():
        model = nn.Sequential(layer)
        r = model_rf(model, (1, *size))
        assert _derived(r), what
        units = corner_units(r.grid)
        oracle = GradientOracle(model, (1, *size), [None], slots=len(units))
        mismatches, _ = check_boxes(oracle, None, r, units)
        assert not mismatches, (what, [str(m) for m in mismatches[:3]])


def test_conv2d_same_example_of_issue_12():
    from timm.layers import Conv2dSame

    model = nn.Sequential(Conv2dSame(1, 1, 5, stride=2))
    r = model_rf(model, (1, 16, 16))
    # TF 'same': total padding 3, one before and two after; unit 0 reads [-1, 4)
    assert r.input_box((0, 0)) == ((0, 4), (0, 4)) and r.padding == (1, 1)
    assert_equals_gradient(model, (1, 16, 16), None, [(0, 0), (7, 7)], r)


class _Parametrised(nn.Module):
    """Convolutions under weight_norm, spectral_norm, a custom parametrization and the
    old hook-based weight_norm, with causal (left) padding as pytorch-tcn pads."""

    def __init__(self):
        super().__init__()
        P = nn.utils.parametrizations
        self.a = P.weight_norm(nn.Conv1d(1, 2, 3, dilation=2))
        self.b = P.spectral_norm(nn.Conv1d(2, 2, 5, stride=2, padding=2))

        class Scaled(nn.Module):
            def forward(self, w):
                return 2 * w

        self.c = nn.Conv1d(2, 2, 3, dilation=3)
        nn.utils.parametrize.register_parametrization(self.c, "weight", Scaled())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecated in favour of the parametrization
            self.d = nn.utils.weight_norm(nn.Conv1d(2, 1, 2))

    def forward(self, x):
        x = self.a(nn.functional.pad(x, (4, 0)))
        x = self.b(x)
        x = self.c(nn.functional.pad(x, (6, 0)))
        return self.d(x)


def test_parametrized_convolutions_every_unit_equals_the_gradient():
    model = _Parametrised().eval()
    r = model_rf(model, (1, 40))
    # causal 3/d2 (4 left): 5; 5/s2 p2: 5 + 4 = 9, jump 2; causal 3/d3: 9 + 12 = 21;
    # 2: 21 + 2 = 23; padding 4 + 2 + 12 = 18
    assert (r.receptive_field, r.stride, r.padding) == ((23,), (2,), (18,))
    assert _derived(r)
    units = [(u,) for u in range(r.grid[0])]
    assert_equals_gradient(model, (1, 40), None, units, r, slots=len(units))


def test_pytorch_tcn_defaults():
    pytorch_tcn = pytest.importorskip("pytorch_tcn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = pytorch_tcn.TCN(
            num_inputs=1, num_channels=[4] * 4, kernel_size=3, dilations=[1, 2, 4, 8], causal=True
        ).eval()
    r = model_rf(model, (1, 100))
    # causal: unit u reads [u - 60, u + 1): two convolutions of kernel 3 per dilation
    assert (r.receptive_field, r.stride, r.padding) == ((61,), (1,), (60,))
    assert r.input_box((70,), clip=False) == ((10, 71),)
    assert _derived(r)
    units = [(u,) for u in (0, 1, 30, 59, 60, 61, 99)]
    assert_equals_gradient(model, (1, 100), None, units, r, slots=len(units))
