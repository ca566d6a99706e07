"""Tests of rfmap.loading: model SPECs, state dicts and input sizes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import pytest

from rfmap.errors import ModelError
from rfmap.loading import load_model, parse_input_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3,224,224", (3, 224, 224)), (" 1, 16000 ", (1, 16000)), ((3, 8, 9, 10), (3, 8, 9, 10))],
)
def test_parse_input_size(text, expected):
    assert parse_input_size(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3", "C,L (1D)"),
        ("3,1,2,3,4", "C,L (1D)"),
        ("3,0,4", "positive"),
        ("3,x,4", "comma-separated integers"),
        ("3.0,4,4", "comma-separated integers"),
        (3, "comma-separated integers"),
        ((3, True, 4), "comma-separated integers"),
    ],
)
def test_parse_input_size_errors(text, message):
    with pytest.raises(ModelError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_input_size(text)


def test_parse_input_size_checks_the_model_dims():
    assert parse_input_size("3,8,8", spatial_dims=2) == (3, 8, 8)
    with pytest.raises(ModelError, match="has 1 spatial axes, the model needs 2"):
        parse_input_size("3,8", spatial_dims=2)


torch = pytest.importorskip("torch", reason="loading models needs PyTorch")


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(
        textwrap.dedent(
            """
            import torch
            def small():
                return torch.nn.Conv1d(1, 2, 3)
            instance = torch.nn.Conv1d(1, 1, 5)
            value = 3
            """
        )
    )
    return path


def test_load_from_module_and_file(model_file):
    assert isinstance(load_model("torch.nn:Identity"), torch.nn.Identity)
    model = load_model(f"{model_file}:small")
    assert isinstance(model, torch.nn.Conv1d) and not model.training
    assert load_model(f"{model_file}:instance").kernel_size == (5,)


def test_load_weights(model_file, tmp_path):
    source = torch.nn.Conv1d(1, 2, 3)
    nested = [{key: source.state_dict(), "epoch": 3} for key in ("state_dict", "model")]
    for payload in (source.state_dict(), *nested):
        path = tmp_path / "w.pt"
        torch.save(payload, path)
        model = load_model(f"{model_file}:small", path)
        assert torch.equal(model.weight, source.weight)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("torch.nn", "must be 'package.module:callable'"),
        ("no_such_pkg_abc:f", "cannot import module 'no_such_pkg_abc'"),
        ("{file}:nothing", "has no attribute 'nothing'"),
        ("{file}:value", "is not callable"),
        ("missing_dir/x.py:f", "model file not found"),
    ],
)
def test_load_errors(model_file, spec, message):
    with pytest.raises(ModelError, match=message):
        load_model(spec.format(file=model_file))


def test_weights_errors(model_file, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot load weights"):
        load_model(f"{model_file}:small", bad)
    listed = tmp_path / "list.pt"
    torch.save([1, 2], listed)
    with pytest.raises(ModelError, match="does not hold a state dict"):
        load_model(f"{model_file}:small", listed)
    with pytest.raises(ModelError, match="weights file not found"):
        load_model(f"{model_file}:small", tmp_path / "none.pt")


def test_weights_that_do_not_fit_say_why_in_one_line(model_file, tmp_path):
    whole = tmp_path / "whole.pt"
    torch.save(torch.nn.Conv1d(1, 2, 3), whole)  # a pickled module, not a state dict
    with pytest.raises(ModelError, match=r"pickled objects .* save model\.state_dict\(\)") as e:
        load_model(f"{model_file}:small", whole)
    other = tmp_path / "other.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), other)
    with pytest.raises(ModelError, match="do not fit") as e2:
        load_model(f"{model_file}:small", other)
    assert "missing weight" not in str(e2.value)  # same names, other shapes
    assert "wrong shape weight [2, 2] (the model has [2, 1, 3])" in str(e2.value)
    extra = tmp_path / "extra.pt"
    torch.save({"weight": torch.zeros(2, 1, 3), "scale": torch.ones(1)}, extra)
    with pytest.raises(ModelError, match="missing bias; unexpected scale") as e3:
        load_model(f"{model_file}:small", extra)
    for error in (e, e2, e3):
        assert "\n" not in str(error.value)


def test_import_errors_are_one_line(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('first line\\nsecond line')\n")
    with pytest.raises(ModelError, match=r"RuntimeError: first line$"):
        load_model(f"{broken}:f")


def test_weights_that_are_not_a_checkpoint_say_so(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    with pytest.raises(ModelError, match=r"not a PyTorch checkpoint.*torch\.save"):
        load_model("torch.nn:Identity", text)


def _weights_cases(tmp_path):
    """Files torch.load(weights_only=True) refuses, and what rfmap must call them."""
    conv = torch.nn.Conv2d(1, 1, 3)
    cases = {}
    path = tmp_path / "whole_p4.pt"
    torch.save(conv, path, pickle_protocol=4)  # PyTorch warns about the protocol, then fails
    cases[path] = r"saved with pickle protocol 4, which torch\.load\(weights_only=True\) cannot"
    path = tmp_path / "state_p4.pt"
    torch.save(conv.state_dict(), path, pickle_protocol=4)  # a state dict: not "pickled objects"
    cases[path] = r"saved with pickle protocol 4"
    path = tmp_path / "whole.pt"
    torch.save(conv, path)
    cases[path] = r"holds pickled objects \(e\.g\. a whole model"
    for name, text in [("notes.json", '{"a": 1}\n'), ("readme.pth", "hello\n"), ("x.pt", "abc")]:
        path = tmp_path / name
        path.write_text(text)  # '{' reads as a pickle opcode: once called "pickled objects"
        cases[path] = r"it is a text file, not a PyTorch checkpoint; save one with torch\.save"
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    cases[path] = r"the file is empty"
    return cases


def test_refused_weights_say_what_the_file_is_without_pytorch_warnings(tmp_path, recwarn):
    for path, message in _weights_cases(tmp_path).items():
        with pytest.raises(ModelError, match=message) as info:
            load_model("torch.nn:Identity", path)
        assert "\n" not in str(info.value)
    assert [str(w.message) for w in recwarn] == []  # PyTorch's UserWarning is not passed on


def test_refused_weights_are_one_stderr_line_on_the_command_line(tmp_path):
    """``rfmap model`` in a fresh interpreter, every warning shown: what a user sees."""
    model = tmp_path / "net.py"
    model.write_text("import torch\n\ndef build():\n    return torch.nn.Conv2d(1, 1, 3)\n")
    cases = _weights_cases(tmp_path)
    script = tmp_path / "run.py"
    script.write_text(
        "import contextlib, io, json, sys, warnings\n"
        "warnings.simplefilter('always')\n"  # stricter than Python's default filters
        "from rfmap.cli import main\n"
        "results = []\n"
        "for path in sys.argv[2:]:\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err):\n"
        "        code = main(['model', sys.argv[1], '--input-size', '1,8,8', '--weights', path])\n"
        "    results.append([code, err.getvalue()])\n"
        "print(json.dumps(results))\n"
    )
    argv = [sys.executable, str(script), f"{model}:build", *map(str, cases)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert done.stderr == ""
    for (code, err), message in zip(json.loads(done.stdout), cases.values(), strict=True):
        lines = err.splitlines()
        assert code == 2 and len(lines) == 1, err
        assert lines[0].startswith("rfmap: error: cannot load weights")
        assert re.search(message, lines[0]), lines[0]


def test_a_state_dict_loads_without_warnings(tmp_path, recwarn):
    path = tmp_path / "ok.pt"
    torch.save(torch.nn.Conv2d(1, 1, 3).state_dict(), path)
    net = tmp_path / "n.py"
    net.write_text("import torch\n\ndef build():\n    return torch.nn.Conv2d(1, 1, 3)\n")
    loaded = load_model(f"{net}:build", path)
    assert isinstance(loaded, torch.nn.Conv2d) and [str(w.message) for w in recwarn] == []
