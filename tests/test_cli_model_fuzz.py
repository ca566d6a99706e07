"""Random ``rfmap model`` command lines on JAX and Flax specs: no traceback, ever.

Each argv mixes good and bad SPECs (missing, empty, binary and broken files, functions
that fail, return nothing or loop on values), input sizes, layers, units and options.
Every run must end with exit code 0, 1 or 2, and an error must be one line on stderr.
The default budget keeps the suite fast; ``RFMAP_FUZZ_ARGV=10000`` (or the ``thorough``
hypothesis profile) runs the full ten thousand.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import textwrap

import pytest

pytest.importorskip("jax", reason="the JAX frontend needs jax")
pytest.importorskip("flax", reason="the Flax frontend needs flax")

from rfmap.cli import main

ARGV = int(
    os.environ.get(
        "RFMAP_FUZZ_ARGV", 10_000 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 1_000
    )
)

MODELS = textwrap.dedent(
    """
    import jax.numpy as jnp
    import flax.linen as nn
    from jax import lax

    def conv1d(x):
        w = jnp.ones((3, x.shape[-1], 2), x.dtype)
        return lax.conv_general_dilated(x, w, (2,), "SAME", rhs_dilation=(1,),
                                        dimension_numbers=("NWC", "WIO", "NWC"))

    def cumsum(x):
        return jnp.cumsum(x, axis=1) * 2

    def planar(x):
        w = jnp.ones((2, x.shape[1], 3, 3), x.dtype)
        return lax.conv_general_dilated(x, w, (1, 1), "VALID",
                                        dimension_numbers=("NCHW", "OIHW", "NCHW"))

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.max_pool(nn.Conv(2, (3,) * (x.ndim - 2), name="conv")(x), (2,) * (x.ndim - 2))

    def build():
        return Net()

    def broken(x):
        raise RuntimeError("boom\\nsecond line")

    def shape_error(x):
        return x.reshape(7)

    def returns_none(x):
        return None

    def constant(x):
        return jnp.zeros(3)

    def loop(x):
        return lax.while_loop(lambda y: y.sum() < 10.0, lambda y: y * 2, x)

    def nothing():
        return 3.5

    def raises():
        raise ValueError("no model here")

    NOT_CALLABLE = 7
    """
)

SIZES = [
    "2,12",
    "3,8,8",
    "1,5,6,7",
    "2,1",
    "3,1,1",
    "0,5",
    "-1,5",
    "2,x",
    "",
    ",",
    "2,,3",
    "3,8,8,8,8",
    "99999999999999999999,3",
    "2.5,3",
    " 2, 9 ",
    "3,40",
    "1,3,3",
    "2,9,1",
]
LAYERS = ["conv", "Conv_0", "nope", "", "block/conv1", "input", "cumsum", "max_pool", "conv/"]
UNITS = ["0", "1,2", "-1", "x", "100,100", "0,0,0", "", "3", "0,0", "1,1,1"]
JUNK = ["--bogus", "-z", "extra", "--unit", "--layer", "-s", "--json=1", "--measure=yes"]


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    good = root / "models.py"
    good.write_text(MODELS)
    (root / "empty.py").write_text("")
    (root / "syntax.py").write_text("def f(:\n")
    (root / "binary.py").write_bytes(bytes(random.Random(0).randrange(256) for _ in range(200)))
    (root / "imports_missing.py").write_text("import no_such_module_xyz\n")
    names = [
        "conv1d",
        "cumsum",
        "planar",
        "Net",
        "build",
        "broken",
        "shape_error",
        "returns_none",
        "constant",
        "loop",
        "nothing",
        "raises",
        "NOT_CALLABLE",
        "missing",
    ]
    out = [f"{good}:{name}" for name in names]
    out += [f"{root / f}:f" for f in ("empty.py", "syntax.py", "binary.py", "imports_missing.py")]
    out += [f"{root}/nofile.py:f", f"{root}:f", "nocolon", ":", "a:b:c", "no_such_module_xyz:f"]
    out += ["os:getcwd", "math:sqrt", f"{good}:", ":conv1d"]
    return out


def random_argv(rng: random.Random, specs: list[str]) -> list[str]:
    argv = ["model"]
    if rng.random() < 0.95:
        argv.append(rng.choice(specs))
    options: list[list[str]] = []
    if rng.random() < 0.9:
        options.append(["-s" if rng.random() < 0.5 else "--input-size", rng.choice(SIZES)])
    if rng.random() < 0.3:
        options.append(["--layer", rng.choice(LAYERS)])
    if rng.random() < 0.3:
        options.append(["--unit", rng.choice(UNITS)])
    for flag, p in (("--measure", 0.15), ("--json", 0.3), ("--all", 0.2)):
        if rng.random() < p:
            options.append([flag])
    if rng.random() < 0.2:
        options.append(["--method", rng.choice(["auto", "analytic", "measure", "guess"])])
    if rng.random() < 0.2:
        options.append(["--channels", rng.choice(["first", "last", "middle"])])
    if rng.random() < 0.05:
        options.append(["-w", rng.choice(["missing.pt", specs[0].rpartition(":")[0]])])
    if rng.random() < 0.1:
        options.append([rng.choice(JUNK)])
    rng.shuffle(options)
    for option in options:
        argv += option
    return argv


def test_random_model_command_lines_never_raise(specs):
    rng = random.Random(20240611)
    codes: dict[int, int] = {}
    for _ in range(ARGV):
        argv = random_argv(rng, specs)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's --help/--version only
                code = exc.code if isinstance(exc.code, int) else 2
        text = err.getvalue()
        assert "Traceback" not in text + out.getvalue(), argv
        assert code in (0, 1, 2), (argv, code)
        if code == 2:
            lines = text.splitlines()
            assert len(lines) == 1 and lines[0].startswith("rfmap: error: "), (argv, text)
        codes[code] = codes.get(code, 0) + 1
    # both outcomes are exercised
    assert codes.get(0, 0) > ARGV // 50 and codes.get(2, 0) > ARGV // 2, codes
