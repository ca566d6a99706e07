"""``rfmap.erf`` against exact path counts, closed forms, a per-image loop and full inputs.

Oracles: the exact path-count engine (all-ones linear stacks), the closed-form sigma of
uniform stacks, RepLKNet's per-image ``get_input_grad`` loop re-typed here, and the
model run on the full input (for the receptive-field crop).
"""

from __future__ import annotations

import json
import math
import warnings
from unittest import mock

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch", reason="the ERF needs PyTorch")

from rfmap import ModelError, RFMapError, conv_stack, stack_path_map  # noqa: E402
from rfmap.erf import (  # noqa: E402
    ERFResult,
    ERFWarning,
    Gradient,
    TheoreticalRF,
    erf,
    load_erf,
    resolve_device,
    save_erf,
)
from rfmap.erf import measurement as erf_module  # noqa: E402  (erf() looks its helpers up here)
from rfmap.erf_metrics import gaussian_fit, uniform_stack_sigma  # noqa: E402
from rfmap.errors import MapTooLargeError  # noqa: E402
from rfmap.gradient import build_network  # noqa: E402
from rfmap.images import noise_images  # noqa: E402
from rfmap.specs import output_sizes, receptive_field_size  # noqa: E402

nn = torch.nn


# -- helpers ----------------------------------------------------------------------------


def conv_net(layers, channels, act=nn.Tanh, seed=0, dtype=torch.float64):
    """A multi-channel conv stack with the geometry of ``layers`` and random weights."""
    torch.manual_seed(seed)
    modules = []
    for layer, c_in, c_out in zip(layers, channels[:-1], channels[1:], strict=True):
        modules.append(
            nn.Conv2d(
                c_in,
                c_out,
                layer.kernel_size,
                layer.stride,
                padding=tuple(layer.padding),
                dilation=layer.dilation,
            )
        )
        if act is not None:
            modules.append(act())
    return nn.Sequential(*modules).to(dtype)


def stack_theory(layers, spatial, unit):
    """The analytic field of a plain conv stack from rfmap.specs (independent of trace)."""
    box, rf, jumps = [], [], []
    for axis in range(len(spatial)):
        jump, offset = 1, 0
        for layer in layers:
            offset -= layer.pad(axis)[0] * jump
            jump *= layer.stride[axis]
        size = receptive_field_size(layers, axis)
        start = unit[axis] * jump + offset
        box.append((max(0, start), min(spatial[axis], start + size)))
        rf.append(size)
        jumps.append(jump)
    return TheoreticalRF(tuple(rf), tuple(jumps), tuple(box), False, True)


def analysed_as(layers):
    """Make erf() see the analytic field of the conv stack ``layers`` (a context manager)."""

    def theory(model, input_size, layer, unit, *rest):
        return stack_theory(layers, input_size[1:], unit), ""

    return mock.patch.object(erf_module, "_theoretical_rf", theory)


def replknet_loop(model, images, output_relu=True, grad_relu=True):
    """RepLKNet's visualize_erf.py: one image at a time, AverageMeter of the maps."""
    total, count = None, 0
    for x in images:
        samples = x[None].clone().requires_grad_(True)
        outputs = model(samples)
        h, w = outputs.shape[2:]
        central = outputs[:, :, h // 2, w // 2]
        central_point = (torch.relu(central) if output_relu else central).sum()
        grad = torch.autograd.grad(central_point, samples)[0]
        grad = torch.relu(grad) if grad_relu else grad.abs()
        grad_map = grad.sum((0, 1)).detach().numpy()
        total = grad_map if total is None else total + grad_map
        count += 1
    return total / count


stacks = st.integers(1, 4).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(1, 3), min_size=n, max_size=n),  # dilation
        st.lists(st.integers(1, 4), min_size=n, max_size=n),  # kernel
        st.lists(st.integers(1, 2), min_size=n, max_size=n),  # stride
        st.lists(st.integers(0, 3), min_size=n, max_size=n),  # padding
    )
)


def build_layers(stack):
    dilations, kernels, strides, paddings = stack
    return conv_stack(dilations, kernels, stride=strides, padding=paddings)


# -- exactness: path counts and the closed form ------------------------------------------


@settings(max_examples=25, deadline=None)
@given(stacks, st.integers(6, 30), st.data())
def test_all_ones_linear_stack_erf_equals_exact_path_counts(stack, size, data):
    """Required: the ERF of an all-ones linear stack is the foundation's path-count map."""
    layers = build_layers(stack)
    try:
        out = output_sizes(layers, (size, size))[-1]
    except RFMapError:
        return
    unit = data.draw(st.tuples(st.integers(0, out[0] - 1), st.integers(0, out[1] - 1)))
    net = build_network(layers, torch.float64)
    counts = stack_path_map(layers, size, unit).counts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ERFWarning)  # small inputs, units that see padding
        result = erf(net, noise_images(2, (1, size, size)), unit=unit, crop=False)
    # A unit that sees only padding has no path, and erf() says so.
    assert any("all zero" in note for note in result.notes) == (not counts.any())
    # float64 holds these counts exactly: the maps are equal, and so after normalisation.
    assert np.array_equal(result.map, counts.astype(np.float64))
    if counts.sum():
        assert np.allclose(result.map / result.map.sum(), counts / counts.sum(), rtol=1e-12)


def test_path_counts_through_the_rf_crop():
    layers = conv_stack([1, 2, 4, 1], 3, stride=[1, 2, 1, 1], padding=[1, 2, 4, 1])
    net = build_network(layers, torch.float64)
    with analysed_as(layers):
        result = erf(net, noise_images(1, (1, 80, 80)))
    assert result.crop is not None and result.crop != ((0, 80), (0, 80))
    assert np.array_equal(result.map, stack_path_map(layers, 80).counts.astype(np.float64))


@settings(max_examples=20, deadline=None)
@given(
    st.lists(st.integers(1, 3), min_size=1, max_size=4),
    st.lists(st.integers(1, 3), min_size=1, max_size=4).map(lambda ks: [2 * k + 1 for k in ks]),
    st.floats(0.1, 3.0),
)
def test_fitted_sigma_of_uniform_stack_is_the_closed_form(dilations, kernels, weight):
    """Required: the Gaussian fit of a uniform-weight linear stack matches the closed form."""
    n = min(len(dilations), len(kernels))
    layers = conv_stack(dilations[:n], kernels[:n])
    size = 2 * max(receptive_field_size(layers, a) for a in (0, 1)) + 1
    net = nn.Sequential(
        *[_uniform_conv(2 if i == 0 else 3, 3, layer, weight) for i, layer in enumerate(layers)]
    ).double()
    result = erf(net, noise_images(1, (2, size, size)), crop=False)
    fit = gaussian_fit(result.map)
    expected = uniform_stack_sigma(layers)
    assert fit.sigma == pytest.approx(expected, rel=1e-9)
    assert result.metrics.gaussian.sigma == pytest.approx(expected, rel=1e-9)


def _uniform_conv(c_in, c_out, layer, weight):
    conv = nn.Conv2d(
        c_in, c_out, layer.kernel_size, padding="same", dilation=layer.dilation, bias=False
    )
    with torch.no_grad():
        conv.weight.fill_(weight)
    return conv


# -- batching, the RepLKNet loop, and options ---------------------------------------------


def small_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 6, 5, padding=2),
    ).double()


def test_batched_result_equals_the_per_image_loop():
    model = small_cnn()
    images = noise_images(5, (3, 24, 24), seed=4)
    stacked = torch.from_numpy(np.stack([images.load(i) for i in range(5)])).double()
    expected = replknet_loop(model.eval(), stacked)
    result = erf(model, images, gradient="relu", output_relu=True, batch_size=2, crop=False)
    np.testing.assert_allclose(result.map, expected, rtol=1e-10, atol=1e-14)
    assert result.count == 5 and result.batch_size == 2
    abs_result = erf(model, images, crop=False)
    np.testing.assert_allclose(
        abs_result.map,
        replknet_loop(model, stacked, output_relu=False, grad_relu=False),
        rtol=1e-10,
        atol=1e-14,
    )


def test_batch_size_does_not_change_the_result():
    model = small_cnn(1)
    images = noise_images(7, (3, 20, 20))
    maps = [erf(model, images, batch_size=b, crop=False).map for b in (1, 3, 7)]
    auto = erf(model, images, crop=False)
    for m in [*maps[1:], auto.map]:
        np.testing.assert_allclose(m, maps[0], rtol=1e-12)
    assert 1 <= auto.batch_size <= 64


def test_memory_budget_bounds_the_batch_and_huge_batches_are_refused():
    model = small_cnn()
    images = noise_images(3, (3, 32, 32))
    assert erf(model, images, memory_budget=1, crop=False).batch_size == 1
    assert erf(model, images, memory_budget=2**40, crop=False).batch_size == 64
    with pytest.raises(MapTooLargeError, match="smaller batch size"):
        erf(model, images, batch_size=10**7, crop=False)


def test_gradient_modes_and_signed_map():
    model = small_cnn(2)
    images = noise_images(3, (3, 16, 16))
    full = {g: erf(model, images, gradient=g, crop=False).map for g in Gradient}
    assert (full[Gradient.ABS] >= full[Gradient.RELU] - 1e-15).all()
    assert (full[Gradient.SIGNED] < 0).any()
    assert np.abs(full[Gradient.SIGNED]).sum() <= full[Gradient.ABS].sum() + 1e-12
    with pytest.raises(RFMapError, match="gradient must be one of abs, relu, signed"):
        erf(model, images, gradient="square")


def test_input_kinds_give_the_same_map():
    model = small_cnn(3)
    images = noise_images(4, (3, 16, 16), seed=2)
    array = np.stack([images.load(i) for i in range(4)])
    from_set = erf(model, images, crop=False).map
    from_array = erf(model, array, crop=False).map
    from_tensor = erf(model, torch.from_numpy(array), crop=False).map
    loader = [(torch.from_numpy(array[:3]), torch.zeros(3)), (torch.from_numpy(array[3:]), None)]
    from_loader = erf(model, loader, crop=False)
    for m in (from_array, from_tensor, from_loader.map):
        np.testing.assert_allclose(m, from_set, rtol=1e-12)
    assert from_loader.count == 4 and from_loader.inputs["kind"] == "batches"
    first_two = erf(model, array, num_images=2, crop=False)
    np.testing.assert_allclose(first_two.map, erf(model, array[:2], crop=False).map, rtol=1e-12)
    assert erf(model, loader, num_images=2, crop=False).count == 2


def test_non_centre_unit():
    layers = conv_stack([1, 1])
    net = build_network(layers, torch.float64)
    result = erf(net, noise_images(1, (1, 9, 9)), unit=(1, 7), crop=False)
    assert np.array_equal(result.map, stack_path_map(layers, 9, (1, 7)).counts)
    with pytest.raises(RFMapError, match="outside the output grid"):
        erf(net, noise_images(1, (1, 9, 9)), unit=(9, 0))
    with pytest.raises(RFMapError, match="outside the output grid"):
        erf(net, noise_images(1, (1, 9, 9)), unit=(1,))


def test_1d_and_3d_models():
    net1 = build_network(conv_stack([1, 2], ndim=1), torch.float64)
    r1 = erf(net1, noise_images(2, (1, 15)), crop=False)
    assert np.array_equal(r1.map, stack_path_map(conv_stack([1, 2], ndim=1), 15).counts)
    net3 = build_network(conv_stack([1], ndim=3), torch.float64)
    r3 = erf(net3, noise_images(1, (1, 5, 5, 5)), crop=False)
    assert np.array_equal(r3.map, stack_path_map(conv_stack([1], ndim=3), 5).counts)


# -- the receptive-field crop -------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(stacks, st.integers(10, 48), st.integers(8, 40), st.data())
def test_crop_equals_full_input(stack, height, width, data):
    """Required: the crop gives the same gradient as the full input (nonlinear, strided)."""
    layers = build_layers(stack)
    try:
        out = output_sizes(layers, (height, width))[-1]
    except RFMapError:
        return
    unit = data.draw(st.tuples(st.integers(0, out[0] - 1), st.integers(0, out[1] - 1)))
    net = conv_net(layers, [2] + [3] * len(layers), seed=data.draw(st.integers(0, 99)))
    images = noise_images(2, (2, height, width), seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ERFWarning)  # units that see only padding, say
        full = erf(net, images, unit=unit, crop=False)
        with analysed_as(layers):
            cropped = erf(net, images, unit=unit)
    assert full.crop is None and full.crop_note == "crop disabled"
    np.testing.assert_allclose(cropped.map, full.map, rtol=1e-11, atol=1e-300)
    event("cropped" if cropped.crop is not None else f"full input: {cropped.crop_note}")
    if cropped.crop is not None:
        for (a, b), jump, n in zip(
            cropped.crop, cropped.theoretical.stride, (height, width), strict=True
        ):
            assert a % jump == 0 and 0 <= a < b <= n


def test_crop_is_smaller_and_checked():
    layers = conv_stack([1, 1, 1], 3, stride=[2, 2, 1], padding=1)
    net = conv_net(layers, [3, 4, 4, 5], act=nn.ReLU)
    with analysed_as(layers):
        result = erf(net, noise_images(2, (3, 64, 64)), check_crop=True)
    (a0, b0), (a1, b1) = result.crop
    assert (b0 - a0) * (b1 - a1) < 64 * 64 / 4 and result.crop_note == ""
    assert result.to_dict()["crop"] == [[a0, b0], [a1, b1]]


def test_a_wrong_analysis_is_caught_by_check_crop(monkeypatch):
    layers = conv_stack([1, 1, 1], 3, stride=[2, 2, 1], padding=1)
    net = conv_net(layers, [3, 4, 4, 5])
    right = stack_theory(layers, (64, 64), (8, 8))
    # A box 4 pixels short on each side (start still aligned to the stride of 4).
    short = tuple((a + 4, b - 4) for a, b in right.box)
    wrong = TheoreticalRF(right.receptive_field, right.stride, short, False, True)
    monkeypatch.setattr(erf_module, "_theoretical_rf", lambda *a: (wrong, ""))
    with pytest.raises(ModelError, match="does not reproduce the full-input gradient"):
        erf(net, noise_images(1, (3, 64, 64)), check_crop=True)
    # Far too small a box: the model cannot run on it, so the full input is used.
    tiny = stack_theory(conv_stack([1]), (64, 64), (8, 8))
    monkeypatch.setattr(erf_module, "_theoretical_rf", lambda *a: (tiny, ""))
    result = erf(net, noise_images(1, (3, 64, 64)))
    assert result.crop is None and "too small" in result.crop_note
    monkeypatch.setattr(erf_module, "_meta_clone", lambda model: None)  # the real-model check
    assert erf(net, noise_images(1, (3, 64, 64))).crop is None


def test_no_crop_for_global_inexact_or_unknown_fields(monkeypatch):
    net = small_cnn()
    images = noise_images(1, (3, 40, 40))
    base = stack_theory(conv_stack([1, 1], stride=[1, 2], padding=1), (40, 40), (10, 10))
    cases = {
        "global operation": TheoreticalRF(base.receptive_field, base.stride, base.box, True, True),
        "not exact": TheoreticalRF(base.receptive_field, base.stride, base.box, False, False),
        "not a positive integer": TheoreticalRF(
            base.receptive_field, (0.5, 0.5), base.box, False, True
        ),
    }
    for reason, theory in cases.items():
        monkeypatch.setattr(erf_module, "_theoretical_rf", lambda *a, t=theory: (t, ""))
        result = erf(net, images)
        assert result.crop is None and reason in result.crop_note
    monkeypatch.setattr(erf_module, "_theoretical_rf", lambda *a: (None, "unknown: no trace"))
    result = erf(net, images)
    assert result.crop is None and result.crop_note == "unknown: no trace"
    assert result.theoretical is None and result.metrics.extent_over_rf is None


def test_small_input_warns_and_extent_over_rf():
    layers = conv_stack([1, 2, 4, 8])  # field 31
    net = build_network(layers, torch.float64)
    with analysed_as(layers):
        with pytest.warns(ERFWarning, match="smaller than the theoretical receptive field"):
            small = erf(net, noise_images(1, (1, 21, 21)))
        big = erf(net, noise_images(1, (1, 41, 41)))
    assert any("smaller" in n for n in small.notes)
    assert big.metrics.theoretical_rf == (31, 31)
    assert big.metrics.extent_over_rf == tuple(e / 31 for e in big.metrics.extent)


# -- layers -------------------------------------------------------------------------------


def test_module_and_fx_layers_match_truncated_models():
    torchvision = pytest.importorskip("torchvision", reason="uses a torchvision ResNet")
    model = torchvision.models.resnet18(weights=None).double()
    images = noise_images(2, (3, 48, 48))
    trunk = nn.Sequential(
        model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2
    )
    with pytest.warns(ERFWarning, match=r"smaller than the theoretical receptive field \(99x99\)"):
        expected = erf(trunk, images, crop=False).map
        by_module = erf(model, images, layer="layer2", crop=False)
        by_node = erf(model, images, layer="layer2_1_relu_1", crop=False)
    np.testing.assert_allclose(by_module.map, expected, rtol=1e-12)
    np.testing.assert_allclose(by_node.map, expected, rtol=1e-12)
    assert by_module.output_shape == (6, 6) and by_module.unit == (3, 3)
    with pytest.raises(ModelError, match="did you mean layer2"):
        erf(model, images, layer="layer22")
    with pytest.raises(ModelError, match=r"without the 2 spatial axes.*--layer"):
        erf(model, images)


def test_outputs_that_are_not_maps_are_errors():
    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    with pytest.raises(ModelError, match="is a tuple, not a tensor"):
        erf(Pair(), noise_images(1, (1, 5, 5)))

    class Detached(nn.Module):
        def forward(self, x):
            return x.detach() * 2

    with pytest.raises(ModelError, match="does not depend differentiably"):
        erf(Detached(), noise_images(1, (1, 5, 5)))
    with pytest.raises(RFMapError, match=r"must be a torch\.nn\.Module"):
        erf(lambda x: x, noise_images(1, (1, 5, 5)))


# -- gradient pitfalls and model state ---------------------------------------------------


class Sqrt(nn.Module):
    def forward(self, x):
        return torch.sqrt(x)


def test_nan_gradients_are_an_error_naming_the_input():
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), Sqrt())
    with pytest.raises(ModelError, match="gradient for noise-0 holds NaN or infinite"):
        erf(model, noise_images(3, (1, 8, 8)), crop=False)


def test_dead_units_warn_with_the_layer():
    conv = nn.Conv2d(1, 2, 3, padding=1)
    with torch.no_grad():
        conv.bias.fill_(-1e3)
    model = nn.Sequential(conv, nn.ReLU(), nn.Conv2d(2, 2, 1))
    with pytest.warns(ERFWarning, match=r"layer '1'.*all zero.*dead units"):
        result = erf(model, noise_images(2, (1, 8, 8)), layer="1", crop=False)
    assert not result.map.any() and result.metrics.gaussian is None
    assert "all zero" in result.to_dict()["notes"][0]


def test_model_state_is_restored_even_after_an_error():
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Dropout(0.5), Sqrt())
    model.train()
    model[0].weight.requires_grad_(True)
    model[0].bias.requires_grad_(False)
    with pytest.raises(ModelError):
        erf(model, noise_images(1, (1, 8, 8)), crop=False)
    assert model.training and model[1].training
    assert model[0].weight.requires_grad and not model[0].bias.requires_grad
    ok = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Dropout(0.5)).train()
    first = erf(ok, noise_images(2, (1, 8, 8)), crop=False).map
    # eval mode inside: dropout is off, so the measurement is deterministic.
    assert np.array_equal(first, erf(ok, noise_images(2, (1, 8, 8)), crop=False).map)
    assert ok.training and ok[0].weight.grad is None


def test_channels_last_gives_the_same_map_and_restores_the_model():
    model = small_cnn(4)
    before = [(p, p.data_ptr(), p.stride()) for p in model.parameters()]
    buffers = {name: b for name, b in model.named_buffers()}
    images = noise_images(3, (3, 20, 20))
    auto = erf(model, images, crop=False)
    plain = erf(model, images, crop=False, channels_last=False)
    assert auto.channels_last and not plain.channels_last
    assert auto.to_dict()["channels_last"] is True
    np.testing.assert_allclose(auto.map, plain.map, rtol=1e-12)
    for p, pointer, stride in before:
        assert p.data_ptr() == pointer and p.stride() == stride
    assert all(b is buffers[name] for name, b in model.named_buffers())
    assert not erf(build_network(conv_stack([1], ndim=1)), noise_images(1, (1, 9))).channels_last


def test_device_auto_picks_cuda_when_present(monkeypatch):
    assert resolve_device("auto") == torch.device("cpu") or torch.cuda.is_available()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda", local_rank=3) == torch.device("cuda", 1)
    with pytest.raises(RFMapError, match="does not exist"):
        resolve_device("cuda:5")


def test_bad_devices_and_arguments():
    with pytest.raises(RFMapError, match="device must be"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RFMapError, match="CUDA is not available"):
            resolve_device("cuda")
    model = small_cnn()
    images = noise_images(1, (3, 8, 8))
    for kwargs, message in [
        ({"num_images": 0}, "num_images must be a positive integer"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"layer": 3}, "layer must be a module or fx node name"),
        ({"thresholds": (0.5, 1.5)}, r"thresholds must be shares in \(0, 1\], got 1\.5"),
    ]:
        with pytest.raises(RFMapError, match=message):
            erf(model, images, **kwargs)
    with pytest.raises(RFMapError, match="inputs must be an ImageSet"):
        erf(model, 42)
    with pytest.raises(RFMapError, match=r"shape \(N, C, \*spatial\)"):
        erf(model, np.zeros((3, 8)))
    with pytest.raises(RFMapError, match="expected \\[3, 8, 8\\]"):
        erf(model, [torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 9, 9)], crop=False)
    with pytest.raises(RFMapError, match="distributed=True needs"):
        erf(model, images, distributed=True)


# -- the result object ------------------------------------------------------------------


def test_result_serialises_saves_and_displays(tmp_path):
    result = erf(small_cnn(), noise_images(2, (3, 16, 16)), name="tiny", crop=False)
    assert isinstance(result, ERFResult) and result.name == "tiny"
    data = json.loads(json.dumps(result.to_dict()))
    assert data["count"] == 2 and data["unit"] == [4, 4] and data["output_shape"] == [8, 8]
    assert data["metrics"]["shape"] == [16, 16] and "map" not in data
    assert np.array_equal(np.array(result.to_dict(include_map=True)["map"]), result.map)
    assert result.normalised.max() == pytest.approx(1.0)
    assert result._repr_png_().startswith(b"\x89PNG")
    assert "<table>" in result._repr_html_() and "tiny" in repr(result)
    path = save_erf([result, result], tmp_path / "maps.npz")
    loaded = load_erf(path)
    assert len(loaded) == 2 and np.array_equal(loaded[1][0], result.map)
    assert loaded[0][1]["metrics"] == data["metrics"]
    with pytest.raises(RFMapError, match=r"must end in \.npz"):
        save_erf(result, tmp_path / "maps.npy")
    with pytest.raises(RFMapError, match="not found"):
        load_erf(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(RFMapError, match="not an ERF file"):
        load_erf(tmp_path / "bad.npz")
    assert math.isfinite(result.images_per_second)


# -- with the real analysis (rfmap.trace) ------------------------------------------------


def test_resnet_crop_equals_full_with_the_traced_field():
    """Required: crop == full on a real model, its field derived by rfmap.trace."""
    torchvision = pytest.importorskip("torchvision", reason="uses a torchvision ResNet")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).double()
    images = noise_images(2, (3, 176, 176), seed=3)
    full = erf(model, images, "layer2", crop=False)
    cropped = erf(model, images, "layer2")
    assert cropped.theoretical.receptive_field == (99, 99) and cropped.theoretical.exact
    (a0, b0), (a1, b1) = cropped.crop
    assert a0 % 8 == 0 and (b0 - a0) * (b1 - a1) < 176 * 176 / 2
    np.testing.assert_allclose(cropped.map, full.map, rtol=1e-10, atol=1e-12 * full.map.max())
    # The map is zero outside the field, as the analysis says.
    (r0, r1), (c0, c1) = cropped.theoretical.box
    outside = full.map.copy()
    outside[r0:r1, c0:c1] = 0
    assert not outside.any()


class SqueezeExcite(nn.Module):
    """A global-pooling gate: every output unit sees the whole input."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.fc = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return y * torch.sigmoid(self.fc(y.mean((2, 3), keepdim=True)))


def test_global_operations_fall_back_to_the_full_input():
    model = SqueezeExcite(4).double()
    result = erf(model, noise_images(2, (3, 32, 32)))
    assert result.theoretical.is_global and result.crop is None
    assert "global operation" in result.crop_note
    # The gate reaches every pixel: the map is non-zero far outside the 3x3 conv's field.
    assert result.map[0, 0] > 0 and result.map[-1, -1] > 0


def test_rfmap_erf_is_callable_as_the_issue_spells_it():
    import rfmap
    import rfmap.erf as module

    model = build_network(conv_stack([1, 2]), torch.float64)
    inputs = noise_images(1, (1, 11, 11))
    via_module = module(model, inputs)  # rfmap.erf after `import rfmap.erf` is the module
    assert isinstance(via_module, ERFResult)
    np.testing.assert_array_equal(via_module.map, erf(model, inputs).map)
    assert rfmap.erf is module and module.erf is erf


class GatedStack(nn.Module):
    """conv 5x5 (pad 2) -> tanh -> squeeze-excitation gate -> conv 3x3 (stride 2, pad 1).

    With ``gate=False`` it is the plain stack: the field of the gated model's local paths.
    """

    def __init__(self, gate=True):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 5, padding=2)
        self.fc = nn.Conv2d(4, 4, 1)
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.gate = gate

    def forward(self, x):
        y = torch.tanh(self.conv1(x))
        if self.gate:
            y = y * torch.sigmoid(self.fc(y.mean((2, 3), keepdim=True)))
        return self.conv2(y)


GATED_LAYERS = conv_stack([1, 1], [5, 3], stride=[1, 2], padding=[2, 1])


@pytest.mark.parametrize("unit", [None, (1, 14), (8, 8)])
def test_a_global_model_is_compared_with_its_local_paths(unit):
    """A squeeze-excitation gate reads the whole input (trace says receptive_field = the
    input), but the ERF is compared with, centred on and drawn as the conv paths' field."""
    images = noise_images(2, (3, 32, 32))
    result = erf(GatedStack().double(), images, unit=unit)
    plain = erf(GatedStack(gate=False).double(), images, unit=unit, crop=False)
    theory = result.theoretical
    the_unit = unit or (8, 8)
    local = stack_theory(GATED_LAYERS, (32, 32), the_unit)  # independent of rfmap.trace
    assert theory.is_global and theory.receptive_field == (32, 32) and result.crop is None
    assert theory.local_receptive_field == local.receptive_field == (7, 7)
    assert theory.compared_rf == (7, 7) and theory.field_box == local.box
    # The local box is the support of the gate-less model's ERF.
    (r0, r1), (c0, c1) = local.box
    outside = plain.map.copy()
    outside[r0:r1, c0:c1] = 0
    assert not outside.any() and plain.map[r0:r1, c0:c1].all()
    # The squares and extents are centred on the unit, not on the middle of the input.
    jump, first = 2, [u * 2 - 3 for u in the_unit]  # unclipped local box: [2u - 3, 2u + 4)
    expected = tuple(min(max(f + 3, 0), 31) for f in first) if unit else (16, 16)
    assert result.metrics.centre == expected and jump == theory.stride[0]
    assert result.metrics.theoretical_rf == (7, 7)
    assert result.metrics.extent_over_rf == tuple(e / 7 for e in result.metrics.extent)
    assert not any("smaller" in note for note in result.notes)
    data = result.to_dict()["theoretical"]
    assert data["compared_rf"] == [7, 7] and data["local_receptive_field"] == [7, 7]
    assert data["field_box"] == [list(b) for b in local.box] and data["global_axes"] == [1, 1]


def test_an_input_smaller_than_the_local_field_of_a_global_model_warns():
    with pytest.warns(ERFWarning, match=r"paths through no global operation \(7x7\)"):
        result = erf(GatedStack().double(), noise_images(1, (3, 6, 6)))
    assert result.theoretical.receptive_field == (6, 6)  # the whole (small) input


def test_metric_centre_of_a_unit_without_a_known_field_is_its_centre_of_mass(monkeypatch):
    net = build_network(conv_stack([1, 1]), torch.float64)
    monkeypatch.setattr(erf_module, "_theoretical_rf", lambda *a: (None, "unknown"))
    result = erf(net, noise_images(1, (1, 21, 21)), unit=(3, 15))
    assert result.metrics.centre == (3, 15)  # symmetric path counts around (3, 15)
    assert erf(net, noise_images(1, (1, 21, 21))).metrics.centre == (10, 10)


def test_inputs_are_cropped_as_they_are_read(monkeypatch):
    """Bounded memory: a batch of large inputs holds only their crops (numpy is traced)."""
    import tracemalloc

    layers = conv_stack([1, 1], 3)
    net = build_network(layers, torch.float32)
    one_input = 512 * 512 * 4
    peaks = []
    accumulate = erf_module._accumulate

    def traced(*args, **kwargs):  # the peak of the accumulation alone, not of the setup
        tracemalloc.start()
        try:
            out = accumulate(*args, **kwargs)
            peaks.append(tracemalloc.get_traced_memory()[1])
            return out
        finally:
            tracemalloc.stop()

    monkeypatch.setattr(erf_module, "_accumulate", traced)
    with analysed_as(layers):
        result = erf(net, noise_images(16, (1, 512, 512)), batch_size=16)
    assert result.crop is not None and result.count == 16
    # A batch of 16 full inputs would be 16 inputs' worth; cropped as they are drawn,
    # one input is held in full at a time (and the float64 map is two inputs' worth).
    assert peaks[0] < 4 * one_input


def test_huge_inputs_and_counts_are_checked_not_allocated():
    net = build_network(conv_stack([1]), torch.float32)
    with pytest.raises(MapTooLargeError, match=r"one input of size 1x100000x100000 needs"):
        erf(net, noise_images(1, (1, 100_000, 100_000)))
    group = erf_module._Group(rank=1, world=3)
    assert erf_module._local_count(10**15, 1, group) == 10**15 // 3 + (10**15 % 3 > 1)
    for count in range(1, 30):
        for size in (1, 2, 5):
            for world in (1, 2, 3):
                for rank in range(world):
                    starts = list(range(0, count, size))[rank::world]
                    brute = sum(min(size, count - s) for s in starts)
                    assert erf_module._local_count(count, size, erf_module._Group(rank, world)) == (
                        brute
                    )


def test_cuda_runs_use_deterministic_cudnn_and_restore_it():
    """Same --seed, same map: cuDNN's autotuned backward convolutions are not bit-stable."""
    import types

    cudnn = torch.backends.cudnn
    saved = (cudnn.deterministic, cudnn.benchmark)
    try:
        cudnn.deterministic, cudnn.benchmark = False, True
        with erf_module._deterministic(types.SimpleNamespace(type="cuda")):
            assert cudnn.deterministic and not cudnn.benchmark
        assert (cudnn.deterministic, cudnn.benchmark) == (False, True)
        with erf_module._deterministic(torch.device("cpu")):
            assert (cudnn.deterministic, cudnn.benchmark) == (False, True)
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


@torch.library.custom_op("rfmap_test_erf::copy", mutates_args=())
def _opaque_copy(x: torch.Tensor) -> torch.Tensor:
    """An element-wise op rfmap has no rule for: measured with the gradient."""
    return x.clone()


@_opaque_copy.register_fake
def _(x):
    return torch.empty_like(x)


_opaque_copy.register_autograd(
    lambda ctx, grad: grad, setup_context=lambda ctx, inputs, output: None
)


class Branchy(nn.Module):
    """An op without a rule in the middle: rfmap.trace measures it, so it is not exact."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(1, 2, 3, padding=1)
        self.b = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        return self.b(torch.tanh(_opaque_copy(self.a(x))))


def test_a_measured_field_is_kept_but_not_used_to_crop():
    result = erf(Branchy().double(), noise_images(1, (1, 20, 20)), unit=(3, 4))
    assert result.theoretical is not None, result.theoretical_note
    assert result.theoretical.receptive_field == (5, 5) and not result.theoretical.exact
    assert result.theoretical.box == ((1, 6), (2, 7)) and result.metrics.centre == (3, 4)
    assert result.crop is None and "not exact" in result.crop_note
    assert result.metrics.theoretical_rf == (5, 5)


# -- messy folders: unreadable images ----------------------------------------------------


def _folder(tmp_path, bad):
    """Six small colour images, and ``bad`` unreadable files among them (sorted in)."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.png")
    for name in bad:
        (folder / name).write_bytes(b"\xff\xd8 not really a jpeg")
    return folder


def test_unreadable_images_stop_the_run_unless_skipped(tmp_path):
    from rfmap.errors import UnreadableImageError
    from rfmap.images import folder_images

    net = build_network(conv_stack([1, 2]), torch.float64)
    folder = _folder(tmp_path, ["img2b.jpg", "zz.jpg"])
    images = folder_images(folder, (1, 16, 16))
    with pytest.raises(UnreadableImageError, match=r"img2b\.jpg.*--skip-unreadable"):
        erf(net, images, batch_size=3)
    with pytest.warns(ERFWarning, match=r"skipped 2 unreadable images \(img2b\.jpg, zz\.jpg\)"):
        result = erf(net, images, batch_size=3, skip_unreadable=True)
    assert result.count == 6 and result.skipped == ("img2b.jpg", "zz.jpg")
    assert result.to_dict()["skipped"] == ["img2b.jpg", "zz.jpg"]
    assert result.to_dict()["count"] == result.inputs["count"] == 6
    assert any("the mean is over the 6 images read" in note for note in result.notes)
    # The honest denominator: the same mean as the readable images alone, in any batching.
    for name in ("img2b.jpg", "zz.jpg"):
        (folder / name).unlink()
    clean = erf(net, folder_images(folder, (1, 16, 16)), batch_size=2)
    np.testing.assert_allclose(result.map, clean.map, rtol=1e-12, atol=0)
    assert clean.skipped == () and clean.to_dict()["skipped"] == []


def test_a_folder_of_only_unreadable_images(tmp_path):
    from rfmap.images import folder_images

    folder = tmp_path / "bad"
    folder.mkdir()
    for name in ("a.jpg", "b.png"):
        (folder / name).write_text("text")
    net = build_network(conv_stack([1]), torch.float64)
    with pytest.raises(RFMapError, match="no image could be read: all 2 were skipped"):
        erf(net, folder_images(folder, (1, 8, 8)), skip_unreadable=True, check_crop=True)
