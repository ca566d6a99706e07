"""Text and HTML reports of a :class:`~rfmap.receptive.ReceptiveField` (no computation)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .receptive import LayerRF, ReceptiveField

__all__ = ["format_table", "html_table", "summary", "table_rows"]

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


def format_table(result: ReceptiveField, all_rows: bool = True) -> str:
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

    out = [summary(result), "", fmt(header), fmt(["-" * w for w in widths])]
    out += [fmt(line) for line in lines]
    hidden = len(result.layers) - len(lines)
    if hidden:
        rows = "1 row" if hidden == 1 else f"{hidden} rows"
        out.append(f"({rows} hidden: no change to the receptive field; --all shows every row)")
    return "\n".join(out)


def summary(result: ReceptiveField) -> str:
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
    else:
        lines.append(
            f"  min RF over paths: {_axes(result.min_receptive_field)}   aligned: "
            + {True: "yes", False: "no", None: "unknown"}[result.aligned]
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


def html_table(result: ReceptiveField) -> str:
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
    text = html.escape(summary(result))
    return f"<pre>{text}</pre><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
