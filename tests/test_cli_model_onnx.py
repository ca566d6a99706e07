"""``rfmap model FILE.onnx``: output, JSON, layers, the perturbation check, and bad input."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import helper

from onnx_oracle import floats, model, weight
from rfmap.cli import main

node = helper.make_node


@pytest.fixture
def net(tmp_path):
    """conv 3 p1 -> maxpool 2 -> conv 3 p1 (RF 8, jump 2, padding 3), and a classifier."""
    nodes = [
        node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1], name="conv1"),
        node("Relu", ["a"], ["r"], name="relu1"),
        node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
        node("Conv", ["p", "w2"], ["y"], pads=[1, 1, 1, 1], name="conv2"),
    ]
    inits = [weight("w1", (2, 1, 3, 3)), weight("w2", (2, 2, 3, 3))]
    path = tmp_path / "net.onnx"
    path.write_bytes(model(nodes, ["N", 1, "H", "W"], inits).SerializeToString())
    head = [*nodes, node("GlobalAveragePool", ["y"], ["g"]), node("Flatten", ["g"], ["f"])]
    head[-1].output[0] = "y2"
    classifier = model(head, ["N", 1, "H", "W"], inits, output="y2")
    (tmp_path / "classifier.onnx").write_bytes(classifier.SerializeToString())
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_text_report(capsys, net):
    code, out, err = run(capsys, "model", net, "--input-size", "1,16,16")
    assert code == 0 and err == ""
    assert "receptive field: 8\n" in out
    assert "stride (jump):   2\n" in out
    assert "padding:         3\n" in out
    table = out[out.index("node ") :].splitlines()
    assert [line.split()[:2] for line in table[2:]] == [
        ["x", "input"],
        ["conv1", "Conv"],
        ["pool", "MaxPool"],
        ["conv2", "Conv"],
    ]


def test_layer_unit_measure_and_json(capsys, net):
    argv = ["model", net, "-s", "1,16,16", "--layer", "pool", "--unit", "1,2", "--measure"]
    code, out, err = run(capsys, *argv)
    assert code == 0 and err == ""
    # pool unit (1, 2) reads conv1 units 2..3 x 4..5, i.e. input rows [1, 5) x [3, 7)
    assert "unit (1, 2) reads input box [1, 5) x [3, 7) (unclipped: [1, 5) x [3, 7))" in out
    assert (
        "perturbation check (onnxruntime), unit (1, 2): measured box [1, 5) x [3, 7) matches" in out
    )
    code, out, _ = run(capsys, *argv, "--json")
    d = json.loads(out)
    assert code == 0 and d["node"] == "pool" and d["receptive_field"] == [4, 4]
    assert d["measured"] == {
        "unit": [1, 2],
        "box": [[1, 5], [3, 7]],
        "analytic_box": [[1, 5], [3, 7]],
        "match": True,
    }


def test_measure_method_and_a_file_without_the_extension(capsys, net, tmp_path):
    other = tmp_path / "model.bin"
    other.write_bytes(net.read_bytes())
    code, out, _ = run(capsys, "model", other, "-s", "1,32,32", "--method", "measure", "--json")
    d = json.loads(out)
    assert code == 0 and d["method"] == "measured"
    assert (d["receptive_field"], d["stride"], d["padding"]) == ([8, 8], [2, 2], [3, 3])


def test_an_unknown_operator_is_flagged(capsys, tmp_path):
    grid = floats("grid", [0.0] * 2 * 3 * 4)
    grid.dims[:] = [1, 3, 4, 2]
    nodes = [node("GridSample", ["x", "grid"], ["y"], name="sample")]
    path = tmp_path / "grid.onnx"
    path.write_bytes(model(nodes, [1, 1, 3, 4], [grid]).SerializeToString())
    code, out, _ = run(capsys, "model", path, "-s", "1,3,4", "--all")
    assert code == 0
    assert "measured" in out and "'GridSample'" in out
    code, out, err = run(capsys, "model", path, "-s", "1,3,4", "--method", "analytic")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "ONNX operator 'GridSample'" in err


@pytest.mark.parametrize(
    ("args", "content", "message"),
    [
        (["missing.onnx", "-s", "1,8,8"], None, "ONNX file not found"),
        (["empty.onnx", "-s", "1,8,8"], b"", "is empty"),
        (["junk.onnx", "-s", "1,8,8"], b"\x08\x96\x01junk\xff\xfe", "is not an ONNX model"),
        (["{net}", "-s", "3,8,8"], None, "input size 3,8,8 does not fit"),
        (["{net}", "-s", "1,8"], None, "the model input 'x' has 4 dims"),
        (["{net}", "-s", "1,8,8", "-w", "w.pt"], None, "--weights is for PyTorch models"),
        (["{net}", "-s", "1,8,8", "--layer", "pol"], None, "did you mean 'pool'"),
        (["{net}", "-s", "1,8,8", "--unit", "9,9"], None, "outside the output grid"),
        (["{net}", "-s", "a,b"], None, "comma-separated integers"),
        (["{classifier}", "-s", "1,8,8", "--unit", "0,0"], None, "has no spatial grid"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, net, tmp_path, args, content, message):
    argv = [a.format(net=net, classifier=tmp_path / "classifier.onnx") for a in args]
    if content is not None:
        (tmp_path / argv[0]).write_bytes(content)
    if not argv[0].startswith("/"):
        argv[0] = str(tmp_path / argv[0])
    code, out, err = run(capsys, "model", *argv)
    assert code == 2 and out == ""
    assert err.startswith("rfmap: error: ") and len(err.splitlines()) == 1
    assert message in err and "Traceback" not in err


def test_help_mentions_onnx(capsys):
    with pytest.raises(SystemExit):
        main(["model", "--help"])
    out = capsys.readouterr().out
    assert "model.onnx" in out and "rfmap[onnx]" in out
