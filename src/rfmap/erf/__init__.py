"""Effective receptive fields of real models (PyTorch): batched, cropped, distributed.

The effective receptive field (ERF, Luo et al. 2016) of an output unit is the map of
``|d unit / d input|`` per input pixel, averaged over many inputs: what the unit does
see, where the theoretical receptive field says what it could see.  :func:`erf` measures
it for any ``nn.Module`` and any layer of it, as the large-kernel papers do (RepLKNet,
Ding et al. 2022), but:

- **batched**: a batch of inputs costs one forward and one backward pass, since the
  centre unit of image ``n`` depends on image ``n`` only (the model runs in eval mode);
- **cropped, exactly**: the unit depends only on the input inside its theoretical
  receptive field, so when the input is larger (RepLKNet analyses 1024 px inputs) the
  model runs on a crop that holds the whole field, aligned to the effective stride --
  the same gradient for far less work.  Models with global operations (adaptive
  pooling, squeeze-excitation, attention) or an analysis that cannot be trusted run on
  the full input;
- **distributed**: under ``torchrun`` the batches are dealt round-robin to the ranks and
  the maps all-reduced, which gives the single-process result;
- **bounded**: the batch size follows from a memory budget (measured on a copy of the
  model on PyTorch's ``meta`` device), and inputs are read one batch at a time.

The result, :class:`ERFResult`, holds the mean map, the metrics of
:mod:`rfmap.erf_metrics`, and how it was computed; ``to_dict()`` is what
``rfmap erf --json`` prints.  Needs PyTorch; ``import rfmap`` does not load it.

Where each job lives:

========================  =============================================================
:mod:`.measurement`       :func:`erf`: the measurement and the loop over batches
:mod:`.result`            :class:`ERFResult`, :class:`TheoreticalRF`, :class:`Gradient`
:mod:`.inputs`            image sets, arrays and batch iterables, read batch by batch
:mod:`.model`             the model cut at a layer, and the unit's gradient
:mod:`.crop`              the unit's analytic field and the exact crop
:mod:`.memory`            meta-device probes, batch sizes, allocation limits
:mod:`.distributed`       devices, torchrun's process group, all-reduce
:mod:`.files`             :func:`save_erf` / :func:`load_erf` (``.npz``)
:mod:`rfmap.report`       the text summary (``summary_rows``, ``comparison_table``)
========================  =============================================================

``rfmap.erf`` is this package *and* the function: ``rfmap.erf(model, inputs)`` runs
:func:`erf`.
"""

from __future__ import annotations

from .._callable import make_callable
from ..report import comparison_table, summary_rows
from .distributed import process_group, resolve_device
from .files import load_erf, save_erf
from .measurement import erf
from .memory import CPU_MEMORY_BUDGET, FALLBACK_BATCH, MAX_AUTO_BATCH, MAX_BATCH_BYTES
from .result import ERFResult, ERFWarning, Gradient, TheoreticalRF

__all__ = [
    "CPU_MEMORY_BUDGET",
    "FALLBACK_BATCH",
    "MAX_AUTO_BATCH",
    "MAX_BATCH_BYTES",
    "ERFResult",
    "ERFWarning",
    "Gradient",
    "TheoreticalRF",
    "comparison_table",
    "erf",
    "load_erf",
    "process_group",
    "resolve_device",
    "save_erf",
    "summary_rows",
]

make_callable(__name__, "erf")
