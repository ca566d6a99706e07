"""Doctest collection of the package: skip the JAX frontend's modules without JAX."""

from __future__ import annotations

import importlib.util

collect_ignore_glob: list[str] = []
if importlib.util.find_spec("jax") is None:  # pragma: no cover - depends on the environment
    collect_ignore_glob += [
        "src/rfmap/frontends/jax.py",
        "src/rfmap/frontends/jax_measure.py",
        "src/rfmap/frontends/jax_models.py",
    ]
