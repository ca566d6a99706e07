"""Receptive fields of Keras 3 models, traced through the backend they run on.

* **JAX backend** (the one rfmap picks, see below): the model's stateless call
  (``model.stateless_call(trainable, non_trainable, x, training=False)``) is traced by
  :mod:`rfmap.frontends.jax` on abstract variables; layers are named after Keras's
  name scopes (``conv1d``, ``tcn.residual_block_0.conv1D_0``...), and a layer name is a
  valid ``layer``.
* **PyTorch backend**: a Keras model is a ``torch.nn.Module``; it goes to the PyTorch
  frontend (:func:`rfmap.trace.model_rf`, channels first), through a small wrapper that
  moves the channels last on the way in (and first on the way out) for channels-last
  models.  Layer names are then those of the PyTorch frontend, under ``model.``.
* **TensorFlow and NumPy backends**: not traced; the error says to run Keras on JAX or
  to export the model to ONNX.

Keras reads ``KERAS_BACKEND`` once, when it is first imported, and falls back to
TensorFlow.  :func:`prepare_keras_backend` (called by ``rfmap model`` before it imports
a model) sets ``KERAS_BACKEND=jax`` when Keras is not imported yet, neither the
environment nor ``~/.keras/keras.json`` chooses a backend other than TensorFlow (the
default Keras writes there), and JAX is installed.

Nothing here imports Keras, JAX or PyTorch until a model is analysed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidSpecError, ModelError

if TYPE_CHECKING:
    from ..measure import MeasuredRF
    from ..receptive import ReceptiveField
    from .jax import JaxModel

__all__ = ["KerasTorchModel", "keras_backend", "keras_rf", "prepare_keras_backend"]


def _configured_backend() -> str | None:
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    path = Path(home) / "keras.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    backend = config.get("backend") if isinstance(config, dict) else None
    return backend if isinstance(backend, str) else None


def prepare_keras_backend() -> str | None:
    """Set ``KERAS_BACKEND=jax`` if nothing else chose Keras's backend; return what was set.

    Does nothing when Keras is already imported, ``KERAS_BACKEND`` is set, a
    ``keras.json`` names a backend other than TensorFlow (Keras writes that default
    there itself, and rfmap cannot trace it), or JAX is not installed.
    """
    if "keras" in sys.modules or os.environ.get("KERAS_BACKEND"):
        return None
    if _configured_backend() not in (None, "tensorflow"):
        return None
    if importlib.util.find_spec("jax") is None:
        return None
    os.environ["KERAS_BACKEND"] = "jax"
    return "jax"


def keras_backend() -> str:
    """The backend of the imported Keras (``jax``, ``torch``, ``tensorflow``, ``numpy``)."""
    keras = sys.modules.get("keras")
    if keras is None:
        raise ModelError("Keras is not imported")
    return str(keras.backend.backend())


def _refuse(backend: str) -> ModelError:
    return ModelError(
        f"Keras models on the {backend} backend cannot be traced by rfmap: run Keras on the "
        "JAX backend (KERAS_BACKEND=jax before Keras is imported; rfmap model sets it when "
        "nothing else chooses one) or export the model to ONNX and run "
        "'rfmap model model.onnx'"
    )


def keras_jax_model(model: Any, shape: tuple[int, ...], spatial: tuple[int, ...]) -> JaxModel:
    """A Keras model on the JAX backend as a :class:`~rfmap.frontends.jax.JaxModel`."""
    import jax

    from .jax import JaxModel, _one_line

    backend = keras_backend()
    if backend != "jax":
        raise _refuse(backend)
    if not model.built:
        try:
            model.build(shape)
        except Exception as exc:
            raise ModelError(
                f"building the Keras model for input shape {list(shape)} failed: {_one_line(exc)}"
            ) from exc

    def abstract(variables: Sequence[Any]) -> list[Any]:
        return [jax.ShapeDtypeStruct(tuple(v.shape), v.dtype) for v in variables]

    variables = (abstract(model.trainable_variables), abstract(model.non_trainable_variables))

    def fn(variables: Any, x: Any) -> Any:
        trainable, non_trainable = variables
        out, _ = model.stateless_call(trainable, non_trainable, x, training=False)
        return out

    return JaxModel(fn, variables, shape, spatial, kind="keras")


class KerasTorchModel:
    """A Keras model on the PyTorch backend, analysed by the PyTorch frontend."""

    def __init__(self, model: Any, input_size: Sequence[int], channels: str = "last") -> None:
        from ..loading import parse_input_size
        from .jax import Channels, _enum

        self.input_size = parse_input_size(input_size)
        self.channels = _enum(Channels, channels, "channels")
        self.model = model
        self.module = model if self.channels is Channels.FIRST else _channels_last(model)
        self.prefix = "" if self.channels is Channels.FIRST else "model."

    def _layer(self, layer: str | None) -> str | None:
        return None if layer is None else self.prefix + layer

    def receptive_field(self, layer: str | None = None, method: str = "auto") -> ReceptiveField:
        """The receptive field of ``layer`` (a module name of the PyTorch frontend)."""
        from ..trace import model_rf

        return model_rf(self.module, self.input_size, self._layer(layer), method=method)

    def measure(self, unit: Sequence[int] | None = None, layer: str | None = None) -> MeasuredRF:
        """The gradient support of ``unit`` (see :func:`rfmap.measure.measure_rf`)."""
        from ..measure import measure_rf

        return measure_rf(self.module, self.input_size, unit, layer=self._layer(layer))


def _channels_last(model: Any) -> Any:
    """``model`` behind a module that takes channels first and feeds it channels last."""
    import torch

    class ChannelsLast(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.model = inner

        def forward(self, x: Any) -> Any:
            out = self.model(x.movedim(1, -1))
            if isinstance(out, torch.Tensor) and out.dim() == x.dim():
                out = out.movedim(-1, 1)
            return out

    return ChannelsLast(model)


def open_keras_model(
    model: Any, input_size: Sequence[int], channels: str = "last"
) -> JaxModel | KerasTorchModel:
    """The analysis of a Keras model through its backend (see the module docstring)."""
    backend = keras_backend()
    if backend == "torch":
        return KerasTorchModel(model, input_size, channels)
    if backend != "jax":
        raise _refuse(backend)
    from .jax_models import as_jax_model

    return as_jax_model(model, input_size, channels)


def keras_rf(
    model: Any,
    input_size: Sequence[int],
    layer: str | None = None,
    *,
    method: str = "auto",
    channels: str = "last",
) -> ReceptiveField:
    """Receptive field of a Keras 3 model (or of its layer ``layer``), per spatial axis.

    ``input_size`` is ``(C, *spatial)``; with ``channels="last"`` (Keras's default
    ``data_format``) the model is fed ``(1, *spatial, C)``.  See
    :func:`rfmap.frontends.jax.jax_rf` for ``method``.
    """
    if not isinstance(model, getattr(sys.modules.get("keras"), "Layer", ())):
        raise InvalidSpecError(f"keras_rf needs a keras.Model, got {type(model).__name__}")
    return open_keras_model(model, input_size, channels).receptive_field(layer, method)
