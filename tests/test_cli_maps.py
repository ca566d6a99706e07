"""``rfmap map/plot/animate/gallery``: the JSON contract, text output, and every bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rfmap import path_map
from rfmap.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_map_json_contract(capsys):
    code, out, err = run(capsys, "map", "1,2,4", "--size", "21", "--json")
    assert code == 0 and err == ""
    data = json.loads(out)
    expected = path_map([1, 2, 4], size=21)
    assert data["counts"] == expected.counts.tolist()
    assert data["dilations"] == [1, 2, 4]
    assert data["kernel"] == 3 and data["size"] == 21 and data["ndim"] == 2
    assert data["unit"] == [10, 10]
    assert data["receptive_field"] == [15, 15]
    assert data["support"] == 225 and data["max"] == 9 and data["total"] == 729


def test_map_json_options(capsys):
    code, out, _ = run(
        capsys,
        "map",
        "1,2",
        "--size",
        "9",
        "--kernel",
        "2,4",
        "--ndim",
        "1",
        "--unit",
        "3",
        "--json",
    )
    data = json.loads(out)
    assert code == 0
    assert data["counts"] == path_map([1, 2], 9, [2, 4], ndim=1, unit=3).counts.tolist()
    assert data["kernel"] == [2, 4] and data["unit"] == [3]


@pytest.mark.parametrize(
    ("option", "kwargs"),
    [
        # one AxB value applies to every layer, per axis: never one value per layer
        (["--kernel", "3x5"], {"kernel_size": [(3, 5)] * 2}),
        (["--padding", "1x2"], {"padding": [(1, 2)] * 2}),
        (["--stride", "2x1", "--padding", "1"], {"stride": [(2, 1)] * 2, "padding": 1}),
        # one entry per layer is still per layer
        (["--kernel", "3,5"], {"kernel_size": [3, 5]}),
        (["--kernel", "3x5,3"], {"kernel_size": [(3, 5), 3]}),
    ],
)
def test_one_axb_option_is_per_axis_for_every_layer(capsys, option, kwargs):
    code, out, err = run(capsys, "map", "1,2", "--size", "15", *option, "--json")
    assert code == 0, err
    assert out == json.dumps(path_map([1, 2], size=15, **kwargs).to_dict()) + "\n"


def test_map_json_big_integers_are_exact(capsys):
    code, out, _ = run(capsys, "map", ",".join(["1"] * 20), "--size", "41", "--json")
    data = json.loads(out)
    assert code == 0
    assert data["total"] == 9**20
    assert data["counts"][20][20] == path_map([1] * 20, size=41).counts[20, 20]


def test_map_3d_and_unbounded(capsys):
    code, out, _ = run(capsys, "map", "1,2", "--ndim", "3", "--size", "7", "--json")
    assert code == 0 and len(json.loads(out)["counts"][0][0]) == 7
    code, out, _ = run(capsys, "map", "1,2", "--ndim", "1", "--size", "none", "--json")
    data = json.loads(out)
    assert data["size"] is None and data["counts"] == [1, 1, 2, 1, 2, 1, 1]


def test_map_text_summary_shows_small_maps(capsys):
    code, out, _ = run(capsys, "map", "2", "--size", "5")
    assert code == 0
    assert "Dilation rates: (2)" in out and "receptive field: 5 x 5" in out
    assert "1 . 1 . 1" in out


def test_map_text_summary_of_a_1d_map(capsys):
    code, out, _ = run(capsys, "map", "1", "--size", "5", "--ndim", "1")
    assert code == 0 and "kernel 3, 1D, input 5, output unit 2\n" in out
    assert out.rstrip().endswith(". 1 1 1 .")


def test_map_text_summary_omits_large_maps(capsys):
    code, out, _ = run(capsys, "map", "1,2", "--size", "301")
    assert code == 0 and "total paths: 81" in out and len(out.splitlines()) == 5
    assert out.splitlines()[-1] == (
        "  the 301 x 301 map is not printed: 90,601 cells, more than the 4,096 printed; see it "
        "with 'rfmap map --json' or 'rfmap plot' (in Python: .counts, .plot())"
    )


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["1,2", "--size", "65"], "4,225 cells, more than the 4,096 printed"),  # just above
        (["1,2", "--ndim", "3", "--size", "5"], "a 3D map does not print as text"),
        (["1,2", "--size", "9,81"], "its rows would be 161 characters wide (over 160)"),
        (["1,2", "--ndim", "1", "--size", "5000"], "5,000 cells, more than the 4,096 printed"),
    ],
)
def test_a_map_too_large_to_print_says_why_and_where_to_see_it(capsys, argv, why):
    code, out, _ = run(capsys, "map", *argv)
    last = out.splitlines()[-1]
    assert code == 0 and f"map is not printed: {why}; see it with 'rfmap map --json'" in last
    assert out.count("\n") == 5  # the summary and that line: no grid


@pytest.mark.parametrize(("argv", "rows"), [(["--size", "64"], 64), (["--size", "9,80"], 9)])
def test_maps_at_the_print_limits_are_printed(capsys, argv, rows):
    code, out, _ = run(capsys, "map", "1,2", *argv)
    assert code == 0 and "not printed" not in out and len(out.splitlines()) == 5 + rows


def test_the_field_clipped_by_the_input_is_reported(capsys):
    """The seed notebook's Fibonacci schedule: a 25 x 25 field in a 21 x 21 input."""
    code, out, _ = run(capsys, "map", "1,1,2,3,5", "--size", "21")
    assert code == 0
    assert "  receptive field: 25 x 25, clipped by the 21 x 21 input to 21 x 21\n" in out
    code, out, _ = run(capsys, "map", "1,1,2,3,5", "--size", "25")
    assert "  receptive field: 25 x 25\n" in out  # fits exactly: not clipped
    code, out, _ = run(capsys, "map", "1,2,4", "--size", "21", "--unit", "0,10")
    assert "  receptive field: 15 x 15, clipped by the 21 x 21 input to 8 x 15\n" in out
    code, out, _ = run(capsys, "map", "1,1,2,3,5", "--size", "21", "--json")
    data = json.loads(out)
    assert list(data)[-2:] == ["full_receptive_field", "clipped"]  # new keys, at the end
    assert data["receptive_field"] == [21, 21]  # its meaning unchanged: inside the input
    assert data["full_receptive_field"] == [25, 25] and data["clipped"] is True


def test_negative_units_reach_the_range_check(capsys):
    for argv in (["--unit", "-1,-1"], ["-u", "-1,3"], ["--unit", "-1, 3"]):
        code, out, err = run(capsys, "map", "1,2,4", *argv)
        assert code == 2 and out == "" and err.count("\n") == 1
        assert "is outside the output grid of shape [21, 21]" in err, err
    code, _, err = run(capsys, "map", "1", "--ndim", "1", "--unit", "-3")
    assert code == 2 and "unit [-3] is outside the output grid" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["map", "1,0"], "dilations must be positive integers"),
        (["map", "1,-2"], "dilations must be positive integers"),
        (["map", "1.5"], "dilations must be comma-separated integers"),
        (["map", ""], "at least one layer"),
        (["map", "1", "--size", "0"], "size must be a positive integer"),
        (["map", "1", "--size", "abc"], "size must be comma-separated integers"),
        (["map", "1", "--kernel", "0"], "kernel_size must be positive"),
        (["map", "1", "--ndim", "4"], "invalid choice"),
        (["map", "1", "--unit", "21,3"], "outside the output grid"),
        (["map", "1", "--unit", "3"], "unit needs 2 indices"),
        (["map", "1,2", "--kernel", "3,3,3"], "3 entries but the schedule has 2"),
        (["map", "1", "--bogus"], "unrecognized arguments: --bogus"),
        (["map", "1", "--size", "100000", "--json"], "cells"),
        (["map", "1", "--stride", "2"], "needs stride 1"),
        (["map", "1", "--causal", "--padding", "1"], "contradict"),
        (["frobnicate"], "invalid choice"),
        (["map"], "required: DILATIONS"),
        (["map", "1", "--padding", "full"], "--padding must be same, valid, causal"),
        (["map", "1", "--size", "20000", "--json"], "the JSON of a 20000x20000 map"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("rfmap: error: ")
    assert message in err


def test_missing_output_directory_writes_nothing(capsys, tmp_path):
    target = tmp_path / "missing" / "map.png"
    code, _, err = run(capsys, "plot", "1,2", "--out", str(target))
    assert code == 2 and "output directory does not exist" in err
    assert not (tmp_path / "missing").exists()
    code, _, err = run(capsys, "gallery", "--out", str(tmp_path / "a" / "b"))
    assert code == 2 and "does not exist" in err


def test_bad_suffix_and_too_large_map_write_nothing(capsys, tmp_path):
    code, _, err = run(capsys, "plot", "1", "--out", str(tmp_path / "map.txt"))
    assert code == 2 and ".png" in err
    code, _, err = run(capsys, "plot", "1", "--size", "90000", "--out", str(tmp_path / "m.png"))
    assert code == 2 and "GiB" in err
    code, _, err = run(capsys, "animate", "1,0", "--out", str(tmp_path / "m.gif"))
    assert code == 2
    assert list(tmp_path.iterdir()) == []


def test_plot_and_animate_write_files(capsys, tmp_path):
    from PIL import Image

    code, out, _ = run(capsys, "plot", "1,2,4", "--size", "15", "--out", str(tmp_path / "m.png"))
    assert code == 0 and "wrote" in out
    with Image.open(tmp_path / "m.png") as image:
        assert image.size == (450, 450)
    code, out, _ = run(
        capsys,
        "animate",
        "1,1,2",
        "--size",
        "15",
        "--out",
        str(tmp_path / "m.gif"),
        "--seconds",
        "0.5",
    )
    assert code == 0 and "3 frames" in out
    with Image.open(tmp_path / "m.gif") as gif:
        assert gif.n_frames == 3 and gif.info["duration"] == 500
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gif", "m.png"]


def test_python_dash_m_and_console_script(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "rfmap", "map", "1,1", "--size", "3", "--ndim", "1", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout)["counts"] == [2, 3, 2]
    bad = subprocess.run(
        [sys.executable, "-m", "rfmap", "map", "0"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1


def test_help_explains_each_command(capsys):
    for command in ("map", "plot", "animate", "gallery"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: rfmap " + command in capsys.readouterr().out


def test_huge_dilations_and_kernels_give_a_map_not_a_crash(capsys):
    # Far larger than the input (even past int64): only taps inside the input count.
    code, out, err = run(capsys, "map", "99999999999999999999", "--size", "5", "--ndim", "1")
    assert code == 0 and err == "" and out.rstrip().endswith(". . 1 . .")
    code, out, _ = run(capsys, "map", "1", "--kernel", str(10**12), "--size", "4", "--json")
    assert code == 0 and json.loads(out)["counts"] == [[1] * 4] * 4


def test_counts_with_thousands_of_digits_are_printed_exactly(capsys):
    # Python refuses to print ints over sys.get_int_max_str_digits() digits; rfmap must not.
    if not hasattr(sys, "set_int_max_str_digits"):
        pytest.skip("this Python has no limit on printed digits")
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)  # the smallest limit Python allows
    try:
        code, out, err = run(
            capsys, "map", ",".join(["1"] * 1500), "--size", "5", "--ndim", "1", "--json"
        )
        assert sys.get_int_max_str_digits() == 640  # restored after the command
    finally:
        sys.set_int_max_str_digits(before)
    assert code == 0 and err == ""
    data = json.loads(out)
    expected = path_map([1] * 1500, size=5, ndim=1)
    assert data["counts"] == expected.counts.tolist() and len(str(data["max"])) > 640


def test_figures_too_large_to_draw_are_refused_before_computing(capsys, tmp_path):
    code, _, err = run(capsys, "plot", "1", "--size", "8000", "--out", str(tmp_path / "m.png"))
    assert code == 2 and "a figure of a 8000x8000 map" in err and "GiB" in err
    code, _, err = run(
        capsys, "animate", "1,1,1", "--size", "6000", "--out", str(tmp_path / "m.gif")
    )
    assert code == 2 and "an animation of 3 frames" in err
    assert list(tmp_path.iterdir()) == []
