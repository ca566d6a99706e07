"""Tests of ``rfmap model``: output, JSON keys, the gradient check, and bad input."""

from __future__ import annotations

import json
import textwrap

import pytest

torch = pytest.importorskip("torch", reason="rfmap model needs PyTorch")

from rfmap.cli import main  # noqa: E402

MODELS = textwrap.dedent(
    """
    import torch
    from torch import nn

    def build():
        # conv 3 p1 -> RF 3; maxpool 2 -> RF 4, jump 2; conv 3 p1 -> RF 4 + 2 * 2 = 8,
        # padding 1 + 0 + 1 * 2 = 3
        return nn.Sequential(
            nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3, padding=1)
        )

    def classifier():
        return nn.Sequential(build(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))

    def audio():
        return nn.Sequential(nn.Conv1d(1, 2, 5, stride=2, padding=2), nn.ReLU())

    def video():
        return nn.Conv3d(2, 3, (3, 5, 5), padding=(1, 2, 2))

    def not_a_module():
        return 42

    def broken():
        raise RuntimeError("boom")
    """
)


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "models.py"
    path.write_text(MODELS)
    return lambda name: f"{path}:{name}"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_text_report(capsys, spec):
    code, out, err = run(capsys, "model", spec("build"), "--input-size", "1,16,16")
    assert code == 0 and err == ""
    assert "receptive field: 8\n" in out
    assert "stride (jump):   2\n" in out
    assert "padding:         3\n" in out
    assert "aligned: yes" in out
    table = out[out.index("node ") :].splitlines()
    # rows are named after the modules; the ReLU reads its input as it is (no row)
    assert [line.split()[0] for line in table[2:]] == ["x", "0", "2", "3"]
    assert [line.split()[1] for line in table[2:]] == ["input", "Conv2d", "MaxPool2d", "Conv2d"]
    code, out_all, _ = run(capsys, "model", spec("build"), "-s", "1,16,16", "--all")
    assert "hidden" not in out_all
    # an input smaller than the receptive field: RF 8 on a 6x7 input, unit (1, 2) of the
    # 3x3 grid starts at 2 * 1 - 3 = -1 (rows) and 2 * 2 - 3 = 1 (columns)
    code, out, _ = run(capsys, "model", spec("build"), "-s", "1,6,7", "-u", "1,2", "--measure")
    assert code == 0 and "receptive field: 8   (larger than the input)\n" in out
    assert "unit (1, 2) reads input box [0, 6) x [1, 7) (unclipped: [-1, 7) x [1, 9))" in out
    assert "measured box [0, 6) x [1, 7) matches" in out


def test_json_has_the_issue_keys(capsys, spec):
    code, out, _ = run(capsys, "model", spec("build"), "--input-size", "1,16,12", "--json")
    d = json.loads(out)
    assert code == 0
    assert d["receptive_field"] == [8, 8] and d["stride"] == [2, 2] and d["padding"] == [3, 3]
    assert d["min_receptive_field"] == [8, 8] and d["aligned"] is True
    assert [row["name"] for row in d["layers"]] == ["x", "0", "2", "3"]
    assert d["layers"][1]["receptive_field"] == [3, 3] and d["layers"][2]["stride"] == [2, 2]
    assert d["shape"] == [1, 2, 8, 6] and d["grid"] == [8, 6]
    assert "measured" not in d


def test_unit_box_and_gradient_check(capsys, spec):
    argv = ["model", spec("build"), "-s", "1,16,16", "--unit", "0,0", "--measure"]
    code, out, _ = run(capsys, *argv)
    assert code == 0
    # unit 0 starts at -padding: [-3, 5); inside the image, [0, 5)
    assert "unit (0, 0) reads input box [0, 5) x [0, 5) (unclipped: [-3, 5) x [-3, 5))" in out
    assert "measured box [0, 5) x [0, 5) matches the analytic box" in out
    code, out, _ = run(capsys, *argv, "--json")
    d = json.loads(out)
    assert d["measured"] == {
        "unit": [0, 0],
        "box": [[0, 5], [0, 5]],
        "analytic_box": [[0, 5], [0, 5]],
        "match": True,
    }
    assert d["unit"]["unclipped_box"] == [[-3, 5], [-3, 5]]


def test_measure_mismatch_exits_1(capsys, spec, monkeypatch):
    import rfmap.measure

    real = rfmap.measure.measure_rf

    def shifted(*args, **kwargs):
        m = real(*args, **kwargs)
        return type(m)(m.node, m.input_size, m.grid, m.unit, ((1, 5), (0, 5)), m.mask)

    monkeypatch.setattr(rfmap.measure, "measure_rf", shifted)
    code, out, _ = run(capsys, "model", spec("build"), "-s", "1,16,16", "-u", "0,0", "--measure")
    assert code == 1 and "DIFFERS" in out


def test_global_output_and_torchvision_spec(capsys, spec):
    code, out, _ = run(capsys, "model", spec("classifier"), "-s", "1,16,20", "--json", "--measure")
    d = json.loads(out)
    assert code == 0 and d["is_global"] and d["measured"]["match"]
    assert d["measured"]["box"] == [[0, 16], [0, 20]]
    # global pooling + Linear: the whole input, with no padding and no stride
    assert d["receptive_field"] == [16, 20] and d["padding"] == [0, 0] and d["stride"] == [0, 0]
    # on an unbounded input: RF 8 at jump 2 over the 8x10 grid -> 8 + 7 * 2, 8 + 9 * 2
    assert d["unbounded_receptive_field"] == [22, 26]
    assert d["min_receptive_field"] == [None, None] and d["local_receptive_field"] == [None, None]
    last = d["layers"][-1]
    assert last["receptive_field"] == [16, 20] and last["global"] == [True, True]
    code, out, _ = run(capsys, "model", spec("classifier"), "-s", "1,16,20")
    expected = (
        "receptive field: 16x20   (global: reads the whole input; "
        "hull of all paths on an unbounded input: 22x26)\n"
    )
    assert expected in out and "padding:         0\n" in out
    argv = ["model", "torchvision.models:resnet18", "-s", "3,64,64", "--layer", "layer1", "--json"]
    code, out, _ = run(capsys, *argv)
    d = json.loads(out)
    # stem RF 11, jump 4, padding 5; four 3x3 convs at jump 4 add 8 (RF) and 4 (padding) each
    assert code == 0 and d["receptive_field"] == [43, 43] and d["padding"] == [21, 21]


def test_layer_by_module_and_fx_node_name(capsys, spec):
    # nn.Sequential: module '2' (the max-pool) is fx node '_2'; RF 3 + 1 = 4, jump 2
    by_module = json.loads(
        run(capsys, "model", spec("build"), "-s", "1,12,12", "-l", "2", "--json")[1]
    )
    by_node = json.loads(
        run(capsys, "model", spec("build"), "-s", "1,12,12", "-l", "_2", "--json")[1]
    )
    assert by_module == by_node
    assert by_node["node"] == "2" and by_node["receptive_field"] == [4, 4]
    assert by_node["stride"] == [2, 2] and by_node["padding"] == [1, 1]


def test_audio_and_video_units(capsys, spec):
    # 1D: conv 5 stride 2 padding 2 -> unit 3 reads [6 - 2, 6 + 3) = [4, 9)
    code, out, _ = run(capsys, "model", spec("audio"), "-s", "1,30", "-u", "3", "--measure")
    assert code == 0 and "unit (3) reads input box [4, 9) (unclipped: [4, 9))" in out
    assert "measured box [4, 9) matches" in out
    # 3D, non-cubic: conv (3, 5, 5) padding (1, 2, 2) -> unit (0, 2, 9) reads
    # [-1, 2) x [0, 5) x [7, 12), clipped to the 4x6x11 input
    argv = ["model", spec("video"), "-s", "2,4,6,11", "-u", "0,2,9", "--measure", "--json"]
    code, out, _ = run(capsys, *argv)
    d = json.loads(out)
    assert code == 0 and d["receptive_field"] == [3, 5, 5]
    assert d["unit"]["box"] == [[0, 2], [0, 5], [7, 11]]
    assert d["unit"]["unclipped_box"] == [[-1, 2], [0, 5], [7, 12]]
    assert d["measured"]["match"] is True


def test_weights(capsys, spec, tmp_path):
    weights = tmp_path / "w.pt"
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(2, 2, 3, padding=1),
    )
    torch.save({"state_dict": model.state_dict()}, weights)
    code, _, err = run(capsys, "model", spec("build"), "-s", "1,8,8", "--weights", str(weights))
    assert code == 0 and err == ""
    wrong = tmp_path / "wrong.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), wrong)
    code, _, err = run(capsys, "model", spec("build"), "-s", "1,8,8", "-w", str(wrong))
    assert code == 2 and "do not fit" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no_such_module_xyz:build", "-s", "1,8,8"], "cannot import module 'no_such_module_xyz'"),
        (["{}:missing", "-s", "1,8,8"], "has no attribute 'missing'"),
        (["{}:not_a_module", "-s", "1,8,8"], "returned int, not a torch.nn.Module"),
        (["{}:broken", "-s", "1,8,8"], "calling"),
        (["nocolon", "-s", "1,8,8"], "model SPEC must be"),
        (["{}:build", "-s", "1,16"], "has 1 spatial axes, the model needs 2"),
        (["{}:build", "-s", "1,2,3,4,5"], "input size must be"),
        (["{}:build", "-s", "a,b,c"], "comma-separated integers"),
        (["{}:build", "-s", "3,8,8"], "forward failed on input size [3, 8, 8]"),
        (["{}:build", "-s", "1,1,1"], "forward failed on input size [1, 1, 1]"),
        (["{}:build", "-s", "1,8,8", "--layer", "nope"], "no layer named 'nope'"),
        (["{}:build", "-s", "1,8,8", "--unit", "9,9"], "outside the output grid"),
        (["{}:build", "-s", "1,8,8", "--unit", "1,x"], "unit must be comma-separated"),
        (["{}:classifier", "-s", "1,8,8", "--unit", "0,0"], "has no spatial grid"),
        (["{}:build", "-s", "1,8,8", "--method", "guess"], "invalid choice"),
        (["{}:build", "-s", "1,8,8", "-w", "missing.pt"], "weights file not found"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, spec, args, message):
    argv = [a.format(spec("")[:-1]) if "{}" in a else a for a in args]
    code, out, err = run(capsys, "model", *argv)
    assert code == 2 and out == ""
    assert err.startswith("rfmap: error: ") and len(err.splitlines()) == 1
    assert message in err
    assert "Traceback" not in err


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["model", "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "rfmap model torchvision.models:resnet50 --input-size 3,224,224" in out
    assert "exit status" in out


def test_measure_finds_channels_last_grids(capsys):
    # torchvision's swin_t keeps its features channels last (N, H, W, C): the gradient
    # check reads the unit on the analysis' grid (28x28 here), not on (W, C)
    code, out, err = run(
        capsys,
        "model",
        "torchvision.models:swin_t",
        "--input-size",
        "3,112,112",
        "--layer",
        "features.1",
        "--unit",
        "10,13",
        "--measure",
    )
    assert err == ""
    assert "measured box [28, 84) x [28, 84) matches the analytic box [28, 84) x [28, 84)" in out
    assert code == 0
