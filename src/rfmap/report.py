"""Text reports of rfmap's result objects: what ``str(result)`` and the CLI print.

Each result object renders itself through this module (``str(path_map)``,
``str(report)``...); the command line only chooses a report and prints it.  Plain
string formatting: nothing here imports numpy's heavy friends, torch or matplotlib,
and nothing here imports :mod:`rfmap.cli`.

========================  ====================================================
:func:`format_map`        a :class:`~rfmap.PathMap` (``rfmap map``)
:func:`format_report`     a :class:`~rfmap.GriddingReport` (``rfmap check``)
:func:`format_design`     a :class:`~rfmap.DesignResult` (``rfmap design``)
:func:`format_comparison` a :class:`~rfmap.Comparison` (``rfmap compare``)
:func:`format_tcn`        a :class:`~rfmap.TCNResult` (``rfmap tcn``)
:func:`format_erf`        :class:`~rfmap.erf.ERFResult` objects (``rfmap erf``)
:func:`format_receptive_field`  a :class:`~rfmap.receptive.ReceptiveField` and its
                          per-layer table (``rfmap model``); :func:`receptive_html`
                          for Jupyter
========================  ====================================================
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .design import DesignResult
    from .erf import ERFResult
    from .gridding import Comparison, GriddingReport
    from .paths import PathMap
    from .receptive import LayerRF, ReceptiveField
    from .tcn import TCNResult

__all__ = [
    "comparison_rows",
    "comparison_table",
    "format_comparison",
    "format_counts",
    "format_design",
    "format_erf",
    "format_map",
    "format_receptive_field",
    "format_report",
    "format_tcn",
    "receptive_html",
    "receptive_summary",
    "summary_rows",
    "table_rows",
]


def _join(values: Sequence[object], limit: int = 24) -> str:
    shown = ", ".join(map(str, values[:limit]))
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


# -- path-count maps ----------------------------------------------------------------------


def format_map(pmap: PathMap) -> str:
    """A readable summary of a map (and the map itself when it is small).

    The receptive field is the full one; when the input cuts it, the line says so and
    gives the part inside the input.  A map too large to print says why and where to
    see it.
    """
    size = "unbounded" if pmap.size is None else " x ".join(map(str, pmap.size))
    field = f"  receptive field: {' x '.join(map(str, pmap.full_receptive_field))}"
    if pmap.clipped:
        inside = " x ".join(map(str, pmap.receptive_field))
        field += f", clipped by the {size} input to {inside}"
    lines = [
        pmap.title,
        f"  kernel {pmap.kernel}, {pmap.ndim}D, input {size}"
        + ("" if pmap.unit is None else f", output unit {_format_unit(pmap.unit)}"),
        *_geometry_lines(pmap),
        field,
        f"  support: {pmap.support} cells   max: {pmap.max}   total paths: {pmap.total}",
    ]
    table = format_counts(pmap.counts)
    if table:
        if pmap.size is None:
            spans = [
                f"{o}..{o + n - 1}" for o, n in zip(pmap.origin, pmap.counts.shape, strict=True)
            ]
            lines.append(f"  offsets from the unit: {', '.join(spans)}")
        lines += ["", table]
    else:
        shape = " x ".join(map(str, pmap.counts.shape))
        lines.append(
            f"  the {shape} map is not printed: {_too_large_to_print(pmap.counts)}; see it "
            "with 'rfmap map --json' or 'rfmap plot' (in Python: .counts, .plot())"
        )
    return "\n".join(lines)


def _format_unit(unit: tuple[int, ...]) -> str:
    return str(unit[0]) if len(unit) == 1 else str(tuple(unit))


def _geometry_lines(pmap: PathMap) -> list[str]:
    """Strides and paddings, when they are not the notebook's (1 and 'same')."""
    strides = [_compact(layer.stride) for layer in pmap.layers]
    paddings = [
        layer.padding if isinstance(layer.padding, str) else _compact(layer.padding)
        for layer in pmap.layers
    ]
    if all(s == "1" for s in strides) and all(p == "same" for p in paddings):
        return []
    return [f"  strides ({', '.join(strides)}), padding ({', '.join(map(str, paddings))})"]


def _compact(values: tuple[int, ...]) -> str:
    return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))


#: The largest map :func:`format_counts` prints (cells), and its widest line (characters).
MAX_PRINTED_CELLS = 4096
MAX_PRINTED_WIDTH = 160


def _too_large_to_print(counts: np.ndarray, max_width: int = MAX_PRINTED_WIDTH) -> str:
    """Why :func:`format_counts` does not print ``counts`` ('' when it does)."""
    if counts.ndim == 3:
        return "a 3D map does not print as text"
    if counts.size > MAX_PRINTED_CELLS:
        return f"{counts.size:,} cells, more than the {MAX_PRINTED_CELLS:,} printed"
    columns = counts.shape[-1]
    width = max((len(str(v)) for v in counts.flat), default=1)
    if columns * (width + 1) > max_width:
        return f"its rows would be {columns * (width + 1) - 1} characters wide (over {max_width})"
    return ""


def format_counts(counts: np.ndarray, max_width: int = MAX_PRINTED_WIDTH) -> str:
    """The counts as an aligned text grid ('.' for zero), or '' when too large to print.

    >>> print(format_counts(np.array([[0, 1], [2, 10]])))
     .  1
     2 10
    """
    if _too_large_to_print(counts, max_width):
        return ""
    rows = counts.reshape(1, -1) if counts.ndim == 1 else counts
    width = max(len(str(v)) for v in counts.flat)
    return "\n".join(
        " ".join(("." if v == 0 else str(v)).rjust(width) for v in row) for row in rows
    )


# -- gridding reports ---------------------------------------------------------------------


def _axis_groups(report: GriddingReport) -> list[list[int]]:
    groups: list[list[int]] = []
    keys: list[tuple[Any, ...]] = []
    for a in range(report.ndim):
        key = tuple(
            (layer.kernel_size[a], layer.dilation[a], layer.stride[a]) for layer in report.layers
        )
        if key in keys:
            groups[keys.index(key)].append(a)
        else:
            keys.append(key)
            groups.append([a])
    return groups


def _axes_label(axes: list[int], ndim: int) -> str:
    if ndim == 1:
        return ""
    if len(axes) == ndim:
        return "every axis: " if ndim > 1 else ""
    return ("axis " if len(axes) == 1 else "axes ") + ", ".join(map(str, axes)) + ": "


def _why(report: GriddingReport, axis: int) -> str:
    gap = report.gaps[axis]
    if gap is None:
        return ""
    strided = any(s != 1 for layer in report.layers for s in layer.stride)
    what = "effective dilation" if strided else "dilation"
    note = " (effective dilation = dilation x the product of earlier strides)" if strided else ""
    if gap.span == 1:
        # kernel-1 layers move no path, so they do not count (their dilation may be 1)
        every = all(layer.kernel_size[axis] > 1 for layer in report.layers)
        which = "layer" if every else "layer of kernel > 1"
        return (
            f"no {which} has {what} 1: the smallest, layer {gap.layer} ({what} "
            f"{gap.dilation}), steps over offset 1 (the first hole){note}"
        )
    return (
        f"sorted by {what}, the layers below layer {gap.layer} reach a contiguous span of "
        f"{gap.span} offsets, but layer {gap.layer} steps by {gap.dilation} > {gap.span}, "
        f"so offset {gap.span} is never reached{note}"
    )


def format_report(report: GriddingReport) -> str:
    """The human explanation of a :class:`~rfmap.gridding.GriddingReport`."""
    kernel = report.kernel
    kernel_text = f"kernel {kernel}" if isinstance(kernel, int) else f"kernels {kernel}"
    paddings = {str(layer.padding) for layer in report.layers}
    padding = report.layers[0].padding
    if len(paddings) > 1:
        pad_text = "per-layer padding"
    else:
        pad_text = f"{padding} padding" if isinstance(padding, str) else "explicit padding"
    lines = [f"{report.title}   {kernel_text}, {report.ndim}D, {pad_text}"]
    field = " x ".join(map(str, report.receptive_field))
    if report.gridding_free:
        lines.append(
            f"verdict: gridding-free - every cell of the receptive field ({field}) is reached"
        )
    elif report.holes is not None:
        lines.append(
            f"verdict: GRIDDING - {report.holes:,} of the {report.receptive_field_cells:,} "
            f"cells of the receptive field ({field}) have no path (coverage "
            f"{report.coverage:.1%})"
        )
    else:
        lines.append(f"verdict: GRIDDING - the {field} receptive field has holes")
    offsets, reached = report.hole_offsets, report.reached
    for axes in _axis_groups(report):
        a = axes[0]
        label = _axes_label(axes, report.ndim)
        centre = -report.origin[a]
        if report.gaps[a] is None:
            lines.append(
                f"  {label}field {report.receptive_field[a]}, all reached "
                f"(the output unit sits at offset {centre})"
            )
            continue
        if offsets is not None and reached[a] is not None:
            holes = report.receptive_field[a] - int(reached[a] or 0)
            lines.append(
                f"  {label}field {report.receptive_field[a]}, {reached[a]} reached; {holes} "
                f"holes at offsets {_join(list(offsets[a]))} (unit at offset {centre})"
            )
        else:
            lines.append(
                f"  {label}field {report.receptive_field[a]:,}: too large to list the holes "
                f"(raise max_bytes); first hole at offset {report.gaps[a].first_hole}"  # type: ignore[union-attr]
            )
        lines.append(f"  why: {_why(report, a)}")
    if report.first_hole_layer is not None:
        if report.gridding_free:
            lines.append(
                f"  in the given order holes open after layer {report.first_hole_layer} and "
                f"later layers close them"
            )
        else:
            lines.append(
                f"  in the given order holes first open after layer {report.first_hole_layer}"
            )
    if report.peak_to_mean is not None:
        stds = ", ".join(f"{s:.3g}" for s in sorted(set(report.erf_std), key=report.erf_std.index))
        lines.append(
            f"evenness: peak/mean {report.peak_to_mean:.3g}, min/max "
            f"{report.min_nonzero_to_max:.3g}, ERF std {stds}, {report.total_paths:,} paths"
        )
    lines.extend(_format_hdc(report))
    if not report.gridding_free:
        lines.append(_format_suggestion(report))
    return "\n".join(lines)


def _format_hdc(report: GriddingReport) -> list[str]:
    rule = report.hdc
    head = "HDC rule (Wang et al. 2018, M_2 <= K)"
    if not rule.applicable:
        return [f"{head}: not applicable - {rule.reason}"]
    lines = []
    seen: list[tuple[int, ...]] = []
    distinct = len({(a.kernel, a.dilations) for a in rule.axes}) > 1
    for index, axis in enumerate(rule.axes):
        if axis.dilations in seen:
            continue
        seen.append(axis.dilations)
        verdict = "passes" if axis.passes else "fails"
        where = f" on axis {index}" if distinct else ""
        lines.append(
            f"{head}{where}: M = {list(axis.M)}, M_2 = {axis.M2} "
            f"{'<=' if axis.passes else '>'} K = {axis.kernel} -> {verdict}"
            + (
                ""
                if axis.common_factor == 1
                else f"; {'but' if axis.passes else 'and'} the rates share the factor "
                f"{axis.common_factor}, which the paper's second condition forbids"
            )
        )
    truth = "gridding-free" if report.gridding_free else "gridding"
    if rule.agrees:
        lines.append(f"  the rule agrees with the exact answer ({truth})")
    else:
        # The verdict is that of M_2 <= K (the rule's design goal); the common-factor
        # condition is reported beside it, and named when it alone catches the holes.
        said = "no holes" if rule.passes else "holes"
        only = (
            "; only the second condition (no common factor) flags this schedule"
            if rule.passes and rule.coprime is False and not report.gridding_free
            else ""
        )
        lines.append(
            f"  the rule DISAGREES: M_2 <= K predicts {said}, the exact answer is {truth}{only} "
            f"(rfmap's answer is exact; the M_2 test never looks at r_1 and changes with the "
            f"layer order, the field does not)"
        )
    return lines


def _format_suggestion(report: GriddingReport) -> str:
    fix = report.suggestion
    if fix is None:
        return f"no fix suggested: {report.suggestion_note or 'not searched'}"
    schedule = ",".join(
        str(d) if isinstance(d, int) else "x".join(map(str, d)) for d in fix.dilations
    )
    field = " x ".join(map(str, fix.receptive_field))
    old = " x ".join(map(str, report.receptive_field))
    if fix.added_layers:
        how = (
            f"adds {fix.added_layers} layer{'s' if fix.added_layers > 1 else ''} "
            f"(no {len(report.layers)}-layer schedule reaches {old} without holes)"
        )
    else:
        changed = [str(i) for i in fix.changed_layers]
        how = "changes layer" + (
            f"s {', '.join(changed[:-1])} and {changed[-1]}"
            if len(changed) > 1
            else f" {changed[0]}"
        )
    proof = "the smallest change" if fix.optimal else "the best found within the search budget"
    return (
        f"fix: {schedule} - {how}; total change {fix.distance}; receptive field {field} >= "
        f"{old}, gridding-free ({proof})"
    )


# -- schedule design ----------------------------------------------------------------------


def format_design(result: DesignResult) -> str:
    """The ranked table of a :class:`~rfmap.design.DesignResult`."""
    objective = {
        "rf": "largest receptive field",
        "flat": "flattest field, i.e. smallest peak/mean",
    }[result.objective.value]
    limits = []
    if result.max_dilation is not None:
        limits.append(f"dilations <= {result.max_dilation}")
    if result.target_rf is not None:
        limits.append(f"receptive field >= {result.target_rf}")
        if not result.depth_given:
            limits.append("fewest layers that reach it")
    from .design import max_receptive_field

    best = max_receptive_field(result.layers, result.kernel, result.max_dilation)
    lines = [
        f"Best gridding-free schedules: {result.layers} layer{'s' if result.layers > 1 else ''} "
        f"of kernel {result.kernel}" + (f" ({', '.join(limits)})" if limits else ""),
        f"objective: {result.objective.value} ({objective}); optimal, proven by branch and "
        f"bound ({result.nodes:,} nodes); the largest receptive field possible here is {best}",
    ]
    width = max(len(", ".join(map(str, c.dilations))) for c in result.candidates)
    width = max(width, len("dilations"))
    lines.append(
        f"  #  {'dilations':<{width}}  {'RF':>8}  {'peak/mean':>9}  {'min/max':>7}  "
        f"{'ERF std':>8}  HDC"
    )
    for rank, c in enumerate(result.candidates, 1):
        ptm = "n/a" if c.peak_to_mean is None else f"{float(c.peak_to_mean):.4g}"
        low = "n/a" if c.min_nonzero_to_max is None else f"{float(c.min_nonzero_to_max):.3g}"
        hdc = {True: "pass", False: "fail", None: "n/a"}[c.hdc_passes]
        lines.append(
            f"{rank:>3}  {', '.join(map(str, c.dilations)):<{width}}  {c.receptive_field:>8}  "
            f"{ptm:>9}  {low:>7}  {c.erf_std:>8.4g}  {hdc}"
        )
    if len(result.candidates) < result.top:
        count = len(result.candidates)
        lines.append(f"  (only {count} schedule{'s qualify' if count > 1 else ' qualifies'})")
    lines.append("Any order of the layers gives the same field; schedules are listed ascending.")
    return "\n".join(lines)


# -- comparisons -------------------------------------------------------------------------


def comparison_rows(comparison: Comparison) -> list[tuple[str, list[str]]]:
    """The metrics table of a comparison: ``(row label, one cell per schedule)``."""

    def axes(values: Any) -> str:
        values = list(values)
        return str(values[0]) if len(set(values)) == 1 else " x ".join(map(str, values))

    def fmt(value: float | None, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    rows: list[tuple[str, list[str]]] = []
    reports = comparison.reports
    rows.append(("gridding-free", ["yes" if r.gridding_free else "NO" for r in reports]))
    rows.append(("receptive field", [axes(r.receptive_field) for r in reports]))
    rows.append(("holes (cells)", ["n/a" if r.holes is None else str(r.holes) for r in reports]))
    rows.append(("coverage", [fmt(r.coverage, ".1%") for r in reports]))
    rows.append(("peak / mean", [fmt(r.peak_to_mean, ".3g") for r in reports]))
    rows.append(("min / max", [fmt(r.min_nonzero_to_max, ".3g") for r in reports]))
    rows.append(("ERF std", [axes(f"{s:.3g}" for s in r.erf_std) for r in reports]))
    rows.append(
        (
            "HDC M2 <= K",
            [
                "n/a"
                if r.hdc.passes is None
                else ("pass" if r.hdc.passes else "fail") + ("" if r.hdc.agrees else " (wrong)")
                for r in reports
            ],
        )
    )
    rows.append(
        (
            "holes open at layer",
            ["-" if r.first_hole_layer is None else str(r.first_hole_layer) for r in reports],
        )
    )
    rows.append(("paths in window", [str(m.total) for m in comparison.maps]))
    return rows


def format_comparison(comparison: Comparison) -> str:
    """The metrics table of a comparison, one column per schedule."""
    rows = comparison_rows(comparison)
    names = comparison.names
    label_width = max(len(label) for label, _ in rows)
    widths = [max(len(name), *(len(cells[i]) for _, cells in rows)) for i, name in enumerate(names)]
    lines = [
        " " * label_width
        + "  "
        + "  ".join(n.rjust(w) for n, w in zip(names, widths, strict=True)),
    ]
    for label, cells in rows:
        lines.append(
            label.ljust(label_width)
            + "  "
            + "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
        )
    size = " x ".join(map(str, comparison.size))
    lines.append(f"(maps on a {size} input; all other metrics exact for an unbounded input)")
    return "\n".join(lines)


# -- TCN presets -------------------------------------------------------------------------


def format_tcn(result: TCNResult) -> str:
    """The summary of a :class:`~rfmap.tcn.TCNResult`."""
    params = ", ".join(f"{k}={v}" for k, v in result.params.items())
    holes = result.holes
    lines = [
        f"{result.preset.value}: receptive field {result.receptive_field} steps "
        f"(exact, read off the path-count map)",
        f"  parameters: {params}",
        f"  structure: {result.structure}",
        f"  {len(result.convolutions)} dilated convolutions; "
        + (
            "every step of the field is reached"
            if not holes
            else f"GRIDDING: {len(holes)} steps unreached, at offsets {_join(list(holes))}"
        )
        + f"; peak/mean {result.peak_to_mean:.3g}; {result.total:,} paths",
        "  documented formulas:",
    ]
    for f in result.formulas:
        mark = "right" if f.correct else "WRONG"
        lines.append(f"    [{mark}] {f.expression} = {f.value}  - {f.source}")
        if not f.correct:
            lines.append(f"            {f.note}")
    return "\n".join(lines)


# -- effective receptive fields ----------------------------------------------------------


def summary_rows(result: ERFResult) -> list[tuple[str, str]]:
    """(label, value) pairs describing a result, for text and HTML tables."""
    m = result.metrics
    rows = [
        ("model", result.name),
        ("layer", result.layer or "(model output)"),
        (
            "unit",
            ",".join(map(str, result.unit)) + " of " + "x".join(map(str, result.output_shape)),
        ),
        ("inputs", f"{result.count} ({result.inputs.get('kind', 'inputs')})"),
        ("input size", "x".join(map(str, result.input_size))),
    ]
    if result.skipped:
        names = ", ".join(result.skipped[:5])
        more = f" and {len(result.skipped) - 5} more" if len(result.skipped) > 5 else ""
        rows.insert(4, ("skipped", f"{len(result.skipped)} unreadable: {names}{more}"))
    for item in m.area_ratios:
        value = "-" if item.ratio is None else f"{item.ratio:.4f} (side {item.side})"
        rows.append((f"area ratio {item.threshold:.0%}", value))
    if m.gaussian is not None:
        rows.append(("gaussian sigma", ", ".join(f"{s:.2f}" for s in m.gaussian.sigma)))
    rows.append(("extent (95.45%)", "x".join(map(str, m.extent))))
    theory = result.theoretical
    if theory is not None:
        text = "x".join(map(str, theory.receptive_field))
        if theory.uses_local:
            text += " (a global op reads the whole input)"
            rows.append(("theoretical RF", text))
            rows.append(("local-path RF", "x".join(map(str, theory.compared_rf))))
        else:
            rows.append(("theoretical RF", text))
    if m.extent_over_rf is not None:
        label = "extent / local RF" if theory is not None and theory.uses_local else "extent / RF"
        rows.append((label, ", ".join(f"{r:.3f}" for r in m.extent_over_rf)))
    crop = "full input" if result.crop is None else " x ".join(f"[{a},{b})" for a, b in result.crop)
    rows.append(("computed on", crop))
    return rows


def comparison_table(results: Sequence[ERFResult]) -> tuple[list[str], list[list[str]]]:
    """The comparison table: (header, rows), one row per result, all strings."""
    results = list(results)
    thresholds = [a.threshold for a in results[0].metrics.area_ratios] if results else []
    header = ["model", "layer", "n"] + [f"area {t:.0%}" for t in thresholds]
    header += ["sigma", "extent", "RF", "extent/RF"]
    rows = []
    for r in results:
        m = r.metrics
        ratios = {round(a.threshold, 6): a.ratio for a in m.area_ratios}
        row = [r.name, r.layer or "output", str(r.count)]
        for t in thresholds:
            value = ratios.get(round(t, 6))
            row.append("-" if value is None else f"{value:.3f}")
        row.append("-" if m.gaussian is None else "x".join(f"{s:.1f}" for s in m.gaussian.sigma))
        row.append("x".join(map(str, m.extent)))
        rf = r.theoretical.compared_rf if r.theoretical is not None else None
        local = r.theoretical is not None and r.theoretical.uses_local
        row.append("-" if rf is None else "x".join(map(str, rf)) + (" local" if local else ""))
        over = m.extent_over_rf
        row.append("-" if over is None else "x".join(f"{v:.2f}" for v in over))
        rows.append(row)
    return header, rows


def format_erf(results: Sequence[ERFResult]) -> str:
    """A readable summary: one block per model, then a table when there are several."""
    blocks = []
    for result in results:
        rows = summary_rows(result)
        width = max(len(k) for k, _ in rows)
        lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
        if result.crop_note and result.crop is None:
            lines.append(f"{''.ljust(width)}  ({result.crop_note})")
        blocks.append("\n".join(lines))
    if len(results) > 1:
        header, body = comparison_table(results)
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        table = [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in [header, *body]
        ]
        blocks.append("\n".join(table))
    return "\n\n".join(blocks)


# -- receptive fields of models ---------------------------------------------------


# -- rendering --------------------------------------------------------------------------


def _axes(values: Sequence[Any] | None) -> str:
    if values is None:
        return "-"
    texts = ["-" if v is None else str(v) for v in values]
    return texts[0] if len(set(texts)) == 1 else "x".join(texts)


def _flags(row: LayerRF) -> str:
    flags = []
    if row.measured:
        flags.append("measured")
    elif not row.exact:
        flags.append("after measured")
    if row.is_global:
        flags.append("global")
    if row.aligned is False:
        flags.append("misaligned")
    return ",".join(flags)


def table_rows(result: ReceptiveField, all_rows: bool = True) -> list[LayerRF]:
    """The rows to show: all of them, or those that change the receptive field."""
    if all_rows:
        return list(result.layers)
    shown: list[LayerRF] = []
    previous: LayerRF | None = None
    for row in result.layers:
        key = (row.receptive_field, row.stride, row.start, row.global_axes, row.aligned)
        if (
            previous is None
            or row is result.layers[-1]
            or row.measured
            or key
            != (
                previous.receptive_field,
                previous.stride,
                previous.start,
                previous.global_axes,
                previous.aligned,
            )
        ):
            shown.append(row)
        previous = row
    return shown


def format_receptive_field(result: ReceptiveField, all_rows: bool = True) -> str:
    """The summary and the per-layer table as aligned text."""
    header = ("node", "op", "output shape", "RF", "jump", "start", "min RF", "flags")
    lines = [
        tuple(
            [
                row.name,
                row.op,
                "-" if row.shape is None else "x".join(map(str, row.shape)),
                _axes(row.receptive_field),
                _axes(row.stride),
                _axes(row.start),
                _axes(row.min_receptive_field),
                _flags(row),
            ]
        )
        for row in table_rows(result, all_rows)
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    numeric = {3, 4, 5, 6}

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [receptive_summary(result), "", fmt(header), fmt(["-" * w for w in widths])]
    out += [fmt(line) for line in lines]
    hidden = len(result.layers) - len(lines)
    if hidden:
        rows = "1 row" if hidden == 1 else f"{hidden} rows"
        out.append(f"({rows} hidden: no change to the receptive field; --all shows every row)")
    return "\n".join(out)


def receptive_summary(result: ReceptiveField) -> str:
    size = "x".join(map(str, result.input_size))
    lines = [
        f"receptive field of {result.node!r} (input {size}, {result.method})",
        f"  receptive field: {_axes(result.receptive_field)}{_global_note(result)}",
        f"  stride (jump):   {_axes(result.stride)}",
        f"  padding:         {_axes(result.padding)}",
    ]
    local = result.local_receptive_field
    if result.is_global and local is not None and any(v is not None for v in local):
        lines.append(
            f"  local paths (through no global op): receptive field {_axes(local)}, "
            f"padding {_axes(result.local_padding)}"
        )
    shortest = result.min_receptive_field
    if shortest is not None and all(v is None for v in shortest):
        lines.append("  min RF over paths: -   (every path goes through a global op)")
    elif result.aligned is None:
        lines.append(
            "  min RF over paths: -   aligned: unknown   (the units do not follow one stride: "
            "upsampling, attention inside windows or a measured op)"
        )
    else:
        lines.append(
            f"  min RF over paths: {_axes(result.min_receptive_field)}   aligned: "
            + {True: "yes", False: "no", None: "unknown"}[result.aligned]
        )
    smallest = result.min_unit_receptive_field
    if result.aligned is None and smallest is not None:
        span = _axes(
            tuple(
                f"{a}..{b}" if a != b else str(a)
                for a, b in zip(smallest, result.unbounded_receptive_field or (), strict=False)
            )
        )
        lines.append(
            f"  per unit: fields {span}; [u*stride - padding, +RF) does not give a unit's box "
            "here: input_box(unit) (--unit) does"
        )
    if result.measured_nodes:
        measured = ", ".join(result.measured_nodes)
        lines.append(f"  measured with the gradient, not derived: {measured}")
    lines += [f"  note: {note}" for note in result.notes]
    return "\n".join(lines)


def _global_note(result: ReceptiveField) -> str:
    """What a global result reads: the whole input, or only part of it."""
    if not result.is_global:
        larger = any(r > n for r, n in zip(result.receptive_field, result.input_size, strict=True))
        return "   (larger than the input)" if larger else ""
    axes = [a for a, g in enumerate(result.global_axes) if g]
    if all(
        result.start[a] == 0 and result.receptive_field[a] == result.input_size[a] for a in axes
    ):
        what = "reads the whole input"
    else:
        box = " x ".join(
            f"[{result.start[a]}, {result.start[a] + result.receptive_field[a]})" for a in axes
        )
        what = f"reads only {box} of the input"
    hull = result.unbounded_receptive_field
    if hull is not None and hull != result.receptive_field:
        what += f"; hull of all paths on an unbounded input: {_axes(hull)}"
    return f"   (global: {what})"


def receptive_html(result: ReceptiveField) -> str:
    titles = ("node", "op", "shape", "RF", "jump", "start", "min RF", "flags")
    head = "".join(f"<th>{h}</th>" for h in titles)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(c))}</td>"
            for c in (
                row.name,
                row.op,
                "-" if row.shape is None else "x".join(map(str, row.shape)),
                _axes(row.receptive_field),
                _axes(row.stride),
                _axes(row.start),
                _axes(row.min_receptive_field),
                _flags(row),
            )
        )
        + "</tr>"
        for row in result.layers
    )
    text = html.escape(receptive_summary(result))
    return f"<pre>{text}</pre><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
