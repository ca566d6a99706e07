"""``rfmap check/design/compare/tcn``: exit codes, JSON, text (golden files), bad input.

Golden text files live in tests/golden/; after an intended change of the wording,
regenerate them with ``RFMAP_OVERWRITE=1 pytest tests/test_cli_gridding.py`` and review
the diff.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rfmap.cli import main
from rfmap.gridding import check

GOLDEN = Path(__file__).parent / "golden"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("RFMAP_OVERWRITE"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs (RFMAP_OVERWRITE=1 to regenerate)"


# -- check ------------------------------------------------------------------------------------


def test_check_exit_codes(capsys):
    assert run(capsys, "check", "1,2,5")[0] == 0
    assert run(capsys, "check", "2,2,2")[0] == 1
    assert run(capsys, "check", "2,2,2", "--exit-zero")[0] == 0
    code, out, err = run(capsys, "check", "1,2,0")
    assert code == 2 and out == ""
    assert err == "rfmap: error: dilations must be positive integers, got 0 at layer 3\n"


def test_check_json_is_the_report(capsys):
    code, out, _ = run(capsys, "check", "2,2,2", "--json")
    assert code == 1
    assert json.loads(out) == json.loads(json.dumps(check([2, 2, 2]).to_dict()))
    code, out, _ = run(
        capsys, "check", "1,2,4,8", "--kernel", "2", "--ndim", "1", "--causal", "--json"
    )
    data = json.loads(out)
    assert code == 0 and data["gridding_free"] and data["origin"] == [-15]
    assert data["layers"][0]["padding"] == "causal"


@pytest.mark.parametrize(
    ("name", "argv"),
    [
        ("check_2_2_2.txt", ["check", "2,2,2"]),
        ("check_1_2_9_1d.txt", ["check", "1,2,9", "--ndim", "1"]),
        ("check_1_4_2.txt", ["check", "1,4,2"]),
        ("check_2_4_8.txt", ["check", "2,4,8"]),
        ("check_per_axis.txt", ["check", "2,1x3"]),
        (
            "check_strided.txt",
            ["check", "1,1", "--kernel", "1,3", "--stride", "2,1", "--padding", "0", "--ndim", "1"],
        ),
        ("design_4.txt", ["design", "--layers", "4"]),
        (
            "design_target_flat.txt",
            ["design", "--target-rf", "100", "--objective", "flat", "--top", "3"],
        ),
        ("compare.txt", ["compare", "2,2,2", "1,2,3", "1,2,5", "--size", "33"]),
        ("tcn_keras.txt", ["tcn", "keras-tcn"]),
        ("tcn_wavenet.txt", ["tcn", "wavenet"]),
        ("tcn_locuslab.txt", ["tcn", "locuslab"]),
    ],
)
def test_text_output(capsys, name, argv):
    _, out, err = run(capsys, *argv)
    assert err == ""
    golden(name, out)


def test_check_text_explains(capsys):
    _, out, _ = run(capsys, "check", "2,2,2")
    assert "GRIDDING - 120 of the 169 cells" in out
    assert "holes at offsets 1, 3, 5, 7, 9, 11" in out
    assert "holes first open after layer 1" in out
    assert "the rule DISAGREES" in out
    assert "fix: 1,2,3 - changes layers 1 and 3" in out


def test_why_leaves_out_kernel_one_layers(capsys):
    # layer 1 has dilation 1 but kernel 1: it moves no path, so offset 1 is a hole
    _, out, _ = run(capsys, "check", "1,2", "--kernel", "1,3", "--ndim", "1")
    assert "holes at offsets 1, 3 " in out
    assert "why: no layer of kernel > 1 has dilation 1: the smallest, layer 2 (dilation 2)" in out
    _, out, _ = run(capsys, "check", "2,2", "--ndim", "1")
    assert "why: no layer has dilation 1: the smallest, layer 1 (dilation 2)" in out


def test_design_text_counts_in_words(capsys):
    _, out, _ = run(capsys, "design", "--target-rf", "2")
    assert out.startswith("Best gridding-free schedules: 1 layer of kernel 3 (")
    assert "(only 1 schedule qualifies)" in out
    _, out, _ = run(capsys, "design", "--layers", "2", "--max-dilation", "2", "--top", "5")
    assert "2 layers of kernel 3" in out and "(only 2 schedules qualify)" in out


def test_check_out_draws_the_field(capsys, tmp_path):
    out_file = tmp_path / "field.png"
    code, out, _ = run(capsys, "check", "1,2,9", "--out", str(out_file))
    assert code == 1 and out_file.read_bytes().startswith(b"\x89PNG")
    assert f"wrote {out_file}" in out


def test_check_out_is_checked_before_any_work(capsys, tmp_path):
    code, out, err = run(capsys, "check", "2,2,2", "--out", str(tmp_path / "no" / "f.png"))
    assert code == 2 and out == "" and "output directory does not exist" in err
    code, _, err = run(capsys, "check", "2,2,2", "--out", str(tmp_path / "f.bmp"))
    assert code == 2 and "must end in" in err
    assert list(tmp_path.iterdir()) == []


def test_check_huge_field_without_out(capsys, tmp_path):
    doubling = ",".join(str(2**i) for i in range(45))
    code, out, _ = run(capsys, "check", doubling[2:], "--ndim", "1", "--no-suggest")
    assert code == 1 and "too large to list the holes" in out
    code, _, err = run(
        capsys, "check", doubling[2:], "--ndim", "1", "--out", str(tmp_path / "f.png")
    )
    assert code == 2 and "too large to draw" in err
    assert list(tmp_path.iterdir()) == []


# -- design -----------------------------------------------------------------------------------


def test_design_json(capsys):
    code, out, _ = run(capsys, "design", "--layers", "5", "--kernel", "2", "--json")
    data = json.loads(out)
    assert code == 0 and data["optimal"] is True
    assert data["candidates"][0]["dilations"] == [1, 2, 4, 8, 16]
    assert data["candidates"][0]["receptive_field"] == 32


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["design", "--layers", "0"], "layers must be an integer >= 1, got 0"),
        (["design", "--layers", "3", "--target-rf", "100"], "target_rf 100 is unreachable"),
        (["design", "--layers", "3", "--kernel", "1"], "kernel_size must be >= 2"),
        (["design"], "give layers"),
        (["design", "--layers", "3", "--objective", "wide"], "invalid choice: 'wide'"),
        (["design", "--layers", "x"], "invalid int value: 'x'"),
        (["design", "--layers", "3", "--top", "20000"], "top must be at most 10,000"),
        (["design", "--layers", "12", "--top", "3000"], "ask for fewer schedules"),
    ],
)
def test_design_bad_input(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("rfmap: error: ") and message in err and err.count("\n") == 1


def test_design_search_too_large(capsys, monkeypatch):
    import rfmap.design

    monkeypatch.setattr(rfmap.design, "DEFAULT_DESIGN_WORK", 10**7)
    code, out, err = run(capsys, "design", "--layers", "7", "--objective", "flat")
    assert code == 2 and out == ""
    assert "needs more than 10,000,000 cell updates" in err and err.count("\n") == 1


# -- compare ----------------------------------------------------------------------------------


def test_compare_json_and_figure(capsys, tmp_path):
    out_file = tmp_path / "cmp.png"
    code, out, _ = run(
        capsys, "compare", "2,2,2", "1,2,3", "--size", "21", "--json", "--out", str(out_file)
    )
    data = json.loads(out.splitlines()[0])
    assert code == 0 and [s["name"] for s in data["schedules"]] == ["(2, 2, 2)", "(1, 2, 3)"]
    assert data["size"] == [21, 21]
    assert out_file.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compare", "1,2", "1,0", "--size", "9"], "dilations must be positive integers"),
        (["compare", "1,2", "--size", "none"], "--size must be a number"),
        (["compare", "1,2", "1x2x3", "--size", "9"], "different numbers of axes"),
        (["compare", "1,2", "--size", "9,9,9"], "--size has 3 values"),
        (["compare", *["1"] * 13, "--size", "9"], "at most 12 schedules"),
        (["compare", "1,2", "--size", "9", "--dpi", "5"], "--dpi must be between"),
    ],
)
def test_compare_bad_input(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and message in err


# -- tcn --------------------------------------------------------------------------------------


def test_tcn_json_and_figure(capsys, tmp_path):
    out_file = tmp_path / "tcn.png"
    code, out, _ = run(
        capsys,
        "tcn",
        "keras-tcn",
        "--kernel",
        "2",
        "--dilations",
        "1,2,4,8",
        "--stacks",
        "2",
        "--json",
        "--out",
        str(out_file),
    )
    data = json.loads(out.splitlines()[0])
    assert code == 0 and data["receptive_field"] == 1 + 2 * 1 * 2 * 15
    assert [f["correct"] for f in data["formulas"]] == [True, False]
    assert out_file.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tcn", "resnet"], "invalid choice: 'resnet'"),
        (["tcn", "locuslab", "--dilations", "1,2"], "dilations does not apply"),
        (["tcn", "wavenet", "--dilations", "1,x"], "--dilations must be comma-separated"),
        (["tcn", "keras-tcn", "--stacks", "0"], "stacks must be an integer >= 1"),
        (["tcn", "wavenet", "--no-skip"], "skip_connections applies to keras-tcn only"),
        (["tcn", "wavenet", "--stacks", "60"], "more than the 2,000,000,000 allowed"),
    ],
)
def test_tcn_bad_input(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and message in err


def test_help_texts_explain_with_examples():
    for command in ("check", "design", "compare", "tcn"):
        result = subprocess.run(
            [sys.executable, "-m", "rfmap", command, "--help"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "examples:" in result.stdout, command
    check_help = subprocess.run(
        [sys.executable, "-m", "rfmap", "check", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "exit status" in check_help and "1  the field has holes" in check_help


def test_no_traceback_from_the_process():
    result = subprocess.run(
        [sys.executable, "-m", "rfmap", "design", "--layers", "-3"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr == "rfmap: error: layers must be an integer >= 1, got -3\n"
