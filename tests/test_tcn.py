"""rfmap.tcn: exact maps of keras-tcn, locuslab TCN and WaveNet, and their published formulas.

Oracle: the networks run forward on integer impulses, written out layer by layer as
the projects build them (explicit zero padding, residual adds, skip sums), and, where
PyTorch is installed, the locuslab ``TemporalBlock`` itself with all-ones weights and
autograd in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rfmap import InvalidSpecError, axis_counts, conv_stack
from rfmap.errors import MapTooLargeError
from rfmap.tcn import Preset, tcn

# -- forward simulation -------------------------------------------------------------------------


def conv_same_length(x, k, d, left, right):
    """Conv1d with all-ones weights on zero-padded ``x``, then drop ``right`` outputs."""
    padded = [0] * left + list(x) + [0] * right
    n = len(padded) - (k - 1) * d
    y = [sum(padded[t + j * d] for j in range(k)) for t in range(n)]
    return y[: len(y) - right] if right else y


def causal_keras(x, k, d):
    """keras Conv1D(padding='causal'): pad (k - 1) d zeros on the left."""
    return conv_same_length(x, k, d, (k - 1) * d, 0)


def chomped_torch(x, k, d):
    """locuslab: Conv1d(padding=(k - 1) d) on both sides, then Chomp1d((k - 1) d)."""
    p = (k - 1) * d
    return conv_same_length(x, k, d, p, p)


def add(a, b):
    return [u + v for u, v in zip(a, b, strict=True)]


def keras_forward(x, k, dilations, stacks, skip):
    skips = []
    for _ in range(stacks):
        for d in dilations:
            x1 = causal_keras(causal_keras(x, k, d), k, d)
            skips.append(x1)
            x = add(x, x1)
    if not skip:
        return x
    out = skips[0]
    for s in skips[1:]:
        out = add(out, s)
    return out


def locuslab_forward(x, k, levels):
    for i in range(levels):
        d = 2**i
        x = add(chomped_torch(chomped_torch(x, k, d), k, d), x)
    return x


def wavenet_forward(x, k, dilations, stacks, k0):
    h = causal_keras(x, k0, 1) if k0 else x
    out = [0] * len(x)
    for _ in range(stacks):
        for d in dilations:
            z = causal_keras(h, k, d)
            out = add(out, z)
            h = add(h, z)
    return out


def response_at_last_step(forward, length):
    """Paths from each input step to the output at the last step, one impulse at a time."""
    counts = []
    for p in range(length):
        x = [0] * length
        x[p] = 1
        counts.append(forward(x)[-1])
    return counts


def impulse_response(forward, length):
    """The same, from one impulse at step 0 (causal convolutions are time-invariant)."""
    x = [0] * length
    x[0] = 1
    return forward(x)[::-1]


def trimmed(counts):
    nz = [i for i, c in enumerate(counts) if c]
    return counts[nz[0] :]


# -- the presets against the simulation ---------------------------------------------------------


def test_keras_tcn_small_by_every_impulse():
    r = tcn("keras-tcn", kernel_size=2, dilations=[1, 2], stacks=1)
    sim = response_at_last_step(
        lambda x: keras_forward(x, 2, [1, 2], 1, True), r.receptive_field + 4
    )
    assert trimmed(sim) == r.counts.tolist()
    assert r.origin == -(r.receptive_field - 1)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(2, 4),
    st.lists(st.integers(1, 6), min_size=1, max_size=3),
    st.integers(1, 2),
    st.booleans(),
)
def test_keras_tcn_equals_the_forward_pass(k, dilations, stacks, skip):
    r = tcn("keras-tcn", kernel_size=k, dilations=dilations, stacks=stacks, skip_connections=skip)
    sim = impulse_response(
        lambda x: keras_forward(x, k, dilations, stacks, skip), r.receptive_field + 3
    )
    assert trimmed(sim) == r.counts.tolist()


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 5), st.integers(1, 4))
def test_locuslab_equals_the_forward_pass(k, levels):
    r = tcn("locuslab", kernel_size=k, levels=levels)
    sim = impulse_response(lambda x: locuslab_forward(x, k, levels), r.receptive_field + 3)
    assert trimmed(sim) == r.counts.tolist()


@settings(max_examples=20, deadline=None)
@given(
    st.integers(2, 3),
    st.lists(st.integers(1, 8), min_size=1, max_size=4),
    st.integers(1, 2),
    st.integers(0, 4),
)
def test_wavenet_equals_the_forward_pass(k, dilations, stacks, k0):
    r = tcn("wavenet", kernel_size=k, dilations=dilations, stacks=stacks, initial_kernel=k0)
    sim = impulse_response(
        lambda x: wavenet_forward(x, k, dilations, stacks, k0), r.receptive_field + 3
    )
    assert trimmed(sim) == r.counts.tolist()


def test_wavenet_full_size_equals_the_forward_pass():
    r = tcn("wavenet", stacks=1)  # 1..512 and the initial causal conv: 1025 steps
    sim = impulse_response(
        lambda x: wavenet_forward(x, 2, [2**i for i in range(10)], 1, 2), r.receptive_field + 2
    )
    assert trimmed(sim) == r.counts.tolist()


def test_torch_temporal_block_gradient_equals_the_map():
    torch = pytest.importorskip("torch", reason="the PyTorch oracle needs torch")
    nn = torch.nn
    k, levels = 3, 3

    class Chomp1d(nn.Module):  # as in locuslab/TCN TCN/tcn.py
        def __init__(self, size):
            super().__init__()
            self.size = size

        def forward(self, x):
            return x[:, :, : -self.size].contiguous()

    blocks = []
    for i in range(levels):
        d, p = 2**i, (k - 1) * 2**i
        blocks.append(
            nn.Sequential(
                nn.Conv1d(1, 1, k, padding=p, dilation=d, bias=False),
                Chomp1d(p),
                nn.Conv1d(1, 1, k, padding=p, dilation=d, bias=False),
                Chomp1d(p),
            ).double()
        )
    for block in blocks:
        for module in block:
            if isinstance(module, nn.Conv1d):
                module.weight.data.fill_(1.0)
    r = tcn("locuslab", kernel_size=k, levels=levels)
    length = r.receptive_field + 5
    x = torch.zeros(1, 1, length, dtype=torch.float64, requires_grad=True)
    h = x
    for block in blocks:
        h = block(h) + h  # the residual: relu(out + res) linearised
    h[0, 0, -1].backward()
    grad = x.grad[0, 0].numpy()
    assert trimmed([int(v) for v in grad]) == r.counts.tolist()
    assert (grad == np.round(grad)).all()


# -- receptive fields and the published formulas ---------------------------------------------


def test_keras_tcn_formula_holds_and_the_2018_one_does_not():
    for k, dilations, stacks in [
        (2, [1, 2, 4, 8], 1),
        (3, [1, 2, 4, 8, 16, 32], 1),
        (8, [1, 2, 4, 8], 3),
        (2, [1, 2, 4], 2),
    ]:
        r = tcn("keras-tcn", kernel_size=k, dilations=dilations, stacks=stacks)
        assert r.receptive_field == 1 + 2 * (k - 1) * stacks * sum(dilations)
        current, old = r.formulas
        assert current.correct and current.value == r.receptive_field
        assert not old.correct and old.value == stacks * k * dilations[-1]
    # The 2018 README's example, kernel 2 and dilations [1, 2, 4, 8], "is 16": right for
    # the 2018 blocks of one convolution (plus residual and skip connections, which is the
    # WaveNet structure without an initial convolution), 31 with today's two convolutions.
    assert tcn("keras-tcn", kernel_size=2, dilations=[1, 2, 4, 8]).receptive_field == 31
    one_conv = {"kernel_size": 2, "dilations": [1, 2, 4, 8], "initial_kernel": 0}
    assert tcn("wavenet", stacks=1, **one_conv).receptive_field == 16 == 1 * 2 * 8
    # ... and its two stacks ("an increase in the receptive field to 32") see 31
    assert tcn("wavenet", stacks=2, **one_conv).receptive_field == 31 != 2 * 2 * 8
    assert "2018 blocks of one convolution" in tcn("keras-tcn").formulas[1].note


def test_locuslab_has_two_convolutions_per_level():
    r = tcn("locuslab")  # ksize 7, 8 levels: the adding-problem defaults
    assert r.receptive_field == 1 + 2 * 6 * (2**8 - 1) == 3061
    paper, single = r.formulas
    assert paper.correct and not single.correct and single.value == 1531


def test_wavenet_receptive_fields():
    # "each 1, 2, 4, ..., 512 block has receptive field of size 1024"
    assert tcn("wavenet", stacks=1, initial_kernel=0).receptive_field == 1024
    # the paper's figure 3: four layers of dilation 1, 2, 4, 8 and kernel 2 see 16 steps
    assert tcn("wavenet", dilations=[1, 2, 4, 8], stacks=1, initial_kernel=0).receptive_field == 16
    r = tcn("wavenet")  # 3 blocks and the initial causal convolution
    assert r.receptive_field == 1 + 3 * 1023 + 1 == 3071
    block, ibab, naive = r.formulas
    assert (block.value, block.correct) == (1024, False)
    assert (ibab.value, ibab.correct) == (3071, True)
    assert (naive.value, naive.correct) == (3072, False)
    # ibab's scalar-input case: an initial filter of width 32
    assert tcn("wavenet", initial_kernel=32).receptive_field == 3 * 1023 + 1 + 31


def test_the_residual_structure_keeps_the_chain_field_but_changes_the_counts():
    r = tcn("keras-tcn", kernel_size=2, dilations=[1, 2])
    _, chain = axis_counts(r.layers, 0, None)
    assert len(chain) == r.receptive_field
    assert (chain != 0).tolist() == (r.counts != 0).tolist()
    assert chain.tolist() != r.counts.tolist()


def test_holes_in_a_tcn():
    # two convolutions of dilation 1 then 4 with kernel 2: offsets 0..2 then jumps of 4
    r = tcn("keras-tcn", kernel_size=2, dilations=[1, 4, 16])
    assert not r.gridding_free
    assert r.holes[:3] == (-39, -35, -31)
    assert r.to_dict(counts=False)["holes"] == list(r.holes)
    # keras-tcn issue #226 reports blind spots for kernel 2, dilations (1, 2): the
    # structure has none (they come from trained weights and activations)
    assert tcn("keras-tcn", kernel_size=2, dilations=[1, 2]).gridding_free


def test_causal_engine_equals_the_keras_convolution():
    # 1D causal convolution in the engine: left padding only
    for dilations, k in [([1, 2, 4], 2), ([1, 3], 3), ([2, 1], 4)]:
        layers = conv_stack(dilations, k, ndim=1, padding="causal")
        origin, counts = axis_counts(layers, 0, None)

        def forward(x, dilations=dilations, k=k):
            for d in dilations:
                x = causal_keras(x, k, d)
            return x

        sim = impulse_response(forward, len(counts) + 2)
        assert trimmed(sim) == counts.tolist()
        assert origin == -(len(counts) - 1)


def test_result_dict_and_display():
    r = tcn("keras-tcn")
    d = r.to_dict()
    assert d["preset"] == "keras-tcn" and d["receptive_field"] == 253
    assert len(d["counts"]) == 253 and sum(d["counts"]) == d["total"] == 10**6 - 1
    assert d["formulas"][0]["correct"] is True
    assert r._repr_png_().startswith(b"\x89PNG")
    assert "receptive_field=253" in repr(r)


def test_large_counts_are_exact_python_ints():
    r = tcn("keras-tcn", kernel_size=5, dilations=[1] * 15, stacks=1)
    assert r.counts.dtype == object
    sim = impulse_response(lambda x: keras_forward(x, 5, [1] * 15, 1, True), r.receptive_field + 1)
    assert trimmed(sim) == r.counts.tolist()
    assert r.total == 26**15 - 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 3), min_size=1, max_size=12),
    st.lists(st.integers(0, 3), min_size=1, max_size=12),
    st.booleans(),
)
def test_map_product_is_the_polynomial_product(a, b, huge):
    from rfmap.tcn import _multiply

    scale = 2**80 if huge else 1  # past int64: Python integers in object arrays
    expected = [0] * (len(a) + len(b) - 1)
    for i, u in enumerate(a):
        for j, v in enumerate(b):
            expected[i + j] += u * scale * v
    dtype = object if huge else np.int64
    left = np.array([u * scale for u in a], dtype=dtype)
    got = _multiply(left, np.array(b, dtype=np.int64))
    assert [int(x) for x in got.tolist()] == expected
    assert [int(x) for x in _multiply(np.array(b, dtype=np.int64), left).tolist()] == expected


def test_long_dilations_are_cheap_and_heavy_maps_are_refused():
    # a field of 131071 steps: one shifted copy per tap, not a dense convolution
    r = tcn("locuslab", kernel_size=2, levels=16)
    assert r.receptive_field == 1 + 2 * (2**16 - 1)
    assert r.total == 5**16  # each block: identity + 4 paths through its two convolutions
    # 600 blocks of kernel 30: counts of ~5,900 bits, far past a few seconds of work
    with pytest.raises(MapTooLargeError, match=r"keras-tcn map would take about [\d,]+ cell"):
        tcn("keras-tcn", kernel_size=30, dilations=[1] * 30, stacks=20)


def test_bad_input():
    with pytest.raises(InvalidSpecError, match="preset must be one of keras-tcn"):
        tcn("resnet")
    with pytest.raises(InvalidSpecError, match="dilations must be positive integers"):
        tcn("keras-tcn", dilations=[1, 0])
    with pytest.raises(InvalidSpecError, match="levels does not apply to the wavenet preset"):
        tcn("wavenet", levels=3)
    with pytest.raises(InvalidSpecError, match="kernel_size must be an integer >= 1"):
        tcn(Preset.LOCUSLAB, kernel_size=0)
    with pytest.raises(InvalidSpecError, match="skip_connections applies to keras-tcn"):
        tcn("wavenet", skip_connections=False)
    with pytest.raises(InvalidSpecError, match="more than the 16,777,216"):
        tcn("keras-tcn", dilations=[2**24])
