"""Keras 3 models (JAX backend): a keras-tcn TCN against its gradient and ``rfmap tcn``."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("jax", reason="the Keras frontend traces through JAX")
from rfmap.frontends.keras import prepare_keras_backend

prepare_keras_backend()
keras = pytest.importorskip("keras", reason="needs Keras 3")
if keras.backend.backend() != "jax":  # pragma: no cover - another test imported Keras first
    pytest.skip("Keras runs on another backend in this process", allow_module_level=True)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from keras import layers  # noqa: E402

from jax_oracle import analytic_mask, assert_supports_equal  # noqa: E402
from rfmap.errors import ModelError  # noqa: E402
from rfmap.frontends.jax import trace_jax  # noqa: E402
from rfmap.frontends.jax_models import as_jax_model  # noqa: E402
from rfmap.frontends.keras import keras_rf  # noqa: E402
from rfmap.tcn import tcn  # noqa: E402

# -- keras-tcn, as philipperemy/keras-tcn builds it (tcn/tcn.py) ---------------------------


class ResidualBlock(layers.Layer):
    """Two causal dilated Conv1D (each with its activation and spatial dropout), plus the
    input through a 1x1 'matching' Conv1D when the channels change; returns
    ``(activation(x1 + x2), x1)``, ``x1`` feeding the skip connections."""

    def __init__(self, dilation_rate, nb_filters, kernel_size, **kwargs):
        super().__init__(**kwargs)
        self.dilation_rate = dilation_rate
        self.nb_filters = nb_filters
        self.kernel_size = kernel_size

    def build(self, input_shape):
        self.convs = [
            layers.Conv1D(
                self.nb_filters,
                self.kernel_size,
                dilation_rate=self.dilation_rate,
                padding="causal",
                name=f"conv1D_{k}",
            )
            for k in range(2)
        ]
        self.acts = [layers.Activation("relu", name=f"Act_Conv1D_{k}") for k in range(2)]
        self.drops = [layers.SpatialDropout1D(0.05, name=f"SDropout_{k}") for k in range(2)]
        if self.nb_filters != input_shape[-1]:
            self.match = layers.Conv1D(self.nb_filters, 1, padding="same", name="matching_conv1D")
        else:
            self.match = layers.Identity(name="matching_identity")
        self.final = layers.Activation("relu", name="Act_Res_Block")

    def call(self, inputs, training=None):
        x1 = inputs
        for conv, act, drop in zip(self.convs, self.acts, self.drops, strict=True):
            x1 = drop(act(conv(x1)), training=training)
        return self.final(self.match(inputs) + x1), x1


class TCN(layers.Layer):
    """``nb_stacks`` x one residual block per dilation; the skip connections summed;
    the last time step unless ``return_sequences``."""

    def __init__(
        self,
        nb_filters=6,
        kernel_size=3,
        nb_stacks=1,
        dilations=(1, 2, 4, 8),
        return_sequences=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.blocks = [
            ResidualBlock(d, nb_filters, kernel_size, name=f"residual_block_{i}")
            for i, d in enumerate(list(dilations) * nb_stacks)
        ]
        self.return_sequences = return_sequences

    def call(self, x, training=None):
        skips = []
        for block in self.blocks:
            x, skip = block(x, training=training)
            skips.append(skip)
        x = layers.add(skips) if len(skips) > 1 else skips[0]
        return x if self.return_sequences else x[:, -1, :]


def build_tcn(return_sequences=False, dilations=(1, 2, 4, 8), nb_stacks=1, head=True):
    inputs = keras.Input((None, 3))
    x = TCN(
        dilations=dilations, nb_stacks=nb_stacks, return_sequences=return_sequences, name="tcn"
    )(inputs)
    if head:
        x = layers.Dense(2, name="head")(x)
    return keras.Model(inputs, x)


def positive_call(model):
    """The model's stateless call with every weight positive (kernels 1/fan-in, biases
    0.1): the ReLUs pass everything, nothing cancels."""
    values = [
        jnp.full(v.shape, 1.0 / np.prod(v.shape[:-1]) if len(v.shape) > 1 else 0.1)
        for v in model.trainable_variables
    ]
    fixed = [jnp.asarray(v.value) for v in model.non_trainable_variables]

    def f(x):
        return model.stateless_call(values, fixed, x, training=False)[0]

    return f


# -- tests ------------------------------------------------------------------------------


@pytest.mark.parametrize(("dilations", "stacks"), [((1, 2, 4, 8), 1), ((1, 2), 2)])
def test_tcn_equals_the_keras_tcn_preset_and_its_gradient(dilations, stacks):
    model = build_tcn(dilations=dilations, nb_stacks=stacks)
    length = 90
    preset = tcn("keras-tcn", kernel_size=3, dilations=dilations, stacks=stacks)
    result = keras_rf(model, (3, length))
    assert result.receptive_field == (preset.receptive_field,)
    assert not result.is_global  # the Dense head reads channels only
    # the last step reads exactly the past positions where the preset counts paths
    (box,) = result.input_box()
    support = np.flatnonzero(preset.counts) + preset.origin + length - 1
    assert box == (int(support[0]), int(support[-1]) + 1)
    traced = trace_jax(model, (3, length))
    got = analytic_mask(traced.graph, traced.graph.output, (0,), (length,))
    assert np.flatnonzero(got).tolist() == support.tolist()
    # the gradient of the real model (positive weights, float64 Jacobian)
    with jax.enable_x64(True):
        grad = jax.grad(lambda x: positive_call(model)(x).sum())(jnp.ones((1, length, 3)))
    assert np.flatnonzero(np.asarray(grad).any(axis=(0, 2))).tolist() == support.tolist()


def test_tcn_sequence_equals_its_gradient_at_every_step():
    model = build_tcn(return_sequences=True, dilations=(1, 2, 4))
    traced = assert_supports_equal(positive_call(model), (3, 40), model=model)
    # layer names are Keras's name scopes
    assert "tcn.residual_block_0.conv1D_0.conv" in traced.graph.nodes
    # a 1x1 convolution reads what it sits on: no row of its own, its name still works
    assert traced.resolve("tcn.residual_block_0.matching_conv1D") == "input"
    r = keras_rf(model, (3, 40), "tcn.residual_block_1")
    # block 0: two convs of dilation 1 (RF 5); block 1: two of dilation 2 (RF 13), causal
    assert r.receptive_field == (13,) and r.padding == (12,)
    assert keras_rf(model, (3, 40), "tcn/residual_block_1/conv1D_0").receptive_field == (9,)


def test_tcn_linearised_measurement_matches():
    model = build_tcn(return_sequences=True, dilations=(1, 2))
    jm = as_jax_model(model, (3, 20))
    traced = jm.trace()
    for unit in itertools.product(range(20)):
        got = analytic_mask(traced.graph, traced.graph.output, unit, (20,))
        assert np.array_equal(jm.measure(unit).mask, got), unit
    for unit in ((0,), (9,), (19,)):
        got = analytic_mask(traced.graph, traced.resolve("tcn.residual_block_0"), unit, (20,))
        assert np.array_equal(jm.measure(unit, "tcn.residual_block_0").mask, got), unit


def test_conv2d_pooling_and_channels_first():
    inputs = keras.Input((3, 17, 15))
    x = layers.Conv2D(4, 3, strides=2, padding="same", data_format="channels_first")(inputs)
    x = layers.MaxPooling2D(2, data_format="channels_first")(x)
    x = layers.Conv2DTranspose(2, 3, strides=2, data_format="channels_first")(x)
    model = keras.Model(inputs, x)
    jm = as_jax_model(model, (3, 17, 15), channels="first")
    traced = jm.trace()
    grid = traced.graph.nodes[traced.graph.output].extents
    for unit in itertools.product(*map(range, grid)):
        got = analytic_mask(traced.graph, traced.graph.output, unit, (17, 15))
        assert np.array_equal(jm.measure(unit).mask, got), unit


def test_other_backends_are_refused(monkeypatch):
    model = build_tcn()
    monkeypatch.setattr(keras.backend, "backend", lambda: "tensorflow")
    with pytest.raises(ModelError, match=r"tensorflow backend cannot be traced.*KERAS_BACKEND=jax"):
        keras_rf(model, (3, 30))


def _backend_in_subprocess(tmp_path, env_backend=None, config=None):
    home = tmp_path / "keras_home"
    home.mkdir(exist_ok=True)
    if config is not None:
        (home / "keras.json").write_text(json.dumps({"backend": config}))
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["KERAS_HOME"] = str(home)
    if env_backend:
        env["KERAS_BACKEND"] = env_backend
    code = (
        "import os, sys; from rfmap.frontends.keras import prepare_keras_backend; "
        "prepare_keras_backend(); print(os.environ.get('KERAS_BACKEND')); "
        "print('keras' in sys.modules, 'jax' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return out.stdout.split()


def test_prepare_keras_backend_chooses_jax_only_when_nothing_else_does(tmp_path):
    # nothing imported: choosing costs no import of Keras or JAX
    assert _backend_in_subprocess(tmp_path) == ["jax", "False", "False"]
    assert _backend_in_subprocess(tmp_path, config="tensorflow")[0] == "jax"
    assert _backend_in_subprocess(tmp_path, config="torch")[0] == "None"
    assert _backend_in_subprocess(tmp_path, env_backend="numpy")[0] == "numpy"


def test_channels_last_wrapper_for_the_torch_backend():
    torch = pytest.importorskip("torch")
    from rfmap.frontends.keras import _channels_last

    seen = []

    class Last(torch.nn.Module):
        def forward(self, x):
            seen.append(tuple(x.shape))
            return x * 2

    out = _channels_last(Last())(torch.ones(1, 3, 7))
    assert seen == [(1, 7, 3)] and tuple(out.shape) == (1, 3, 7)


_KERAS_NET = """
import json, sys
import keras
from rfmap.frontends.keras import keras_rf
inp = keras.Input((40, 40, 3))
x = keras.layers.Conv2D(4, 3, padding="same")(inp)
y = keras.layers.MaxPooling2D(2)(x)
y = keras.layers.Conv2D(4, 3, padding="same", dilation_rate=2)(y)
y = keras.layers.UpSampling2D(2)(y)
out = keras.layers.Add()([x, y])
r = keras_rf(keras.Model(inp, out), (3, 40, 40))
units = [(0, 0), (5, 7), (39, 20)]
print(json.dumps([list(r.receptive_field), r.method, [r.input_box(u) for u in units]]))
"""


def test_the_torch_backend_agrees_with_the_jax_backend():
    """One Keras model, analysed by two independent frontends (ATen capture, jaxpr)."""
    pytest.importorskip("torch")
    results = []
    for backend in ("torch", "jax"):
        env = {**os.environ, "KERAS_BACKEND": backend}
        done = subprocess.run(
            [sys.executable, "-c", _KERAS_NET], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert results[0] == results[1]
    assert results[0][1] == "analytic"
