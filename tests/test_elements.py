"""Element-level tensors (rfmap.elements): ids of (node, unit) pairs, and the
relative-position skew of BoTNet/HaloNet followed element by element.

Oracles: a Python dict of the (node, unit) rows for the ids; the float64 gradient
support of a linearised copy of the real attention layers (tests/model_oracle.py),
unit by unit, border units included.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rfmap.elements import ElementTable


@settings(max_examples=60, deadline=None)
@given(
    ndim=st.integers(1, 3),
    data=st.data(),
)
def test_ids_name_each_node_and_unit_once(ndim, data):
    table = ElementTable(ndim)
    seen: dict[tuple[str, tuple[int, ...]], int] = {}
    for node in data.draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=4)):
        rows = data.draw(st.integers(0, 30))
        units = data.draw(
            hnp.arrays(np.int64, (rows, ndim), elements=st.integers(-(2**40), 2**40))
            | hnp.arrays(np.int64, (rows, ndim), elements=st.integers(-3, 3))
        )
        ids = table.id_array(node, units)
        assert ids.shape == (rows,)
        for row, found in zip(units.tolist(), ids.tolist(), strict=True):
            key = (node, tuple(row))
            assert seen.setdefault(key, found) == found  # the same pair, the same id
            assert table.nodes[found] == node and table.units[found] == tuple(row)
    assert len(set(seen.values())) == len(seen)  # different pairs, different ids


def test_ids_keep_the_leading_shape():
    table = ElementTable(2)
    units = np.arange(2 * 3 * 2, dtype=np.int64).reshape(2, 3, 2) % 4
    ids = table.id_array("x", units)
    assert ids.shape == (2, 3)
    assert table.id_array("x", np.empty((0, 2), dtype=np.int64)).shape == (0,)


torch = pytest.importorskip("torch", reason="the attention layers need PyTorch")
timm = pytest.importorskip("timm", reason="the attention layers come from timm")

from model_oracle import GradientOracle, check_boxes, corner_units  # noqa: E402
from rfmap.trace import model_rf  # noqa: E402


def _stem_then(attn, dim):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, dim, 3, padding=1), attn).eval()


@pytest.mark.parametrize(
    "build, size",
    [
        # global attention with a relative-position bias (BoTNet): reads the whole map
        (lambda: _stem_then(_bottleneck(8, (8, 8)), 8), (3, 8, 8)),
        # blocked attention with a halo (HaloNet): each 4x4 block reads its block plus
        # a halo of 1, through the relative-position skew
        (lambda: _stem_then(_halo(8, block=4, halo=1), 8), (3, 16, 12)),
        (lambda: _stem_then(_halo(8, block=2, halo=2), 8), (3, 8, 8)),
    ],
)
def test_relative_position_skew_equals_the_gradient(build, size):
    model = build()
    r = model_rf(model, size)
    assert r.method == "analytic" and r.measured_nodes == ()
    oracle = GradientOracle(model, size, [None], slots=4)
    mismatches, _ = check_boxes(oracle, None, r, corner_units(r.grid))
    assert not mismatches, "\n".join(map(str, mismatches))


def _bottleneck(dim, feat):
    from timm.layers.bottleneck_attn import BottleneckAttn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BottleneckAttn(dim, feat_size=feat, num_heads=2)


def _halo(dim, block, halo):
    from timm.layers.halo_attn import HaloAttn

    return HaloAttn(dim, num_heads=2, block_size=block, halo_size=halo)


class _TokenBlockPool(torch.nn.Module):
    """Pools blocks of ``k`` flattened tokens (blocks that straddle rows when ``k`` does
    not divide the width, as NextViT's key pooling does), then either lays the pooled
    tokens out as a map of ``grid`` or, as NextViT does, uses them as the keys and
    values of attention from every token."""

    def __init__(self, k: int, grid: tuple[int, int] | None) -> None:
        super().__init__()
        self.k, self.grid = k, grid
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.mix = torch.nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        x = self.conv(x)
        n, c, h, w = x.shape
        pooled = torch.nn.functional.avg_pool1d(x.reshape(n, c, h * w), self.k, self.k)
        if self.grid is not None:
            return pooled.reshape(n, c, *self.grid)
        q = x.reshape(n, c, h * w).transpose(1, 2)
        kv = pooled.transpose(1, 2)
        y = torch.nn.functional.scaled_dot_product_attention(q, kv, kv)
        return self.mix(y.transpose(1, 2).reshape(n, c, h, w))


@pytest.mark.parametrize("k, size", [(4, (3, 6, 6)), (5, (3, 5, 7)), (16, (3, 8, 6))])
def test_attention_over_pooled_tokens_is_derived_and_equals_the_gradient(k, size):
    torch.manual_seed(0)
    model = _TokenBlockPool(k, None).eval()
    r = model_rf(model, size)
    assert r.method == "analytic" and r.measured_nodes == ()
    pooled = [row for row in r.layers if row.name.startswith("avg_pool")]
    assert len(pooled) == size[1] * size[2] // k  # a node per pooled token
    oracle = GradientOracle(model, size, [None], slots=4)
    mismatches, _ = check_boxes(oracle, None, r, corner_units(r.grid))
    assert not mismatches, "\n".join(map(str, mismatches))


@pytest.mark.parametrize(
    "k, size, grid", [(4, (3, 6, 6), (3, 3)), (5, (3, 5, 7), (7, 1)), (3, (3, 4, 5), (2, 3))]
)
def test_pooled_tokens_laid_out_as_a_map_are_never_read_whole(k, size, grid):
    # a node per pooled token has no position in the new map: rfmap must not merge
    # them into one node that reads every token (it measures the model instead)
    torch.manual_seed(0)
    model = _TokenBlockPool(k, grid).eval()
    r = model_rf(model, size)
    assert r.grid == grid
    oracle = GradientOracle(model, size, [None], slots=4)
    units = [(i, j) for i in range(grid[0]) for j in range(grid[1])]
    mismatches, _ = check_boxes(oracle, None, r, units)
    assert not mismatches, "\n".join(map(str, mismatches))
