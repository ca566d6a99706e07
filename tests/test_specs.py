"""Layer specifications: broadcasting, validation, PyTorch's padding rules, parsing."""

from __future__ import annotations

import pytest

from rfmap import InvalidSpecError, conv_stack
from rfmap.specs import (
    ConvLayer,
    format_schedule,
    output_sizes,
    parse_int_list,
    parse_schedule,
    receptive_field_size,
)


def test_broadcasting_per_layer_and_per_axis():
    layers = conv_stack([1, (2, 3)], kernel_size=[3, (2, 5)], stride=1, padding=["same", 1])
    assert layers[0] == ConvLayer((3, 3), (1, 1), (1, 1), "same")
    assert layers[1] == ConvLayer((2, 5), (2, 3), (1, 1), (1, 1))


def test_ndim_is_inferred_from_tuples_else_two():
    assert conv_stack([1])[0].ndim == 2
    assert conv_stack([(1, 2, 3)])[0].ndim == 3
    assert conv_stack([1], kernel_size=[(3,)])[0].ndim == 1
    assert conv_stack([1], ndim=1)[0].ndim == 1


@pytest.mark.parametrize(
    ("kernel", "dilation", "expected"),
    [
        (3, 1, (1, 1)),
        (3, 2, (2, 2)),
        (2, 1, (0, 1)),
        (4, 1, (1, 2)),
        (2, 3, (1, 2)),
        (1, 5, (0, 0)),
    ],
)
def test_same_padding_matches_pytorch(kernel, dilation, expected):
    # PyTorch: total = d*(k-1); left = total // 2; right = total - left.
    assert conv_stack([dilation], kernel, ndim=1)[0].pad(0) == expected


def test_causal_and_valid_padding():
    assert conv_stack([2], 3, ndim=1, padding="causal")[0].pad(0) == (4, 0)
    assert conv_stack([2], 3, ndim=1, padding="valid")[0].pad(0) == (0, 0)


def test_output_sizes_follow_the_conv_formula():
    layers = conv_stack([1, 2], kernel_size=[3, 2], stride=[2, 1], padding=[1, 0])
    # (10 + 2 - 3)//2 + 1 = 5; (5 - 3)//1 + 1 = 3
    assert output_sizes(layers, (10, 11)) == [(10, 11), (5, 6), (3, 4)]


def test_receptive_field_size_with_strides():
    # Araujo et al.: r = 1 + sum (k_l - 1) * prod_{i<l} s_i  (dilated extent for k).
    layers = conv_stack([1, 1, 1], kernel_size=[7, 3, 3], stride=[2, 2, 1], padding=[3, 1, 1])
    assert receptive_field_size(layers) == 1 + 6 + 2 * 2 + 2 * 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1,2,4", [1, 2, 4]), (" 1 , 2x3 ", [1, (2, 3)]), ("5", [5]), ("2X1X3", [(2, 1, 3)])],
)
def test_parse_schedule(text, expected):
    assert parse_schedule(text) == expected


@pytest.mark.parametrize("text", ["", "1,,2", "a", "1.5", "1;2", "2x"])
def test_parse_schedule_rejects_garbage(text):
    with pytest.raises(InvalidSpecError, match="dilations"):
        parse_schedule(text)


def test_parse_int_list():
    assert parse_int_list("3, -1", "unit") == [3, -1]
    with pytest.raises(InvalidSpecError, match="unit must be comma-separated integers"):
        parse_int_list("3,x", "unit")


def test_format_schedule_is_the_notebook_title_form():
    assert format_schedule(conv_stack([1, 1, 2, 3, 5])) == "(1, 1, 2, 3, 5)"
    assert format_schedule(conv_stack([1])) == "(1)"
    assert format_schedule(conv_stack([(2, 1)])) == "(2x1)"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dilations": "1,2"}, "sequence of integers"),
        ({"dilations": [True]}, "dilations must be"),
        ({"dilations": [1], "stride": 0}, "stride must be positive"),
        ({"dilations": [1], "padding": -1}, "padding must be non-negative"),
        ({"dilations": [1], "kernel_size": "3"}, "kernel_size must be"),
        ({"dilations": [1], "ndim": 0}, "ndim must be 1, 2 or 3"),
    ],
)
def test_validation_messages_name_the_parameter(kwargs, message):
    with pytest.raises(InvalidSpecError, match=message):
        conv_stack(**kwargs)


def test_receptive_field_size_of_a_dilation_schedule():
    """Once an AttributeError ('int' object has no attribute 'extent')."""
    from rfmap import receptive_field_size

    assert receptive_field_size([1, 2, 5]) == 17 == receptive_field_size(conv_stack([1, 2, 5]))
    assert receptive_field_size([1, 2, 5], kernel_size=2) == 9
    assert receptive_field_size([1, (2, 3)], axis=1) == 1 + 2 * (1 + 3)
    assert receptive_field_size([4]) == 9
    with pytest.raises(InvalidSpecError, match="dilations must be positive integers"):
        receptive_field_size([1, 0])
    with pytest.raises(InvalidSpecError, match="a mix"):
        receptive_field_size([conv_stack([1])[0], 2])
    with pytest.raises(InvalidSpecError, match=r"axis must be an integer in 0\.\.1, got 2"):
        receptive_field_size([1, 2], axis=2)
    with pytest.raises(InvalidSpecError, match="at least one layer"):
        receptive_field_size([])
