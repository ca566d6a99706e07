"""rfmap.plot.compare: side-by-side comparisons, report fields and TCN maps (Agg only)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="the figures need matplotlib")

from rfmap.design import design
from rfmap.gridding import check, compare
from rfmap.plot import figure_png, new_figure, save_figure
from rfmap.plot.compare import (
    comparison_rows,
    design_html,
    plot_compare,
    plot_report,
    plot_tcn,
    report_html,
)
from rfmap.tcn import tcn


def images(fig):
    return [im for ax in fig.axes for im in ax.get_images()]


def test_shared_scale_puts_every_map_on_one_colour_scale():
    c = compare([[2, 2, 2], [1, 2, 3], [1, 2, 5]], size=33)
    fig = plot_compare(c)
    ims = images(fig)
    assert len(ims) == 3
    top = max(m.max for m in c.maps)  # 49, the (2, 2, 2) peak
    assert {im.norm.vmax for im in ims} == {float(top)}
    # the exact counts are drawn, cell for cell
    for im, m in zip(ims, c.maps, strict=True):
        assert np.array_equal(np.asarray(im.get_array()), m.counts.astype(float))
    titles = [ax.get_title() for ax in fig.axes if ax.get_images()]
    assert titles == ["(2, 2, 2)", "(1, 2, 3)", "(1, 2, 5)"]


def test_own_scales():
    c = compare([[2, 2, 2], [1, 2, 5]], size=21)
    vmax = [im.norm.vmax for im in images(plot_compare(c, shared_scale=False))]
    assert vmax == [49.0, 4.0]


def test_the_table_holds_the_exact_metrics():
    c = compare([[2, 2, 2], [1, 2, 3]], size=21)
    rows = dict(comparison_rows(c))
    assert rows["gridding-free"] == ["NO", "yes"]
    assert rows["holes (cells)"] == ["120", "0"]
    assert rows["coverage"] == ["29.0%", "100.0%"]
    assert rows["HDC M2 <= K"] == ["pass (wrong)", "pass"]
    fig = plot_compare(c)
    tables = [t for ax in fig.axes for t in ax.tables]
    assert len(tables) == 1
    cells = {cell.get_text().get_text() for cell in tables[0].get_celld().values()}
    assert {"NO", "120", "29.0%", "pass (wrong)"} <= cells
    assert len(plot_compare(c, table=False).axes) == 3  # two maps and one colour bar


def test_1d_comparison_shares_the_y_axis(tmp_path):
    c = compare([[1, 2, 4], [1, 2, 9]], size=41, ndim=1)
    fig = plot_compare(c)
    bars = [ax for ax in fig.axes if ax.patches]
    assert len(bars) == 2 and bars[0].get_ylim() == bars[1].get_ylim()
    path = save_figure(fig, tmp_path / "c.png")
    assert path.read_bytes().startswith(b"\x89PNG")


def test_3d_maps_are_compared_by_their_peak_slice():
    c = compare([[2, 2], [1, 2]], size=9, ndim=3)
    fig = plot_compare(c)
    ims = images(fig)
    assert len(ims) == 2
    for im, m in zip(ims, c.maps, strict=True):
        peak = int(np.argmax(m.factors[0]))
        assert np.array_equal(np.asarray(im.get_array()), m.counts[peak].astype(float))
    assert {im.norm.vmax for im in ims} == {27.0}  # the (2, 2) peak, shared
    titles = [ax.get_title() for ax in fig.axes if ax.get_images()]
    assert titles == ["(2, 2), axis 0 = 4", "(1, 2), axis 0 = 3"]


def test_report_figure_marks_the_holes():
    r = check([1, 2, 9], ndim=1)
    ax = plot_report(r)
    heights = [p.get_height() for p in ax.patches]
    assert len(heights) == 25 and sum(h == 0 for h in heights) == 4
    assert "GRIDDING (4 holes)" in ax.get_title()
    # one panel per distinct axis, each with its own axis's verdict
    panels = plot_report(check([2, (1, 3)])).figure.axes
    assert len(panels) == 2
    titles = [panel.get_title().replace("\n", " ") for panel in panels]  # titles wrap
    assert titles[0].endswith("(axis 0): no holes along this axis")
    # axis 1 (dilations 2, 3) misses offsets 1 and 9 of 11; 7 x 2 cells in all
    assert titles[1].endswith("(axis 1): GRIDDING (2 holes along this axis, 14 hole cells)")
    assert len(plot_report(check([1, 2])).figure.axes) == 1
    fig = new_figure()
    assert plot_report(check([2, (1, 3)]), ax=fig.add_subplot()).figure is fig


def test_tcn_figure():
    r = tcn("keras-tcn", kernel_size=2, dilations=[1, 4, 16])
    ax = plot_tcn(r)
    assert "receptive field 43 steps" in ax.get_title()
    text = "\n".join(t.get_text() for t in ax.texts)
    assert "1 + 2*(K-1)*nb_stacks*sum(dilations) = 43" in text
    assert ax.get_legend() is not None  # the holes
    big = plot_tcn(tcn("wavenet"))
    assert big.get_yscale() == "log"
    assert figure_png(big.figure).startswith(b"\x89PNG")


def test_html():
    html = report_html("a <b>", None)
    assert html == "<pre>a &lt;b&gt;</pre>"
    assert "<img" in report_html("x", new_figure())
    page = design_html(design(3, top=2))
    assert page.count("<tr>") == 3 and "1, 3, 9" in page


def test_result_objects_display():
    c = compare([[1, 2]], size=9)
    assert c._repr_png_().startswith(b"\x89PNG")
    assert check([2, 2])._repr_html_().count("<img") == 1
    huge = check([2**i for i in range(1, 45)], ndim=1, suggest=False)
    assert "<img" not in huge._repr_html_()
