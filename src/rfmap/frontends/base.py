"""What every frontend returns: the graph, and the names a user can ask for (numpy only)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from ..errors import InvalidSpecError
from ..graph import RFGraph

__all__ = ["Traced"]


@dataclass
class Traced:
    """A model turned into an :class:`~rfmap.graph.RFGraph`.

    ``aliases`` maps the names a user knows (module paths, ONNX tensor names, Flax
    scopes) to graph nodes; ``measured`` lists the nodes whose windows were measured
    with the gradient, ``notes`` what the report should say about them.
    """

    graph: RFGraph
    aliases: dict[str, str] = field(default_factory=dict)
    measured: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def resolve(self, layer: str | None) -> str:
        """The graph node of ``layer`` (a node or an alias; default: the output)."""
        if layer is None:
            return self.graph.output
        if layer in self.aliases:
            return self.aliases[layer]
        if layer in self.graph.nodes:
            return layer
        names = list(self.aliases) + list(self.graph.nodes)
        close = difflib.get_close_matches(layer, names, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise InvalidSpecError(f"no layer named {layer!r} in the model{hint}")
