"""Figures: the seed gallery, the maps' drawings, animations, Jupyter display."""

from __future__ import annotations

import itertools
import sys

import numpy as np
import pytest
from PIL import Image

from rfmap import RFMapError, conv_stack, path_map
from rfmap.plot import (
    FIBONACCI,
    GALLERY_SCHEDULES,
    Scale,
    animate_schedule,
    animation_frames,
    gallery,
    new_figure,
    plot_map,
    save_figure,
)


def test_gallery_writes_the_notebooks_figures(tmp_path):
    written = gallery(tmp_path)
    names = sorted(p.name for p in written)
    assert names == sorted(
        ["dilation_" + "_".join(map(str, s)) + ".png" for s in GALLERY_SCHEDULES]
        + ["fibonacci.gif"]
    )
    for schedule in GALLERY_SCHEDULES:
        with Image.open(tmp_path / ("dilation_" + "_".join(map(str, schedule)) + ".png")) as image:
            assert image.size == (450, 450)  # 3x3 inches at 150 dpi
            assert image.info["dpi"] == pytest.approx(
                (150, 150), abs=0.05
            )  # PNG stores dots per metre
    with Image.open(tmp_path / "fibonacci.gif") as gif:
        assert gif.n_frames == len(FIBONACCI)
        assert gif.info["loop"] == 0
        durations = []
        for frame in range(gif.n_frames):
            gif.seek(frame)
            durations.append(gif.info["duration"])
            assert gif.size == (450, 450)
        assert durations == [1000] * len(FIBONACCI)


def test_gallery_refuses_a_file_as_directory(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(RFMapError, match="not a directory"):
        gallery(tmp_path / "f")


def test_image_shows_the_exact_counts_with_title_and_colorbar():
    pmap = path_map([1, 1, 2], size=21)
    ax = plot_map(pmap, scale="linear")
    assert ax.get_title() == "Dilation rates: (1, 1, 2)"
    assert (np.asarray(ax.images[0].get_array()) == pmap.counts).all()
    assert ax.images[0].get_cmap().name.startswith("Blues")
    assert len(ax.figure.axes) == 2  # the map and its colourbar


def test_small_maps_are_annotated_with_counts():
    pmap = path_map([1, 2], size=7)
    ax = plot_map(pmap)
    texts = sorted(int(t.get_text()) for t in ax.texts)
    assert texts == sorted(int(v) for v in pmap.counts.ravel() if v)
    assert not plot_map(path_map([1, 2], size=21)).texts
    assert not plot_map(pmap, annotate=False).texts


def test_log_scale_for_large_counts():
    from matplotlib.colors import LogNorm, Normalize

    big = path_map([1] * 12, size=41)
    assert isinstance(plot_map(big).images[0].norm, LogNorm)  # auto: spans > 3 decades
    assert not isinstance(plot_map(big, scale=Scale.LINEAR).images[0].norm, LogNorm)
    small = path_map([1, 1], size=9)
    assert type(plot_map(small).images[0].norm) is Normalize
    with pytest.raises(RFMapError, match="scale must be one of auto, linear, log"):
        plot_map(small, scale="cubic")


def test_python_int_maps_can_be_drawn():
    huge = path_map([1] * 20, size=41)
    assert huge.counts.dtype == object
    ax = plot_map(huge)
    assert np.asarray(ax.images[0].get_array()).max() == pytest.approx(float(huge.max))


def test_1d_map_is_a_bar_plot_with_holes_marked():
    pmap = path_map([2, 2], size=15, ndim=1)
    ax = plot_map(pmap)
    heights = [patch.get_height() for patch in ax.patches]
    assert heights == pmap.counts.tolist()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["holes"]


def test_3d_map_is_drawn_as_slices():
    pmap = path_map([1, 2], size=9, ndim=3)
    ax = plot_map(pmap)
    images = [a for a in ax.figure.axes if a.images]
    nonempty = int(np.count_nonzero(pmap.factors[0]))
    assert len(images) == nonempty
    assert ax.figure.get_suptitle() == "Dilation rates: (1, 2)"


def test_vmax_shares_a_colour_scale():
    ax = plot_map(path_map([1], size=5), vmax=10)
    assert ax.images[0].norm.vmax == 10


def test_unknown_colormap_is_a_clear_error():
    with pytest.raises(RFMapError, match="unknown colormap"):
        plot_map(path_map([1], size=5), cmap="Bluez")


def test_drawing_leaves_no_pyplot_state():
    plot_map(path_map([1, 2], size=9))
    pyplot = sys.modules.get("matplotlib.pyplot")
    assert pyplot is None or pyplot.get_fignums() == []


def test_jupyter_display_is_the_figure():
    png = path_map([1, 2], size=9)._repr_png_()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_save_figure_checks_suffix_and_directory(tmp_path):
    fig = new_figure()
    with pytest.raises(RFMapError, match="must end in"):
        save_figure(fig, tmp_path / "x.bmp")
    with pytest.raises(RFMapError, match="does not exist"):
        save_figure(fig, tmp_path / "no" / "x.png")
    save_figure(fig, tmp_path / "x.svg")
    assert (tmp_path / "x.svg").read_text().lstrip().startswith("<?xml")


def test_animation_frames_grow_layer_by_layer_and_line_up():
    layers = conv_stack([1, 2, 4], ndim=1)
    frames = animation_frames(layers, None)
    assert len(frames) == 3
    assert len({frame.shape for frame in frames}) == 1
    assert not np.array_equal(frames[0], frames[2])


def test_animate_schedule_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "a.gif"
    from PIL import Image as PILImage

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(PILImage.Image, "save", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        animate_schedule(conv_stack([1, 2]), 9, target)
    assert list(tmp_path.iterdir()) == []


def test_unbounded_annotations_sit_on_their_cells():
    pmap = path_map([1, 2], size=None)
    ax = plot_map(pmap, annotate=True)
    cells = {
        (round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts
    }
    # each text sits at its cell's offset from the unit (the image's data coordinates)
    row0, col0 = pmap.origin
    expected = {(i + row0, j + col0): str(v) for (i, j), v in np.ndenumerate(pmap.counts) if v}
    assert cells == expected
    assert cells[(1, 1)] == str(pmap.max)


def test_long_titles_wrap_instead_of_being_cut():
    ax = plot_map(path_map([1] * 20, size=31))
    assert ax.get_title().count("\n") >= 1
    assert ax.get_title().replace("\n", " ") == "Dilation rates: (" + ", ".join(["1"] * 20) + ")"
    assert "\n" not in plot_map(path_map([1, 1, 2, 3, 5], size=21)).get_title()


def test_maps_too_large_to_draw_are_refused_with_their_size():
    from rfmap import MapTooLargeError
    from rfmap.paths import PathMap

    small = path_map([1], size=3)
    # A 7000x7000 map as a read-only view of one zero: no memory spent on the test itself.
    counts = np.broadcast_to(np.int64(0), (7000, 7000))
    huge = PathMap(small.layers, (7000, 7000), (3500, 3500), small.factors, (0, 0), counts)
    with pytest.raises(MapTooLargeError, match=r"a figure of a 7000x7000 map .* GiB"):
        plot_map(huge)


def test_check_drawable_counts_what_is_drawn():
    from rfmap import MapTooLargeError
    from rfmap.plot.maps import check_drawable

    check_drawable((4000, 4000))  # ~1.5 GB to draw: fine
    with pytest.raises(MapTooLargeError, match="a figure of a 7000x7000 map"):
        check_drawable((7000, 7000))
    with pytest.raises(MapTooLargeError, match="an animation of 8 frames of 5000x5000 maps"):
        check_drawable((5000, 5000), frames=8)
    # A 3D map draws at most 12 slices: 400**3 cells are fine, not 64M cells at full cost.
    check_drawable((400, 400, 400))
    with pytest.raises(MapTooLargeError, match="800x800x800"):
        check_drawable((800, 800, 800))


# -- where figures live: .plot() on pyplot (a notebook shows it), plot_* standalone ---------


def _pyplot_managed(fig) -> bool:
    import matplotlib.pyplot as plt

    return any(plt.figure(n) is fig for n in plt.get_fignums())


def test_dot_plot_draws_on_a_pyplot_figure_that_a_notebook_shows():
    """Jupyter's inline backend shows the pyplot figures of a cell: .plot() must make one."""
    from rfmap import check, compare, tcn

    m = path_map([1, 2, 4], size=9)
    drawn = [
        m.plot().figure,
        check([2, 2, 2]).plot().figure,
        compare([[1, 2], [2, 2]], size=9).plot(),
        tcn("keras-tcn", dilations=[1, 2]).plot().figure,
    ]
    for fig in drawn:
        assert _pyplot_managed(fig)


def test_plot_functions_and_jupyter_reprs_stay_off_pyplot():
    import matplotlib.pyplot as plt

    m = path_map([1, 2, 4], size=9)
    before = plt.get_fignums()
    fig = plot_map(m).figure
    assert not _pyplot_managed(fig) and fig.canvas.__class__.__name__ == "FigureCanvasAgg"
    assert m._repr_png_().startswith(b"\x89PNG")
    assert plt.get_fignums() == before  # nothing registered, nothing to close
    ax = new_figure().add_subplot()
    assert m.plot(ax=ax) is ax and not _pyplot_managed(ax.figure)  # a given axes is used
    assert _pyplot_managed(plot_map(m, pyplot=True).figure)  # asked for explicitly


def test_a_script_with_the_agg_backend_plots_without_warnings(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        "import matplotlib\n"
        "matplotlib.use('Agg')\n"
        "import matplotlib.pyplot as plt\n"
        "import rfmap\n"
        "ax = rfmap.path_map([1, 2, 4], size=21).plot()\n"
        "ax.figure.savefig(r'%s')\n"
        "rfmap.check([2, 2, 2]).plot()\n"
        "plt.close('all')\n" % (tmp_path / "map.png")
    )
    import subprocess

    result = subprocess.run(
        [sys.executable, "-W", "error", str(script)], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert (tmp_path / "map.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(("size", "ndim"), [(2049, 2), (1000, 2), (300, 2), (21, 2), (700, 3)])
def test_axis_tick_labels_do_not_overlap(size, ndim):
    """At N = 2049 the x labels ran into each other (a new user's trial)."""
    sizes = size if ndim == 2 else (2, size, size)
    m = path_map([1, 2, 4], size=sizes, ndim=ndim)
    fig = plot_map(m).figure
    fig.canvas.draw()
    for ax in fig.axes[:-1]:  # the last axes is the colour bar
        boxes = [t.get_window_extent() for t in _shown_xticklabels(ax)]
        assert len(boxes) >= 2
        for left, right in itertools.pairwise(boxes):
            assert left.x1 < right.x0, (size, [t.get_text() for t in _shown_xticklabels(ax)])


def _shown_xticklabels(ax):
    low, high = sorted(ax.get_xlim())
    return [
        label
        for tick, label in zip(ax.get_xticks(), ax.get_xticklabels(), strict=True)
        if low <= tick <= high and label.get_text()
    ]


def test_the_seed_figures_keep_their_ticks():
    fig = plot_map(path_map([1, 2, 4], size=21)).figure
    fig.canvas.draw()
    labels = [t.get_text() for t in _shown_xticklabels(fig.axes[0])]
    assert labels == ["0", "3", "6", "9", "12", "15", "18"]


@pytest.mark.parametrize(
    ("size", "ndim"),
    [(21, 2), (257, 2), (2049, 2), ((5, 300, 300), 3)],
)
def test_axis_tick_labels_never_overlap(size, ndim):
    """Regression: at N = 2049 the x labels of a 3-inch map ran into each other."""
    import itertools

    ax = plot_map(path_map([1, 2, 4], size=size, ndim=ndim))
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for axes in fig.axes:
        for axis in (axes.xaxis, axes.yaxis):
            labels = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
            boxes = [t.get_window_extent(renderer) for t in labels]
            for a, b in itertools.combinations(boxes, 2):
                assert not a.overlaps(b), (size, [t.get_text() for t in labels])
            if axis is axes.xaxis and axes is fig.axes[0]:
                assert len(labels) >= 3, [t.get_text() for t in labels]  # still labelled
