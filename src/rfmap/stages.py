"""Several layers of one model at once: the result, and which layers are its stages.

:func:`rfmap.trace.model_rfs` and :func:`rfmap.trace.model_stages` capture a model once
and analyse several of its layers (one :func:`~rfmap.receptive.graph_rf` each, cheap);
they return a :class:`LayersRF`.  :func:`stage_layers` chooses the stages of a captured
model, in this order of preference:

1. timm's ``feature_info``: a list of dicts with a ``'module'`` key (any timm model) --
   those modules (names that are not modules of the model, such as HRNet's ``'stem'``,
   are left out, and the rule says so);
2. a timm ``features_only`` model (``feature_info`` is a ``FeatureInfo``) or any model
   with several tensor outputs (a feature pyramid, a backbone returning a dict) -- its
   outputs, in order, named after ``feature_info``'s modules when it has one;
3. otherwise, one stage per effective stride: the output of the last module (in the
   order they finish) at that stride, named by its shallowest module name; modules
   whose output has no spatial grid (after global pooling) are left out.  On a
   torchvision ResNet these are ``relu``, ``layer1`` ... ``layer4``; on VGG the
   activation before each max pool and ``features``.  Encoder-decoder models revisit
   strides: name their layers with ``layers=`` instead.

No torch here: the model is only read through ``feature_info`` and
``named_modules()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InvalidSpecError
from .frontends.base import Traced
from .graph import Edge, Node, RFGraph
from .receptive import Jump, ReceptiveField, graph_rf
from .windows import Whole

__all__ = ["LayersRF", "stage_layers", "timm_stage_modules"]


@dataclass(frozen=True)
class LayersRF:
    """The receptive fields of several layers of one model (one capture).

    ``layers`` pairs each requested name (a module name, ``"output"``, or a stage's
    name) with its :class:`~rfmap.receptive.ReceptiveField`; ``chosen_by`` says how
    the layers were chosen (``"layers"``, or the rule of :func:`stage_layers`).
    """

    input_size: tuple[int, ...]
    layers: tuple[tuple[str, ReceptiveField], ...]
    chosen_by: str = "layers"

    def __getitem__(self, name: str) -> ReceptiveField:
        for label, result in self.layers:
            if label == name:
                return result
        names = ", ".join(label for label, _ in self.layers)
        raise InvalidSpecError(f"no layer named {name!r}; layers: {names}")

    def __len__(self) -> int:
        return len(self.layers)

    def names(self) -> list[str]:
        """The layer names, in order."""
        return [label for label, _ in self.layers]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description: one entry per layer (summary fields, no table)."""
        return {
            "input_size": list(self.input_size),
            "chosen_by": self.chosen_by,
            "layers": [_row(label, r) for label, r in self.layers],
        }

    def __str__(self) -> str:
        return format_layers(self)


def _json_jump(j: Jump) -> int | str:
    return j if isinstance(j, int) else f"{j.numerator}/{j.denominator}"


def _row(label: str, r: ReceptiveField) -> dict[str, Any]:
    return {
        "layer": label,
        "node": r.node,
        "grid": list(r.grid),
        "receptive_field": list(r.receptive_field),
        "stride": [_json_jump(j) for j in r.stride],
        "padding": list(r.padding),
        "global_axes": list(r.global_axes),
        "is_global": r.is_global,
        "local_receptive_field": None
        if r.local_receptive_field is None
        else list(r.local_receptive_field),
        "local_padding": None if r.local_padding is None else list(r.local_padding),
        "exact": r.exact,
        "method": r.method,
        "measured_nodes": list(r.measured_nodes),
    }


def _axes(values: Sequence[Any] | None) -> str:
    if values is None:
        return "-"
    texts = ["-" if v is None else str(v) for v in values]
    return texts[0] if len(set(texts)) == 1 else "x".join(texts)


def format_layers(result: LayersRF) -> str:
    """One aligned text row per layer: grid, field, stride, padding, global axes."""
    size = "x".join(map(str, result.input_size))
    header = ("layer", "grid", "RF", "stride", "padding", "global", "method")
    lines = []
    for label, r in result.layers:
        axes = [str(a) for a, g in enumerate(r.global_axes) if g]
        lines.append(
            (
                label,
                "x".join(map(str, r.grid)),
                _axes(r.receptive_field),
                _axes(r.stride),
                _axes(r.padding),
                ("axes " + ",".join(axes)) if axes else "-",
                r.method + ("" if r.exact else " (measured parts)"),
            )
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    numeric = {2, 3, 4}

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    title = f"receptive fields of {len(result.layers)} layers (input {size}"
    title += ")" if result.chosen_by == "layers" else f"; stages: {result.chosen_by})"
    out = [title, "", fmt(header), fmt(["-" * w for w in widths])]
    out += [fmt(line) for line in lines]
    for label, r in result.layers:
        if r.measured_nodes:
            out.append(
                f"{label}: measured with the gradient, not derived: " + ", ".join(r.measured_nodes)
            )
    return "\n".join(out)


def timm_stage_modules(model: Any) -> list[str] | None:
    """The module names of timm's ``feature_info`` (a list of dicts), if the model has it."""
    info = getattr(model, "feature_info", None)
    if isinstance(info, list) and info and all(isinstance(d, dict) and "module" in d for d in info):
        return [str(d["module"]) for d in info]
    return None


def stage_layers(model: Any, traced: Traced) -> tuple[list[tuple[str, str]], str]:
    """The stages of a captured model: ``(name, graph node)`` pairs and the rule used
    (see the module docstring)."""
    info = getattr(model, "feature_info", None)
    outputs = list(traced.graph.outputs)
    modules = timm_stage_modules(model)
    if modules is not None:
        pairs, missing = [], []
        for name in modules:
            try:
                pairs.append((name, traced.resolve(name)))
            except InvalidSpecError:
                missing.append(name)  # a name of timm's own, not a module (HRNet's 'stem')
        rule = "timm feature_info"
        if missing:
            rule += f" (not modules of the model, left out: {', '.join(missing)})"
        if pairs:
            return pairs, rule
    if info is not None and callable(getattr(info, "module_name", None)):
        names = [str(n) for n in info.module_name()]
        if len(names) != len(outputs):
            names = [f"output.{i}" for i in range(len(outputs))]
        return list(zip(names, outputs, strict=True)), "the outputs (timm features_only)"
    if len(outputs) > 1:
        return [(f"output.{i}", node) for i, node in enumerate(outputs)], "the outputs"
    return _by_stride(model, traced), "the last module at each stride"


def _by_stride(model: Any, traced: Traced) -> list[tuple[str, str]]:
    graph = traced.graph
    output = graph.output
    depth = {name: name.count(".") for name, _ in model.named_modules() if name}
    # the shallowest (then the last) module to finish with each node as its output
    label: dict[str, str] = {}
    for name, node in traced.aliases.items():
        if name not in depth or node not in graph.nodes:
            continue
        if all(n == 1 for n in graph.nodes[node].extents):
            continue
        if node not in label or depth[name] <= depth[label[node]]:
            label[node] = name
    cuts = _cuts(graph, output, list(label))
    if not cuts:
        raise InvalidSpecError("the model has no module with a spatial output to call a stage")
    # one analysis gives the rows of all of them: a sink node that reads every one
    sink = Node(
        "stages.sink",
        "sink",
        (1,) * graph.ndim,
        tuple(Edge(node, tuple(Whole(n) for n in graph.nodes[node].extents)) for node, _ in cuts),
    )
    rows = {
        row.name: row for row in graph_rf(RFGraph([*graph.nodes.values(), sink]), sink.name).layers
    }
    last: dict[tuple[Any, ...], tuple[str, str, float]] = {}
    for node, position in cuts:
        key = tuple(rows[node].stride)
        old = last.pop(key, None)  # keep the dict in the order of each stride's last module
        name = label[node]
        if old is not None and old[2] == position and depth[old[0]] < depth[name]:
            name, node = old[0], old[1]  # the same output, assembled: the shallowest name
        last[key] = (name, node, position)
    return [(name, node) for name, node, _ in last.values()]


def _cuts(graph: RFGraph, output: str, candidates: Sequence[str]) -> list[tuple[str, float]]:
    """The candidates that every path from the input to ``output`` goes through, with
    their position in the graph's order, sorted by it.

    In a topological order, a node on those paths is such a cut exactly when no edge
    jumps over it (one sweep).  A node that ``output`` does not depend on (a module
    output assembled from several parts) is a cut when removing its sources
    disconnects the input from ``output`` (one search each).
    """
    names = list(graph.nodes)
    from_input = {graph.input}
    for name in names[1:]:
        if any(e.source in from_input for e in graph.nodes[name].edges):
            from_input.add(name)
    on = [n for n in reversed(graph.ancestors(output)) if n in from_input]
    pos = {n: i for i, n in enumerate(on)}
    reach = dict.fromkeys(on, -1)
    readers: dict[str, list[str]] = {n: [] for n in on}
    for name in on:
        for e in graph.nodes[name].edges:
            if e.source in pos:
                reach[e.source] = max(reach[e.source], pos[name])
                readers[e.source].append(name)
    is_cut = {}
    furthest = -1
    for name in on:
        is_cut[name] = furthest <= pos[name]
        furthest = max(furthest, reach[name])
    found: list[tuple[str, float]] = []
    for node in candidates:
        if node in pos:
            if is_cut[node] and node not in (graph.input,):
                found.append((node, float(pos[node])))
            continue
        sources = {e.source for e in graph.nodes[node].edges} & set(pos)
        if not sources:
            continue
        seen = {graph.input} - sources
        stack = list(seen)
        while stack:
            for nxt in readers[stack.pop()]:
                if nxt not in seen and nxt not in sources:
                    seen.add(nxt)
                    stack.append(nxt)
        if output not in seen:
            found.append((node, max(pos[s] for s in sources) + 0.5))
    found.sort(key=lambda item: item[1])
    return found


def several_rf(
    traced: Traced, pairs: Sequence[tuple[str, str]], input_size: Sequence[int], chosen_by: str
) -> LayersRF:
    """A :class:`LayersRF` of the graph nodes in ``pairs`` (one analysis each)."""
    layers = tuple(
        (
            name,
            graph_rf(traced.graph, node, notes=traced.notes, aliases=traced.aliases),
        )
        for name, node in pairs
    )
    return LayersRF(tuple(input_size), layers, chosen_by)
