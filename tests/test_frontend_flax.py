"""Flax models (linen and nnx) against their float64 gradient supports."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="the Flax frontend needs jax")
flax = pytest.importorskip("flax", reason="the Flax frontend needs flax")

import flax.linen as nn  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from jax_oracle import analytic_mask, assert_supports_equal  # noqa: E402
from rfmap.frontends.jax import jax_rf, trace_jax  # noqa: E402
from rfmap.frontends.jax_models import as_jax_model  # noqa: E402


class Residual(nn.Module):
    """conv-BN-ReLU-conv plus a shortcut (a strided 1x1 projection when the shape changes)."""

    channels: int
    stride: int = 1
    dilation: int = 1

    @nn.compact
    def __call__(self, x):
        y = nn.Conv(self.channels, (3, 3), strides=self.stride, name="conv1")(x)
        y = nn.relu(nn.BatchNorm(use_running_average=True, name="bn1")(y))
        y = nn.Conv(self.channels, (3, 3), kernel_dilation=self.dilation, name="conv2")(y)
        if self.stride != 1 or x.shape[-1] != self.channels:
            x = nn.Conv(self.channels, (1, 1), strides=self.stride, name="proj")(x)
        return nn.relu(x + y)


class ResNet(nn.Module):
    pool: str = "avg"

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4, (5, 5), strides=2, padding=2, name="stem")(x)
        pool = nn.avg_pool if self.pool == "avg" else nn.max_pool
        x = pool(x, (3, 3), strides=(2, 2), padding="SAME")
        x = Residual(4, name="block1")(x)
        x = Residual(8, stride=2, name="block2")(x)
        return Residual(8, dilation=2, name="block3")(x)


def positive(variables):
    """Weights positive (kernels 1/fan-in, biases and scales > 0), BN statistics (0, 1),
    built from the shapes: every activation is positive, so the ReLUs pass everything
    and nothing cancels."""

    def fix(path, leaf):
        name = str(path[-1])
        if "kernel" in name:
            return jnp.full(leaf.shape, 1.0 / np.prod(leaf.shape[:-1]), leaf.dtype)
        if "mean" in name:
            return jnp.zeros(leaf.shape, leaf.dtype)
        return jnp.full(leaf.shape, 1.0 if ("var" in name or "scale" in name) else 0.1, leaf.dtype)

    return jax.tree_util.tree_map_with_path(fix, variables)


def test_flax_resnet_equals_its_gradient():
    model = ResNet()
    size = (3, 26, 22)
    shape = (1, 26, 22, 3)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.ones(shape))
    variables = positive(shapes)

    def f(x):
        return model.apply(variables, x)

    traced = assert_supports_equal(f, size, model=model)
    # nodes are named after the module paths; the paths name the modules' outputs
    assert "block2.proj.conv" in traced.graph.nodes and "stem.conv" in traced.graph.nodes
    assert traced.resolve("block2") == traced.resolve("block2.add")
    r = jax_rf(model, size)
    assert r.method == "analytic" and r.exact

    # a module path as layer, against the gradient of that module's output
    def upto_block1(x):
        return model.apply(variables, x, capture_intermediates=True)[1]["intermediates"]["block1"][
            "__call__"
        ][0]

    assert_supports_equal(upto_block1, size, model=model, layer="block1")


def test_flax_layer_names_and_rf():
    model = ResNet()
    r = jax_rf(model, (3, 64, 64), "block1")
    # stem 5/2 (RF 5, jump 2, padding 2); pool 3/2 SAME on 32 (low padding 0): RF 9,
    # jump 4, padding 2; two 3x3 convs at jump 4: RF 25, padding 10
    assert r.receptive_field == (25, 25) and r.stride == (4, 4) and r.padding == (10, 10)
    assert jax_rf(model, (3, 64, 64), "block1/conv1").receptive_field == (17, 17)
    assert jax_rf(model, (3, 64, 64), "block1.conv1.conv").receptive_field == (17, 17)


def test_max_pool_resnet_equals_the_linearised_gradient():
    model = ResNet(pool="max")
    jm = as_jax_model(model, (3, 21, 18))
    traced = jm.trace()
    grid = traced.graph.nodes[traced.graph.output].extents
    for unit in itertools.product(*map(range, grid)):
        got = analytic_mask(traced.graph, traced.graph.output, unit, (21, 18))
        assert np.array_equal(jm.measure(unit).mask, got), unit
    # the layer's units, through the same linearised pass
    node = traced.resolve("block2")
    for unit in itertools.product(*map(range, traced.graph.nodes[node].extents)):
        got = analytic_mask(traced.graph, node, unit, (21, 18))
        assert np.array_equal(jm.measure(unit, "block2").mask, got), unit


class NnxBlock(nnx.Module):
    def __init__(self, channels, rngs):
        self.conv = nnx.Conv(channels, channels, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(channels, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
        return x + self.drop(nnx.relu(self.bn(self.conv(x))))


class NnxNet(nnx.Module):
    def __init__(self, rngs):
        self.stem = nnx.Conv(3, 4, (3, 3), strides=2, rngs=rngs)
        self.blocks = nnx.List([NnxBlock(4, rngs), NnxBlock(4, rngs)])

    def __call__(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return nnx.avg_pool(x, (2, 2), strides=(2, 2))


def test_nnx_module_is_named_and_equals_its_gradient():
    net = nnx.eval_shape(lambda: NnxNet(nnx.Rngs(0)))  # abstract weights: no init runs
    size = (3, 17, 14)
    jm = as_jax_model(net, size)
    traced = jm.trace()
    assert "blocks.0.conv.conv" in traced.graph.nodes and "stem.conv" in traced.graph.nodes
    assert traced.resolve("blocks.1") == traced.resolve("blocks/1")
    grid = traced.graph.nodes[traced.graph.output].extents
    for unit in itertools.product(*map(range, grid)):
        got = analytic_mask(traced.graph, traced.graph.output, unit, (17, 14))
        assert np.array_equal(jm.measure(unit).mask, got), unit
    # the module itself is left as it was: dropout still on, no scope wrappers
    assert net.blocks[0].drop.deterministic is False
    assert "__call__" not in vars(NnxBlock) or NnxBlock.__call__.__name__ == "__call__"
    assert jax_rf(net, size, "blocks.0").receptive_field == (7, 7)


def test_training_mode_batch_norm_is_a_clear_error():
    from rfmap.errors import ModelError

    class Train(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.BatchNorm(use_running_average=False)(nn.Conv(2, (3, 3))(x))

    with pytest.raises(ModelError, match=r"immutable.*use_running_average=True"):
        jax_rf(Train(), (1, 8, 8))


def test_trace_needs_no_weights():
    # the linen module is initialised on abstract shapes: a big model costs nothing
    class Wide(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Conv(4096, (3, 3))(nn.Conv(4096, (3, 3))(x))

    r = jax_rf(Wide(), (4096, 32, 32))
    assert r.receptive_field == (5, 5)
    assert trace_jax(Wide(), (4096, 32, 32)).model.kind == "flax.linen"
