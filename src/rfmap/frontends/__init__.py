"""Frontends: each turns a model of one framework into an :class:`~rfmap.graph.RFGraph`.

A frontend computes nothing itself: it walks the model's operations, maps each one onto
the tensor algebra of :mod:`rfmap.builder` through a registry of rules keyed by
operation, and hands the graph to :func:`rfmap.receptive.graph_rf`.  Every frontend is
an optional extra and is imported only when used:

* :mod:`rfmap.frontends.torch` -- PyTorch, captured at the ATen level;
* :mod:`rfmap.frontends.onnx` -- ONNX files;
* :mod:`rfmap.frontends.jax` -- JAX functions and Flax modules (jaxprs);
* :mod:`rfmap.frontends.keras` -- Keras 3 models, through the backend they run on.
"""

from __future__ import annotations

from .base import Traced

__all__ = ["Traced"]
