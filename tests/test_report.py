"""``rfmap.report``: the text of every result object, which ``str()`` and the CLI share."""

from __future__ import annotations

import subprocess
import sys

import pytest

import rfmap
from rfmap.cli import main
from rfmap.design import design
from rfmap.gridding import check, compare
from rfmap.paths import path_map
from rfmap.report import format_counts, format_map
from rfmap.tcn import tcn


@pytest.mark.parametrize(
    ("argv", "make"),
    [
        (["map", "1,2,4", "--size", "17"], lambda: path_map([1, 2, 4], size=17)),
        (["map", "1,1,2,3,5", "--size", "21"], lambda: path_map([1, 1, 2, 3, 5], size=21)),
        (["check", "2,2,2"], lambda: check([2, 2, 2])),
        (["check", "1,2,5", "--no-suggest"], lambda: check([1, 2, 5], suggest=False)),
        (["design", "--layers", "3"], lambda: design(3)),
        (["compare", "2,2,2", "1,2,3"], lambda: compare([[2, 2, 2], [1, 2, 3]])),
        (["tcn", "keras-tcn"], lambda: tcn("keras-tcn")),
    ],
)
def test_the_cli_prints_the_objects_own_text(capsys, argv, make):
    code = main(argv)
    out = capsys.readouterr().out
    assert code in (0, 1)  # check exits 1 on holes
    assert out == str(make()) + "\n"


def test_str_is_the_report_and_repr_stays_short():
    m = path_map([1, 2, 4], size=9)
    assert str(m) == format_map(m) and str(m).startswith("Dilation rates: (1, 2, 4)\n")
    assert repr(m).startswith("PathMap(") and "\n" not in repr(m)
    assert str(check([2, 2, 2])).splitlines()[1].startswith("verdict: GRIDDING")


def test_the_report_module_loads_neither_the_cli_nor_matplotlib():
    code = (
        "import sys, rfmap, rfmap.report; "
        "print(sorted(m for m in sys.modules if m.startswith(('rfmap.cli', 'matplotlib', "
        "'torch'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_hdc_lines_of_the_papers_own_example_agree_with_each_other():
    """(2, 2, 2): M_2 <= K passes, the common-factor condition fails, the field has holes."""
    lines = [line for line in str(check([2, 2, 2])).splitlines() if "HDC" in line or "rule" in line]
    assert lines == [
        "HDC rule (Wang et al. 2018, M_2 <= K): M = [2, 2, 2], M_2 = 2 <= K = 3 -> passes; but "
        "the rates share the factor 2, which the paper's second condition forbids",
        "  the rule DISAGREES: M_2 <= K predicts no holes, the exact answer is gridding; only "
        "the second condition (no common factor) flags this schedule (rfmap's answer is exact; "
        "the M_2 test never looks at r_1 and changes with the layer order, the field does not)",
    ]
    # once: "-> passes; the rates share the factor 2 (the rule's other condition)" followed
    # by "it predicts no holes": the other condition, failing, predicts holes
    fails = str(check([2, 4, 8]))
    assert "-> fails; and the rates share the factor 2" in fails
    assert "the rule agrees with the exact answer (gridding)" in fails
    coprime = str(check([2, 3]))  # no common factor: nothing flags it
    assert "M_2 <= K predicts no holes, the exact answer is gridding (rfmap's" in coprime
    assert "second condition" not in coprime


def test_format_counts_prints_small_maps_only():
    assert format_counts(path_map([1], size=3, ndim=1).counts) == "1 1 1"
    assert format_counts(path_map([1], size=65).counts) == ""
    assert format_counts(path_map([1], size=3, ndim=3).counts) == ""


def test_report_lives_in_the_package_namespace():
    assert rfmap.report.format_map is format_map
