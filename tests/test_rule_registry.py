"""The rule registry of the PyTorch frontend, as docs/model.md shows it: a custom operator
and a module class taught to rfmap, checked against the gradient and the docs' output."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the PyTorch frontend needs PyTorch")

from rfmap.measure import measure_boxes  # noqa: E402
from rfmap.trace import model_rf  # noqa: E402

EXAMPLE = Path(__file__).parent.parent / "docs" / "examples" / "custom_rule.py"


def test_the_documented_example_prints_what_the_docs_say():
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines() == ["(7,) (3,) analytic", "(64,) True analytic"]
    assert "(7,) (3,) analytic" in (EXAMPLE.parent.parent / "model.md").read_text()


def test_registered_rules_agree_with_the_gradient():
    example = runpy.run_path(str(EXAMPLE), run_name="rfmap_example")
    net = example["Net"]()
    r = model_rf(net, (1, 20))
    assert r.exact and not r.measured_nodes
    units = [(u,) for u in range(20)]
    for unit, box in zip(units, measure_boxes(net, (1, 20), units), strict=True):
        assert r.input_box(unit) == box
    mixed = model_rf(example["Net"](mix=True), (1, 20))
    assert mixed.is_global and mixed.grid == (1,) and mixed.input_box() == ((0, 20),)
