"""``rfmap model`` on JAX functions, Flax modules and Keras models."""

from __future__ import annotations

import json
import textwrap

import pytest

pytest.importorskip("jax", reason="the JAX frontend needs jax")
pytest.importorskip("flax", reason="the Flax frontend needs flax")

from rfmap.cli import main

MODELS = textwrap.dedent(
    """
    import jax.numpy as jnp
    import flax.linen as nn
    from jax import lax

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            y = nn.relu(nn.Conv(4, (3, 3), name="conv1")(x))
            return x + nn.Conv(4, (3, 3), name="conv2")(y)

    class Net(nn.Module):
        # conv 3 stride 2, SAME on 32 (RF 3, jump 2, padding 0: all of it on the right),
        # max-pool 2 (RF 5, jump 4), two 3x3 convs at jump 4 (RF 21, padding 8)
        @nn.compact
        def __call__(self, x):
            x = nn.Conv(4, (3, 3), strides=2, name="stem")(x)
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
            return Block(name="block")(x)

    def build():
        return Net()

    def audio(x):
        # a causal dilated convolution, channels last: RF 5, padding 4
        w = jnp.ones((3, x.shape[-1], 2), x.dtype)
        return lax.conv_general_dilated(x, w, (1,), [(4, 0)], rhs_dilation=(2,),
                                        dimension_numbers=("NWC", "WIO", "NWC"))

    def planar(x):
        w = jnp.ones((2, x.shape[1], 3, 3), x.dtype)
        return lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                        dimension_numbers=("NCHW", "OIHW", "NCHW"))

    def classifier(x):
        return Net().apply(VARIABLES, x).mean(axis=(1, 2))

    def broken(x):
        raise RuntimeError("boom")

    def loop(x):
        return lax.while_loop(lambda y: y.sum() < 10.0, lambda y: y * 2, x)

    def nothing():
        return 3.5

    import jax
    VARIABLES = jax.eval_shape(Net().init, jax.random.PRNGKey(0), jnp.ones((1, 16, 16, 3)))
    VARIABLES = jax.tree_util.tree_map(lambda s: jnp.ones(s.shape, s.dtype), VARIABLES)
    """
)


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "jax_models.py"
    path.write_text(MODELS)
    return lambda name: f"{path}:{name}"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_flax_text_report_and_gradient_check(capsys, spec):
    code, out, err = run(capsys, "model", spec("build"), "-s", "3,32,32", "-u", "1,2", "--measure")
    assert code == 0 and err == ""
    assert "receptive field: 21\n" in out and "stride (jump):   4\n" in out
    assert "padding:         8\n" in out
    table = out[out.index("node ") : out.index("\n\n", out.index("node "))]
    names = [line.split()[0] for line in table.splitlines()[2:]]
    assert names == [
        "input",
        "stem.conv",
        "max_pool",
        "block.conv1.conv",
        "block.conv2.conv",
        "block.add",
    ]
    # unit (1, 2) of the 8x8 grid starts at 4*1 - 8 = -4 and 4*2 - 8 = 0
    assert "unit (1, 2) reads input box [0, 17) x [0, 21) (unclipped: [-4, 17) x [0, 21))" in out
    assert "measured box [0, 17) x [0, 21) matches" in out


def test_module_path_as_layer_and_json(capsys, spec):
    argv = ["model", spec("build"), "-s", "3,32,32", "--layer", "block.conv1", "--json"]
    code, out, _ = run(capsys, *argv)
    d = json.loads(out)
    assert code == 0 and d["node"] == "block.conv1.conv"
    assert d["receptive_field"] == [13, 13] and d["padding"] == [4, 4]
    slash = json.loads(
        run(capsys, "model", spec("build"), "-s", "3,32,32", "-l", "block/conv1", "--json")[1]
    )
    assert slash == d


def test_functions_channels_and_methods(capsys, spec):
    code, out, _ = run(capsys, "model", spec("audio"), "-s", "2,40", "-u", "10", "--measure")
    assert code == 0 and "unit (10) reads input box [6, 11) (unclipped: [6, 11))" in out
    assert "measured box [6, 11) matches" in out
    argv = ["model", spec("planar"), "-s", "2,9,8", "--channels", "first", "--json"]
    d = json.loads(run(capsys, *argv)[1])
    assert d["grid"] == [7, 6] and d["receptive_field"] == [3, 3]
    argv = ["model", spec("audio"), "-s", "2,40", "--method", "measure", "--json"]
    d = json.loads(run(capsys, *argv)[1])
    assert d["method"] == "measured" and d["receptive_field"] == [5]
    code, out, _ = run(capsys, "model", spec("classifier"), "-s", "3,16,16", "--measure")
    assert code == 0 and "global" in out and "matches" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{}:broken", "-s", "3,8,8"], "the model failed on input shape [1, 8, 8, 3]"),
        (["{}:build", "-s", "3,8"], "on input shape [1, 8, 3]"),
        (["{}:nothing", "-s", "3,8,8"], "returned float, not a torch.nn.Module"),
        (["{}:build", "-s", "3,8,8", "--layer", "blok"], "did you mean 'block'"),
        (["{}:build", "-s", "3,16,16", "-u", "9,9"], "outside the output grid"),
        (["{}:build", "-s", "3,8,8", "-w", "w.pt"], "--weights loads PyTorch state dicts"),
        (["{}:loop", "-s", "3,8", "--method", "analytic"], "'while'"),
        (["{}:loop", "-s", "3,8"], "'while'"),  # measuring the whole model fails too
        (["{}:build", "-s", "3,8,8", "--channels", "middle"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, spec, args, message):
    argv = [a.format(spec("")[:-1]) if "{}" in a else a for a in args]
    code, out, err = run(capsys, "model", *argv)
    assert code == 2 and out == ""
    assert err.startswith("rfmap: error: ") and len(err.splitlines()) == 1
    assert message in err, err


def test_torch_models_refuse_channels_last(capsys, tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "net.py"
    path.write_text("import torch\ndef build():\n    return torch.nn.Conv1d(1, 1, 3)\n")
    code, _, err = run(capsys, "model", f"{path}:build", "-s", "1,9", "--channels", "last")
    assert code == 2 and "PyTorch models take channels first" in err
    code, out, _ = run(capsys, "model", f"{path}:build", "-s", "1,9", "--channels", "first")
    assert code == 0 and "receptive field: 3" in out


@pytest.mark.parametrize("example", ["flax_resnet.py", "keras_tcn.py"])
def test_docs_examples_print_what_the_docs_show(capsys, monkeypatch, example):
    import re
    import shlex
    from pathlib import Path

    if example.startswith("keras"):
        from rfmap.frontends.keras import prepare_keras_backend

        prepare_keras_backend()
        keras = pytest.importorskip("keras")
        if keras.backend.backend() != "jax":  # pragma: no cover
            pytest.skip("Keras runs on another backend in this process")
    root = Path(__file__).resolve().parents[1]
    text = (root / "docs" / "model.md").read_text()
    pattern = (
        r"```console\n\$ (rfmap model docs/examples/" + re.escape(example) + r"[^\n]*)\n(.*?)```"
    )
    found = re.search(pattern, text, re.S)
    assert found is not None, example
    monkeypatch.chdir(root)
    code, out, err = run(capsys, *shlex.split(found.group(1))[1:])
    assert code == 0 and err == ""
    assert out == found.group(2)
