"""Tests of rfmap.measure: receptive fields measured with the gradient (robustly).

Oracles: hand-computed supports of tiny models; the exact path counts of
rfmap.gradient/rfmap.paths for all-ones stacks; a plain gradient, to show the cases the
linearised copy exists for (dead ReLUs, saturated ReLU6, max-pools, cancelling weights).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="gradient measurement needs PyTorch")

from rfmap.errors import InvalidSpecError, ModelError  # noqa: E402
from rfmap.measure import (  # noqa: E402
    linearised,
    linearised_copy,
    measure_boxes,
    measure_model_rf,
    measure_rf,
)
from rfmap.paths import path_counts  # noqa: E402

nn = torch.nn
F = torch.nn.functional


def _plain_support(model, size, unit):
    """The seed notebook's method: d out[unit] / d input on the model as it is."""
    x = torch.randn((1, *size), generator=torch.Generator().manual_seed(1), requires_grad=True)
    out = model(x)
    out[(0, slice(None), *unit)].sum().backward()
    return (x.grad[0] != 0).any(dim=0).numpy()


def test_conv_stack_matches_exact_path_counts():
    # an all-ones dilated stack: the support is where the exact path count is non-zero
    net = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=d, dilation=d, bias=False) for d in (1, 2, 4)])
    m = measure_rf(net, (1, 21, 21), unit=(10, 10))
    expected = path_counts([1, 2, 4], size=21) != 0
    assert np.array_equal(m.mask, expected)
    assert m.box == ((3, 18), (3, 18)) and m.receptive_field == (15, 15)
    assert m.support == int(expected.sum())


def test_dead_relus_do_not_hide_positions():
    # negative weights and a ReLU: the plain gradient is zero everywhere
    conv1 = nn.Conv1d(1, 1, 3, padding=1, bias=False)
    conv2 = nn.Conv1d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv1.weight.fill_(-1.0)
        conv2.weight.fill_(1.0)
    net = nn.Sequential(conv1, nn.ReLU(), conv2)
    x = torch.ones((1, 1, 9), requires_grad=True)
    net(x)[0, 0, 4].backward()
    assert not x.grad.any()
    assert measure_rf(net, (1, 9), unit=(4,)).box == ((2, 7),)


def test_saturated_relu6_and_cancelling_weights():
    conv = nn.Conv1d(1, 2, 3, padding=1, bias=True)
    merge = nn.Conv1d(2, 1, 1, bias=False)
    with torch.no_grad():
        conv.bias.fill_(100.0)  # ReLU6 saturates: zero gradient
        merge.weight.copy_(torch.tensor([[[1.0], [-1.0]]]))  # the two channels cancel
    net = nn.Sequential(conv, nn.ReLU6(), merge)
    assert not _plain_support(net, (1, 7), (3,)).any()
    assert measure_rf(net, (1, 7), unit=(3,)).box == ((2, 5),)


def test_max_pool_counts_every_window_element():
    net = nn.Sequential(nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True))
    plain = _plain_support(net, (1, 8, 8), (2, 2))
    assert plain.sum() == 1  # the plain gradient reaches only the argmax
    m = measure_rf(net, (1, 8, 8), unit=(2, 2))
    assert m.box == ((3, 6), (3, 6)) and m.support == 9
    # functional max pools, with indices, and adaptive max pools too
    assert _window(lambda x: F.max_pool1d(x, 2, return_indices=True)[0], 8, 1) == (2, 4)
    assert _window(lambda x: F.adaptive_max_pool1d(x, 2), 8, 1) == (4, 8)
    assert _window(lambda x: torch.amax(x, dim=-1, keepdim=True), 8, 0) == (0, 8)
    # stride defaults to the kernel: unit 2 reads 2*3 - 2 + {0, 2, 4} = {4, 6, 8}
    assert _window(lambda x: F.max_pool1d(x, 3, dilation=2, padding=2), 9, 2) == (4, 9)


class _Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def _window(fn, n, unit):
    return measure_rf(_Fn(fn), (1, n), unit=(unit,)).box[0]


def test_activations_are_identity_and_normalisations_a_constant_scale():
    x = torch.randn(1, 4, 5, dtype=torch.float64, requires_grad=True)
    with linearised():
        for f in (F.relu, F.gelu, F.silu, torch.sigmoid, torch.tanh, F.hardswish):
            assert torch.equal(f(x), x)
        # normalisations divide by the root mean square, a constant for the gradient
        rms_all = x.detach().pow(2).mean(dim=(1, 2), keepdim=True).sqrt()
        rms_last = x.detach().pow(2).mean(dim=-1, keepdim=True).sqrt()
        assert torch.allclose(F.layer_norm(x, (5,)), x / rms_last, rtol=1e-15, atol=0)
        assert torch.allclose(F.group_norm(x, 2), x / rms_all, rtol=1e-15, atol=0)
        assert torch.allclose(nn.BatchNorm1d(4).eval().double()(x), x / rms_all, rtol=1e-15)
        norm = x.detach().norm(dim=-1, keepdim=True)
        assert torch.allclose(F.normalize(x, dim=-1), x / norm, rtol=1e-15, atol=0)
        (grad,) = torch.autograd.grad(F.layer_norm(x, (5,))[0, 1, 2], x)
        expected = torch.zeros_like(x)
        expected[0, 1, 2] = 1 / rms_last[0, 1, 0]
        assert torch.allclose(grad, expected, rtol=1e-15, atol=0)
    assert not torch.equal(F.relu(x), x)  # and only inside the context
    # constants (tensors that do not depend on the input) are computed as the model does
    c = torch.randn(1, 4, 5, dtype=torch.float64)
    with linearised():
        assert torch.equal(F.relu(c), c.clamp_min(0))
        assert torch.equal(F.layer_norm(c, (5,)), F.layer_norm(c, (5,)))


def test_softmax_drops_weights_below_e_minus_50_only():
    # A shifted window's mask adds -100: those weights are e^-100-tiny but non-zero in
    # float64, and their gradient too.  Under linearised() they are exactly zero.
    scores = torch.tensor([[0.0, 2.0, -47.5, -100.0, -49.0]], dtype=torch.float64)
    x = scores.clone().requires_grad_(True)
    plain = torch.softmax(x, -1)
    (plain_grad,) = torch.autograd.grad(plain[0, 0], x)
    assert plain[0, 3] > 0 and plain_grad[0, 3] != 0
    with linearised():
        for soft in (lambda t: torch.softmax(t, -1), lambda t: F.softmax(t, dim=-1)):
            w = soft(x)
            (grad,) = torch.autograd.grad(w[0, 0], x)
            # relative to the largest weight (score 2): -47.5 is kept, -49 and -100 not
            assert (w[0] != 0).tolist() == [True, True, True, False, False]
            assert (grad[0] != 0).tolist() == [True, True, True, False, False]
            kept = torch.softmax(scores[:, :3], -1)
            assert torch.allclose(w[0, :3], kept[0], rtol=1e-14, atol=0)
        w = x.softmax(dim=-1)
        assert (w[0] != 0).tolist() == [True, True, True, False, False]


@pytest.mark.parametrize("mask_kind", ["none", "float", "bool", "causal"])
def test_attention_is_written_out_with_the_masked_softmax(mask_kind):
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.rand(1, 2, 4, 3, dtype=torch.float64, generator=gen) for _ in range(3))
    float_mask = torch.zeros(4, 4, dtype=torch.float64)
    float_mask[0, 2:] = -100.0  # timm's shifted-window mask value
    kwargs = {
        "none": {},
        "float": {"attn_mask": float_mask},
        "bool": {"attn_mask": float_mask == 0},
        "causal": {"is_causal": True},
    }[mask_kind]
    real = F.scaled_dot_product_attention(q, k, v, **kwargs)
    v_in = v.clone().requires_grad_(True)
    with linearised():
        out = F.scaled_dot_product_attention(q, k, v_in, **kwargs)
    assert torch.allclose(out, real, rtol=1e-10, atol=1e-30)
    (grad,) = torch.autograd.grad(out[0, 0, 0].sum(), v_in)
    read = (grad[0, 0] != 0).any(-1).tolist()
    expected = {
        "none": [True] * 4,
        "float": [True, True, False, False],
        "bool": [True, True, False, False],
        "causal": [True, False, False, False],
    }[mask_kind]
    assert read == expected


def test_linearised_copy_is_positive_and_separate():
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Linear(4, 5))
    clone = linearised_copy(model)
    conv, bn, lin = clone
    assert conv.weight.dtype == torch.float64
    assert torch.all(conv.weight == 1 / 18) and torch.all(lin.weight == 1 / 4)
    assert torch.all(conv.bias == 1) and torch.all(bn.running_mean == 0)
    assert not clone.training
    assert (
        model[0].weight.dtype == torch.float32
        and model[0].weight.data_ptr() != conv.weight.data_ptr()
    )


def test_linearised_copy_keeps_derived_buffers():
    # non-persistent buffers (attention masks, position tables) keep their values;
    # persistent ones (running statistics) become 1 (or 0 for running means)
    model = nn.BatchNorm1d(3)
    mask = torch.tensor([[0.0, -100.0], [-100.0, 0.0]])
    model.register_buffer("attn_mask", mask, persistent=False)
    model.register_buffer("scale", torch.full((2,), -3.0))
    clone = linearised_copy(model)
    assert clone.attn_mask.dtype == torch.float64 and torch.equal(clone.attn_mask.float(), mask)
    assert torch.all(clone.scale == 1) and torch.all(clone.running_var == 1)
    assert torch.equal(model.attn_mask, mask) and clone.attn_mask.data_ptr() != mask.data_ptr()


def test_model_is_left_untouched():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    measure_rf(model, (1, 9, 9))
    measure_boxes(model, (1, 9, 9), [(0, 0), (1, 1)], layer="0")
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert not any(m._forward_hooks for m in model.modules())


def test_layer_by_module_or_node_name():
    net = nn.Sequential(nn.Conv1d(1, 1, 3), nn.ReLU(), nn.Conv1d(1, 1, 5))
    assert measure_rf(net, (1, 12), unit=(0,), layer="0").box == ((0, 3),)
    assert measure_rf(net, (1, 12), unit=(0,), layer="_1").box == ((0, 3),)  # fx node name
    assert measure_rf(net, (1, 12), unit=(0,)).box == ((0, 7),)
    with pytest.raises(InvalidSpecError, match="neither a module nor a traced node"):
        measure_rf(net, (1, 12), layer="nope")


def test_non_spatial_outputs_are_backpropagated_whole():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 5, 3))
    m = measure_rf(net, (1, 6, 7))
    assert m.grid == () and m.unit == () and m.box == ((0, 6), (0, 7))


def test_measure_model_rf_summary_and_border_note():
    net = nn.Sequential(nn.Conv1d(1, 1, 5, stride=2, padding=2), nn.Conv1d(1, 1, 3, padding=1))
    r = measure_model_rf(net, (1, 40))
    # RF 5 + 2 * 2 = 9, jump 2, padding 2 + 1 * 2 = 4
    assert (r.receptive_field, r.stride, r.padding) == ((9,), (2,), (4,))
    assert r.method == "measured" and not r.exact and r.notes == ()
    assert r.input_size == (40,)  # spatial, as model_rf gives it (not C, L)
    small = measure_model_rf(net, (1, 6))
    assert any("lower bounds" in note for note in small.notes)
    # at 6 the centre unit and its neighbour both read [0, 6): the shift is no stride
    assert any("the stride is unknown" in note for note in small.notes)
    edge = measure_model_rf(net, (1, 11))  # cut at the end only: the stride is known
    assert edge.stride == (2,) and any("lower bounds" in note for note in edge.notes)
    assert not any("unknown" in note for note in edge.notes)
    with pytest.raises(InvalidSpecError, match="clip=True"):
        r.input_box((3,), clip=False)


def test_errors():
    net = nn.Conv2d(3, 1, 3)
    with pytest.raises(ModelError, match=r"forward failed on input size \[1, 9, 9\]"):
        measure_rf(net, (1, 9, 9))
    with pytest.raises(InvalidSpecError, match="outside the output grid"):
        measure_rf(net, (3, 9, 9), unit=(7, 0))
    with pytest.raises(ModelError, match="does not depend on the input"):
        measure_rf(_Fn(lambda x: torch.zeros(1, 1, 3)), (1, 5))


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_constant_grouped_conv_shortcut_equals_pytorch(nd):
    # The linearised copy computes constant-weight grouped convolutions as window sums
    # (PyTorch's float64 grouped kernels are very slow); the result must be identical.
    import itertools

    conv = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
    sizes = (9, 8, 7)[:nd]
    gen = torch.Generator().manual_seed(nd)
    configs = itertools.product(
        [2, 3], [1, 2], [1, 2], [1, 3], [1, 2], [1, 2], [0, 1, "same", "valid"]
    )
    for groups, cin, cout, k, stride, dilation, padding in configs:
        if padding == "same" and stride != 1:
            continue
        x = torch.rand(2, groups * cin, *sizes, dtype=torch.float64, generator=gen)
        w = torch.full((groups * cout, cin, *(k,) * nd), 0.37, dtype=torch.float64)
        bias = torch.rand(groups * cout, dtype=torch.float64, generator=gen)
        expected = conv(x, w, bias, stride, padding, dilation, groups)
        with linearised():
            got = conv(x, w, bias, stride, padding, dilation, groups)
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12)
    # a non-constant weight takes PyTorch's own path
    w = torch.rand(4, 1, *(3,) * nd, dtype=torch.float64, generator=gen)
    x = torch.rand(1, 2, *sizes, dtype=torch.float64, generator=gen)
    expected = conv(x, w, groups=2)
    with linearised():
        assert torch.equal(conv(x, w, groups=2), expected)


# -- output layouts: channels first, channels last, tokens ------------------------------


class _Layout(nn.Module):
    """A strided conv whose output is channels first, channels last or tokens (with a
    class token in front)."""

    def __init__(self, layout):
        super().__init__()
        self.layout = layout
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.cls = nn.Parameter(torch.zeros(1, 1, 4))

    def forward(self, x):
        y = self.conv(x)
        if self.layout == "last":
            return y.permute(0, 2, 3, 1)
        if self.layout == "tokens":
            tokens = y.flatten(2).transpose(1, 2)
            return torch.cat([self.cls.expand(len(x), -1, -1), tokens], 1)
        return y


@pytest.mark.parametrize("layout", ["first", "last", "tokens"])
def test_measure_rf_finds_the_grid_in_any_layout(layout):
    # 16x12 input, conv 3 / stride 2 / padding 1: grid 8x6; unit (i, j) reads rows
    # [2i - 1, 2i + 2) and columns [2j - 1, 2j + 2), clipped to the input
    model = _Layout(layout)
    for unit in [(0, 0), (3, 4), (7, 5)]:
        m = measure_rf(model, (1, 16, 12), unit=unit, grid=(8, 6))
        i, j = unit
        expected = ((max(0, 2 * i - 1), 2 * i + 2), (max(0, 2 * j - 1), min(12, 2 * j + 2)))
        assert m.grid == (8, 6) and m.unit == unit and m.box == expected
    boxes = measure_boxes(model, (1, 16, 12), [(3, 4), (7, 5)], grid=(8, 6))
    assert boxes == [((5, 8), (7, 10)), ((13, 16), (9, 12))]


def test_measure_rf_layout_errors_and_explicit_dims():
    model = _Layout("last")
    # without the grid only channels-first outputs have one: (8, 6, 4) is not (8, 6)
    with pytest.raises(InvalidSpecError, match="outside the output grid"):
        measure_rf(model, (1, 16, 12), unit=(7, 5))
    assert measure_rf(model, (1, 16, 12), unit=(3, 4), spatial_dims=(1, 2), grid=(8, 6)).box == (
        (5, 8),
        (7, 10),
    )
    with pytest.raises(InvalidSpecError, match="cannot find the spatial grid"):
        measure_rf(model, (1, 16, 12), unit=(3, 4), grid=(5, 6))
    with pytest.raises(InvalidSpecError, match="spatial_dims must be 2 dims"):
        measure_rf(model, (1, 16, 12), grid=(8, 6), spatial_dims=(1, 4))
    with pytest.raises(InvalidSpecError, match="grid needs 2 extents"):
        measure_rf(model, (1, 16, 12), grid=(8,))


def test_spatial_dims_prefers_channels_first_when_ambiguous():
    from rfmap.measure import spatial_dims, unit_index

    assert spatial_dims((1, 8, 8, 8), (8, 8)) == (2, 3)
    assert spatial_dims((2, 5, 8, 6), (8, 6)) == (2, 3)
    assert spatial_dims((2, 8, 6, 5), (8, 6)) == (1, 2)
    assert spatial_dims((2, 50, 7), (8, 6)) == (1, 1)  # two leading tokens
    assert spatial_dims((2, 7, 30), (30,)) == (2,)
    assert spatial_dims((2, 30, 7), (30,)) == (1,)
    assert spatial_dims((1, 10), (1,)) == ()
    assert unit_index((2, 50, 7), (1, 1), (8, 6), (1, 2)) == (slice(None), 2 + 8, slice(None))
    with pytest.raises(InvalidSpecError, match="cannot find"):
        spatial_dims((1, 40, 7), (8, 6))


def test_tokens_folded_into_the_batch():
    # TNT's pixel tokens: (N * T, pixels, C), one sequence of pixels per patch token
    torch = pytest.importorskip("torch")
    from rfmap.measure import spatial_dims, unit_index

    assert spatial_dims((2 * 48, 16, 5), (8, 6)) == (0, 0)
    index = unit_index((2 * 48, 16, 5), (0, 0), (8, 6), (1, 2))
    out = torch.arange(2 * 48).reshape(2 * 48, 1, 1).expand(2 * 48, 16, 5)
    assert sorted(set(out[index].flatten().tolist())) == [8, 48 + 8]  # token 8 of each sample

    class Folded(torch.nn.Module):
        def forward(self, x):  # (1, 1, 8, 6) -> 4x3 blocks of 2x2 pixels, folded
            n, c = x.shape[:2]
            blocks = x.reshape(n, c, 4, 2, 3, 2).permute(0, 2, 4, 3, 5, 1)
            return blocks.reshape(n * 12, 4, c).cumsum(1)

    assert measure_rf(Folded(), (1, 8, 6), unit=(1, 2), grid=(4, 3)).box == ((2, 4), (4, 6))
    assert measure_rf(Folded(), (1, 8, 6), unit=(3, 0), grid=(4, 3)).box == ((6, 8), (0, 2))
