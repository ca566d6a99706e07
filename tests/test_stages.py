"""Tests of rfmap.stages and rfmap.trace.model_rfs/model_stages: several layers at once.

Oracles: fields computed by hand (torchvision ResNet-18), timm's own ``feature_info``
reductions (independent metadata), the single-layer analysis ``model_rf``, and the
gradient (rfmap.measure) for the measured fallback.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch", reason="model tracing needs PyTorch")
torchvision = pytest.importorskip("torchvision", reason="backbone tests need torchvision")
timm = pytest.importorskip("timm", reason="stage tests use timm's feature_info")

from rfmap.cli import main  # noqa: E402
from rfmap.errors import InvalidSpecError, ModelError  # noqa: E402
from rfmap.stages import LayersRF  # noqa: E402
from rfmap.trace import model_rf, model_rfs, model_stages  # noqa: E402

nn = torch.nn


def _fields(r):
    return (r.node, r.grid, r.receptive_field, r.stride, r.padding, r.global_axes, r.exact)


def test_several_layers_equal_one_at_a_time():
    model = torchvision.models.resnet18()
    layers = ["layer1", "layer2.0.conv1", "layer3", None]
    several = model_rfs(model, (3, 64, 48), layers)
    assert isinstance(several, LayersRF)
    assert several.names() == ["layer1", "layer2.0.conv1", "layer3", "output"]
    for name, layer in zip(several.names(), layers, strict=True):
        assert _fields(several[name]) == _fields(model_rf(model, (3, 64, 48), layer))
    with pytest.raises(InvalidSpecError, match="no layer named 'nope'"):
        several["nope"]


def test_torchvision_resnet_stages_by_hand():
    # conv1 7/2: 7; maxpool 3/2: 11, jump 4; layer1 four 3x3: 43; layer2 stride 2 then
    # three 3x3 at jump 8: 51 + 48 = 99; layer3: 115 + 96 = 211; layer4: 243 + 192 = 435
    r = model_stages(torchvision.models.resnet18(), (3, 224, 224))
    assert r.chosen_by == "the last module at each stride"
    assert r.names() == ["relu", "layer1", "layer2", "layer3", "layer4"]
    assert [f.receptive_field[0] for _, f in r.layers] == [7, 43, 99, 211, 435]
    assert [f.stride for _, f in r.layers] == [(2, 2), (4, 4), (8, 8), (16, 16), (32, 32)]
    assert [f.padding[0] for _, f in r.layers] == [3, 21, 49, 105, 217]
    assert not any(f.is_global for _, f in r.layers)


def test_generic_stages_skip_branches_and_residual_insides():
    # the last module at stride 2 is inside a residual block (not every path goes
    # through it) and a side branch: the stage is the block's output
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(1, 1, 3, padding=1)
            self.side = nn.Conv1d(1, 1, 5, padding=2)

        def forward(self, x):
            return x + self.conv(x) + self.side(x)

    model = nn.Sequential(nn.Conv1d(1, 1, 3, stride=2, padding=1), Block(), nn.Conv1d(1, 1, 1))
    r = model_stages(model, (1, 32))
    # Block reads conv(3, jump 2) then 5: 3 + 4 * 2 = 11; the 1x1 conv keeps it
    assert r.names() == ["2"]
    assert r["2"].receptive_field == (11,) and r["2"].stride == (2,)


@pytest.mark.parametrize(
    "name",
    ["resnet18", "efficientnet_b0", "convnext_atto", "vit_tiny_patch16_224", "regnetx_002"],
)
def test_timm_stages_follow_feature_info(name):
    model = timm.create_model(name, pretrained=False)
    size = model.pretrained_cfg["input_size"]
    r = model_stages(model, size)
    assert r.chosen_by == "timm feature_info"
    info = model.feature_info
    assert r.names() == [d["module"] for d in info]
    # timm's reduction is the stride of the local paths (of the tokens for a ViT)
    for (_, f), d in zip(r.layers, info, strict=True):
        assert f.stride == (d["reduction"],) * 2, (name, d)
        assert f.method == "analytic"


def test_timm_features_only_stages_are_the_outputs():
    model = timm.create_model("resnet18", pretrained=False, features_only=True)
    r = model_stages(model, (3, 64, 64))
    assert r.chosen_by == "the outputs (timm features_only)"
    assert r.names() == model.feature_info.module_name()
    assert [f.stride[0] for _, f in r.layers] == model.feature_info.reduction()
    assert [f.receptive_field[0] for _, f in r.layers] == [7, 43, 99, 211, 435]


def test_several_outputs_are_the_stages():
    class Pyramid(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 1, 3, stride=2, padding=1)
            self.b = nn.Conv2d(1, 1, 3, stride=2, padding=1)

        def forward(self, x):
            p1 = self.a(x)
            return {"p1": p1, "p2": self.b(p1)}

    r = model_stages(Pyramid(), (1, 16, 16))
    assert r.chosen_by == "the outputs"
    assert r.names() == ["output.0", "output.1"]
    assert [f.receptive_field for _, f in r.layers] == [(3, 3), (7, 7)]


def test_measured_whole_model_layers_are_measured_one_by_one():
    model = nn.Sequential(nn.Conv1d(1, 1, 3), nn.Conv1d(1, 1, 3, stride=2))
    r = model_rfs(model, (1, 40), ["0", None], method="measure")
    assert [f.method for _, f in r.layers] == ["measured", "measured"]
    assert [f.receptive_field for _, f in r.layers] == [(3,), (5,)]
    with pytest.raises(ModelError, match="name the layers"):
        model_stages(model, (1, 40), method="measure")
    with pytest.raises(InvalidSpecError, match="sequence of names"):
        model_rfs(model, (1, 40), "0")
    with pytest.raises(InvalidSpecError, match="at least one"):
        model_rfs(model, (1, 40), [])


def test_to_dict_and_text():
    model = torchvision.models.resnet18()
    r = model_rfs(model, (3, 64, 64), ["layer1", None])
    d = json.loads(json.dumps(r.to_dict()))
    assert d["input_size"] == [64, 64] and d["chosen_by"] == "layers"
    first, out = d["layers"]
    assert first["layer"] == "layer1" and first["receptive_field"] == [43, 43]
    assert first["stride"] == [4, 4] and first["padding"] == [21, 21]
    assert first["global_axes"] == [False, False] and first["grid"] == [16, 16]
    assert out["layer"] == "output" and out["is_global"] and out["global_axes"] == [True, True]
    text = str(r)
    assert "\nlayer1  16x16  43       4       21  -  " in text
    assert "output" in text and "axes 0,1" in text


# -- the command line ---------------------------------------------------------------------


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_several_layers_and_stages(capsys):
    code, out, err = run(
        capsys, "model", "torchvision.models:resnet18", "-s", "3,64,64", "--layer", "layer1, layer2"
    )
    assert code == 0 and err == ""
    assert "layer1" in out and "layer2" in out and "receptive fields of 2 layers" in out
    code, out, err = run(
        capsys, "model", "torchvision.models:resnet18", "-s", "3,224,224", "--stages", "--json"
    )
    assert code == 0
    rows = json.loads(out)["layers"]
    assert [r["layer"] for r in rows] == ["relu", "layer1", "layer2", "layer3", "layer4"]
    assert [r["receptive_field"][0] for r in rows] == [7, 43, 99, 211, 435]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stages", "--layer", "layer1"], "cannot be combined"),
        (["--stages", "--unit", "0,0"], "--unit takes one layer, not --stages"),
        (["--layer", "layer1,layer2", "--measure"], "--measure takes one layer"),
        (["--layer", "layer1,,layer2"], "empty layer name"),
        (["--layer", "layer1,nope"], "no layer named 'nope'"),
    ],
)
def test_cli_several_layers_errors(capsys, args, message):
    code, out, err = run(capsys, "model", "torchvision.models:resnet18", "-s", "3,32,32", *args)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1
