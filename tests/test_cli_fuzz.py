"""Fuzzing ``rfmap model`` with ONNX files: 10,000 random argv, zero tracebacks.

Every argv either succeeds (exit 0, or 1 for a ``--measure`` mismatch, nothing on
stderr) or fails with exactly one line ``rfmap: error: ...`` on stderr and exit code 2.
Missing files, empty files, random bytes, truncated models and models with flipped
bytes are always errors; valid models must analyse.  Other frontends add their kinds of
SPEC to the ``files`` fixture and to the kinds :func:`_argv` draws.
"""

from __future__ import annotations

import contextlib
import io
import random

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import helper

import rfmap.cli as cli
from onnx_oracle import model, weight

N_ARGV = 10_000


def _valid_model():
    node = helper.make_node
    nodes = [
        node("Conv", ["x", "w"], ["a"], pads=[1, 1, 1, 1], name="conv"),
        node("MaxPool", ["a"], ["y"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
    ]
    return model(nodes, ["N", 1, "H", "W"], [weight("w", (2, 1, 3, 3))])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """``{kind: [paths]}``: valid, missing, empty, random bytes, truncated, flipped bytes."""
    root = tmp_path_factory.mktemp("fuzz")
    rng = random.Random(0)
    data = _valid_model().SerializeToString()
    out: dict[str, list[str]] = {"missing": [str(root / "missing.onnx"), str(root / "no/such")]}
    (root / "valid.onnx").write_bytes(data)
    (root / "valid.bin").write_bytes(data)  # any existing non-Python file is ONNX
    out["valid"] = [str(root / "valid.onnx"), str(root / "valid.bin")]
    (root / "empty.onnx").write_bytes(b"")
    out["empty"] = [str(root / "empty.onnx")]
    out["random"] = []
    for i in range(20):
        path = root / f"random{i}.onnx"
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))))
        out["random"].append(str(path))
    out["truncated"] = []
    for i, size in enumerate(sorted(rng.sample(range(1, len(data)), 30))):
        path = root / f"cut{i}.onnx"
        path.write_bytes(data[:size])
        out["truncated"].append(str(path))
    out["flipped"] = []
    for i in range(40):
        mutated = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        path = root / f"flip{i}.onnx"
        path.write_bytes(bytes(mutated))
        out["flipped"].append(str(path))
    return out


SIZES = [
    "1,8,8",
    "1,12,10",
    "3,8,8",
    "1,8",
    "1,1,1",
    "0,8,8",
    "1,-3,8",
    "a,b,c",
    "",
    "1,8,8,8",
    "1,99999999999,1",
    " 1, 6, 6",
    "1;8;8",
    "1,8,8,",
]
LAYERS = ["conv", "pool", "a", "y", "x", "nope", "", "conv/", "\u00e9", "pool" * 50]
UNITS = ["0,0", "1,2", "9,9", "-1,0", "x", "0", "0,0,0", "1,"]
METHODS = ["auto", "analytic", "measure", "guess"]


def _argv(rng: random.Random, files: dict[str, list[str]]) -> tuple[str, list[str]]:
    kind = rng.choices(
        ["missing", "empty", "random", "truncated", "flipped", "valid"], [3, 2, 4, 4, 4, 1]
    )[0]
    argv = ["model", rng.choice(files[kind])]
    if rng.random() < 0.95:
        argv += [rng.choice(["--input-size", "-s"]), rng.choice(SIZES)]
    if rng.random() < 0.3:
        argv += ["--layer", rng.choice(LAYERS)]
    if rng.random() < 0.3:
        argv += ["--unit", rng.choice(UNITS)]
    if rng.random() < 0.2:
        argv += ["--method", rng.choice(METHODS)]
    if rng.random() < (0.1 if kind == "valid" else 0.3):
        argv.append("--measure")
    for flag in ("--json", "--all"):
        if rng.random() < 0.3:
            argv.append(flag)
    if rng.random() < 0.05:
        argv += ["--weights", "w.pt"]
    if rng.random() < 0.03:
        argv.append(rng.choice(["--bogus", "extra", "-s"]))
    return kind, argv


def test_ten_thousand_argv_never_crash(files, monkeypatch):
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)  # the parser is stateless
    rng = random.Random(1)
    outcomes: dict[str, set[int]] = {}
    for _ in range(N_ARGV):
        kind, argv = _argv(rng, files)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(argv)
            except SystemExit as exc:  # argparse --help/--version only
                code = exc.code if isinstance(exc.code, int) else 2
        text = err.getvalue()
        assert "Traceback" not in text, argv
        if code == 2:
            assert text.startswith("rfmap: error: ") and text.count("\n") == 1, (argv, text)
        else:
            assert code in (0, 1) and text == "", (argv, code, text)
        if kind in ("missing", "empty", "random", "truncated"):
            assert code == 2, (argv, out.getvalue())
        outcomes.setdefault(kind, set()).add(code)
    assert outcomes["valid"] >= {0, 2}  # valid models do get analysed
