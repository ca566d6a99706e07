"""ERF figures: what is drawn (values, box, crosshair, table), without PyTorch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from rfmap import RFMapError
from rfmap.erf import ERFResult, Gradient, TheoreticalRF, comparison_table
from rfmap.erf_metrics import erf_metrics, log_normalise
from rfmap.plot import figure_png, new_figure
from rfmap.plot.erf import ERFScale, erf_colormap, plot_erf, plot_erfs


def make_result(values, theory=None, name="net", layer="layer4", count=3):
    values = np.asarray(values, dtype=np.float64)
    rf = None if theory is None else theory.receptive_field
    return ERFResult(
        map=values,
        count=count,
        name=name,
        layer=layer,
        unit=(2,) * values.ndim,
        output_shape=(5,) * values.ndim,
        input_size=(3, *values.shape),
        gradient=Gradient.ABS,
        output_relu=False,
        inputs={"kind": "noise", "count": count},
        metrics=erf_metrics(values, theoretical_rf=rf),
        theoretical=theory,
    )


def gaussian_map(n=31, sigma=4.0, peak=50.0):
    y, x = np.mgrid[:n, :n] - n // 2
    return peak * np.exp(-(x**2 + y**2) / (2 * sigma**2))


THEORY = TheoreticalRF((11, 11), (2, 2), ((10, 21), (9, 20)), False, True)


def test_heatmap_values_box_and_crosshair():
    values = gaussian_map()
    ax = plot_erf(make_result(values, THEORY))
    (image,) = ax.get_images()
    np.testing.assert_allclose(image.get_array(), log_normalise(values))
    (box,) = ax.patches
    assert box.get_xy() == (8.5, 9.5) and (box.get_width(), box.get_height()) == (11, 11)
    lines = [(tuple(line.get_xdata()), tuple(line.get_ydata())) for line in ax.lines]
    assert ((0, 1), (15, 15)) in lines and ((15, 15), (0, 1)) in lines
    assert ax.get_title().startswith("net · layer4\nn=3; area ratio 20%: ")
    assert image.get_clim() == (0, 1)


def test_scales_by_hand():
    values = np.array([[0.0, 1.0, 10.0], [100.0, 1000.0, 0.0], [0.0, 0.0, 0.0]])
    result = make_result(values)
    linear = plot_erf(result, scale="linear").get_images()[0].get_array()
    np.testing.assert_allclose(linear, values / 1000)
    log = plot_erf(result, scale=ERFScale.LOG, decades=4).get_images()[0].get_array()
    # log10(x / 1000) over 4 decades: 1 -> 0.25, 10 -> 0.5, 100 -> 0.75, 1000 -> 1, 0 -> 0.
    np.testing.assert_allclose(log, [[0, 0.25, 0.5], [0.75, 1.0, 0], [0, 0, 0]], atol=1e-12)
    with pytest.raises(RFMapError, match="scale must be one of replknet, log, linear"):
        plot_erf(result, scale="sqrt")
    with pytest.raises(RFMapError, match="decades must be positive"):
        plot_erf(result, scale="log", decades=0)
    with pytest.raises(RFMapError, match="unknown matplotlib colormap"):
        plot_erf(result, cmap="no-such-map")


def test_no_box_without_theory_and_switches():
    ax = plot_erf(make_result(gaussian_map()), crosshair=False, colorbar=False, title="T")
    assert not ax.patches and not ax.lines and ax.get_title() == "T"
    assert len(ax.figure.axes) == 1


def test_one_and_three_dimensional_maps():
    line = make_result(np.array([0.0, 1.0, 4.0, 1.0, 0.0]))
    ax = plot_erf(line)
    assert ax.lines and ax.get_xlabel() == "input position"
    cube = np.zeros((5, 7, 7))
    cube[2] = gaussian_map(7, 1.0)
    ax = plot_erf(make_result(cube))
    np.testing.assert_allclose(ax.get_images()[0].get_array(), log_normalise(cube)[2])


def test_default_colormap_is_replknets_half_of_rdylgn():
    import matplotlib as mpl

    cmap = erf_colormap()
    base = mpl.colormaps["RdYlGn"]
    np.testing.assert_allclose(cmap(0.0), base(0.5), atol=1 / 255)
    np.testing.assert_allclose(cmap(1.0), base(1.0), atol=1e-9)
    assert erf_colormap("viridis").name == "viridis"


def test_side_by_side_with_one_table(tmp_path):
    results = [
        make_result(gaussian_map(sigma=3.0), THEORY, name="small"),
        make_result(gaussian_map(sigma=6.0), None, name="large", layer=None),
        make_result(gaussian_map(sigma=9.0), THEORY, name="huge"),
    ]
    fig = plot_erfs(results, columns=2)
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == 3
    table_axes = [ax for ax in fig.axes if ax.tables]
    assert len(table_axes) == 1
    cells = {cell.get_text().get_text() for cell in table_axes[0].tables[0].get_celld().values()}
    assert {"small", "large", "huge", "area 20%", "extent/RF", "output"} <= cells
    ratio = results[0].metrics.ratio(0.2)
    assert f"{ratio:.3f}" in cells
    assert figure_png(fig).startswith(b"\x89PNG")
    no_table = plot_erfs(results[:1], table=False)
    assert not any(ax.tables for ax in no_table.axes)
    with pytest.raises(RFMapError, match="at least one result"):
        plot_erfs([])
    with pytest.raises(RFMapError, match="columns must be between"):
        plot_erfs(results, columns=0)


def test_plot_on_given_axes():
    fig = new_figure((3, 3))
    ax = fig.add_subplot()
    result = make_result(gaussian_map())
    assert result.plot(ax=ax) is ax
    assert result._repr_png_().startswith(b"\x89PNG")
    assert "<img" in result._repr_html_()


def test_drawing_a_saved_result_does_not_import_torch():
    code = (
        "import sys, numpy as np\n"
        "from rfmap.erf import ERFResult, Gradient\n"
        "from rfmap.erf_metrics import erf_metrics\n"
        "m = np.ones((9, 9))\n"
        "r = ERFResult(m, 1, 'n', None, (1, 1), (3, 3), (1, 9, 9), Gradient.ABS, False, {},"
        " erf_metrics(m))\n"
        "r._repr_png_()\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_a_global_model_draws_the_field_of_its_local_paths():
    """A squeeze-excitation model reads the whole input: the box drawn is its conv field."""
    theory = TheoreticalRF(
        (31, 31), (2, 2), ((0, 31), (0, 31)), True, True, (True, True), (7, 9), ((4, 11), (3, 12))
    )
    result = make_result(gaussian_map(), theory)
    (box,) = plot_erf(result).patches
    assert box.get_xy() == (2.5, 3.5) and (box.get_width(), box.get_height()) == (9, 7)
    assert result.metrics.theoretical_rf == (31, 31)  # make_result passes receptive_field
    _, body = comparison_table([result])
    assert body[0][-2] == "7x9 local"
    line = plot_erf(make_result(gaussian_map()[15], _one_axis(theory)))
    (span,) = [p for p in line.patches if p.get_label() == "theoretical RF"]
    assert span.get_x() == pytest.approx(2.5) and span.get_width() == pytest.approx(9)


def _one_axis(theory):
    return TheoreticalRF(
        theory.receptive_field[1:],
        theory.stride[1:],
        theory.box[1:],
        True,
        True,
        (True,),
        theory.local_receptive_field[1:],
        theory.local_box[1:],
    )
