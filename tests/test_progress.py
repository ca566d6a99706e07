"""``rfmap.progress``: tqdm's bar when it is installed, nothing (and no failure) without it."""

from __future__ import annotations

import io
import sys

import pytest

from rfmap.progress import ProgressBar, available, progress

pytest.importorskip("tqdm", reason="the bar itself is tqdm's")


def test_the_iterable_wrapper_yields_every_item_and_draws_a_bar():
    out = io.StringIO()
    assert list(progress(range(5), desc="sweep", unit="model", file=out)) == [0, 1, 2, 3, 4]
    text = out.getvalue()
    assert "sweep: 100%" in text and "5/5" in text and "model" in text


def test_total_and_generators():
    out = io.StringIO()
    items = (i * i for i in range(4))  # no len(): the total is given or unknown
    assert list(progress(items, total=4, file=out)) == [0, 1, 4, 9]
    assert "4/4" in out.getvalue()
    out = io.StringIO()
    assert list(progress((i for i in range(3)), file=out)) == [0, 1, 2]
    assert "3it" in out.getvalue() and "%" not in out.getvalue()  # no total: a counter


def test_disabled_draws_nothing():
    out = io.StringIO()
    assert list(progress(range(3), enabled=False, file=out)) == [0, 1, 2]
    with ProgressBar(3, enabled=False, file=out) as bar:
        bar(2, 3)
    assert out.getvalue() == "" and bar.done == 2 and not bar.drawn


def test_callback_sets_the_total_before_the_first_step():
    out = io.StringIO()
    with ProgressBar(desc="erf", unit="img", file=out) as bar:
        bar(2, 6)
        bar(6, 6)
    assert bar.done == 6 and bar.drawn
    frames = out.getvalue().split("\r")
    assert "0/6" in frames[1] and "6/6" in frames[-1]  # the total from the first frame on


def test_without_tqdm_there_is_no_bar_and_no_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # `import tqdm` raises ImportError
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    assert available() is False
    out = io.StringIO()
    assert list(progress(range(3), desc="x", file=out)) == [0, 1, 2]
    with ProgressBar(3, file=out) as bar:
        bar(3, 3)
    assert out.getvalue() == "" and bar.done == 3 and not bar.drawn


def test_available_when_installed():
    assert available() is True
