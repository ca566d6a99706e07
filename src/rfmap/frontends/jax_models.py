"""Models that JAX can trace, as functions of (variables, x) (needs jax).

:func:`as_jax_model` recognises a plain function ``f(x)``, a Flax linen module, a Flax
nnx module and a Keras 3 model (JAX backend), and returns a
:class:`~rfmap.frontends.jax.JaxModel` whose variables are abstract wherever possible:

* **linen**: ``init`` runs under ``jax.eval_shape`` with ``jax.random.PRNGKey(0)`` (for
  the ``params`` and ``dropout`` streams) on an abstract input, so no weight is
  computed; ``apply`` gets the same key for ``dropout``.  Build the module in inference
  mode (``use_running_average=True``, ``deterministic=True``), or pass a function.
* **nnx**: the module is split into its graph and state; each call merges a copy, puts
  it in evaluation mode (``eval()``: dropout off, batch statistics from the running
  averages) and names every submodule's operations after its attribute path
  (``blocks.0.conv``).  The user's module is not modified.
* **functions**: ``f(x)`` is traced as it is; closed-over arrays are constants.

Framework modules are recognised through ``sys.modules``: nothing here imports Flax or
Keras.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import jax

from ..errors import ModelError, RFMapError
from .jax import Channels, JaxModel, _enum, _one_line, input_layout

if TYPE_CHECKING:
    from .keras import KerasTorchModel

__all__ = ["as_jax_model", "is_jax_model", "open_model"]


def _linen_module(obj: Any) -> bool:
    linen = sys.modules.get("flax.linen")
    return linen is not None and isinstance(obj, linen.Module)


def _nnx_module(obj: Any) -> bool:
    nnx = sys.modules.get("flax.nnx")
    return nnx is not None and isinstance(obj, nnx.Module)


def _keras_model(obj: Any) -> bool:
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(obj, getattr(keras, "Layer", ()))


def _torch_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def is_jax_model(obj: Any) -> bool:
    """Whether ``obj`` is a Flax module or a Keras model (not a plain function)."""
    return _linen_module(obj) or _nnx_module(obj) or _keras_model(obj)


def as_jax_model(
    model: Any, input_size: Sequence[int], channels: Channels | str = Channels.LAST
) -> JaxModel:
    """``model`` as a :class:`~rfmap.frontends.jax.JaxModel` on ``input_size`` ``(C, *spatial)``."""
    shape, spatial = input_layout(input_size, channels)
    if isinstance(model, JaxModel):
        return model
    if _keras_model(model):
        from .keras import keras_jax_model

        return keras_jax_model(model, shape, spatial)
    if _linen_module(model):
        return _linen(model, shape, spatial)
    if _nnx_module(model):
        return _nnx(model, shape, spatial)
    if _torch_module(model):
        raise ModelError(
            "a torch.nn.Module is a PyTorch model: use rfmap.model_rf (channels first)"
        )
    if callable(model):
        return JaxModel(_call_plain(model), (), shape, spatial)
    raise ModelError(
        f"cannot analyse a {type(model).__name__}: expected a function f(x), a Flax module "
        "or a Keras model"
    )


def open_model(
    model: Any, input_size: Sequence[int], channels: Channels | str = Channels.LAST
) -> JaxModel | KerasTorchModel:
    """The analysis of ``model``: a :class:`~rfmap.frontends.jax.JaxModel`, or for a
    Keras model on the PyTorch backend a :class:`~rfmap.frontends.keras.KerasTorchModel`
    (both have ``receptive_field(layer, method)`` and ``measure(unit, layer)``)."""
    if _keras_model(model):
        from .keras import open_keras_model

        return open_keras_model(model, input_size, _enum(Channels, channels, "channels").value)
    return as_jax_model(model, input_size, channels)


def _call_plain(f: Any) -> Any:
    def fn(variables: Any, x: Any) -> Any:
        return f(x)

    return fn


# -- Flax linen -------------------------------------------------------------------------


def _linen(module: Any, shape: tuple[int, ...], spatial: tuple[int, ...]) -> JaxModel:
    key = jax.random.PRNGKey(0)
    x = jax.ShapeDtypeStruct(shape, jax.numpy.float32)
    try:
        variables = jax.eval_shape(lambda k, x: module.init({"params": k, "dropout": k}, x), key, x)
    except RFMapError:
        raise
    except Exception as exc:
        raise ModelError(
            f"initialising the Flax module on input shape {list(shape)} failed: {_one_line(exc)}"
        ) from exc

    def fn(variables: Any, x: Any) -> Any:
        return module.apply(variables, x, rngs={"dropout": key})

    root = module.name if module.name else type(module).__name__
    return JaxModel(fn, variables, shape, spatial, kind="flax.linen", root=root)


# -- Flax nnx ---------------------------------------------------------------------------


def _nnx(module: Any, shape: tuple[int, ...], spatial: tuple[int, ...]) -> JaxModel:
    from flax import nnx

    graphdef, state = nnx.split(module)

    def fn(state: Any, x: Any) -> Any:
        copy = nnx.merge(graphdef, state)
        copy.eval()
        with _nnx_scopes(copy):
            return copy(x)

    return JaxModel(fn, state, shape, spatial, kind="flax.nnx", scopes="last")


@contextlib.contextmanager
def _nnx_scopes(root: Any) -> Iterator[None]:
    """While active, every submodule of ``root`` runs inside ``jax.named_scope(path)``."""
    from flax import nnx

    paths: dict[int, str] = {}
    for path, sub in nnx.iter_modules(root):
        if path:
            paths[id(sub)] = ".".join(str(p) for p in path)
    classes = {type(sub) for sub in _modules(root)}
    originals = {cls: call for cls in classes if (call := _instance_call(cls)) is not None}
    own = {cls: cls.__dict__.get("__call__") for cls in originals}
    for cls, original in originals.items():
        cls.__call__ = _scoped(original, paths)
    try:
        yield
    finally:
        for cls, method in own.items():
            if method is None:
                delattr(cls, "__call__")
            else:
                cls.__call__ = method


def _instance_call(cls: type) -> Any:
    """The ``__call__`` instances of ``cls`` run (from its MRO, not its metaclass)."""
    for base in cls.__mro__:
        if "__call__" in vars(base):
            return vars(base)["__call__"]
    return None


def _modules(root: Any) -> list[Any]:
    from flax import nnx

    return [sub for _, sub in nnx.iter_modules(root)]


def _scoped(original: Any, paths: dict[int, str]) -> Any:
    @functools.wraps(original)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        name = paths.get(id(self))
        if name is None:
            return original(self, *args, **kwargs)
        with jax.named_scope(name):
            return original(self, *args, **kwargs)

    return call
