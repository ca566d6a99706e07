"""Loading user models from a SPEC string and an optional state-dict file (torch).

A SPEC is ``package.module:callable`` (e.g. ``torchvision.models:resnet50``) or
``path/to/file.py:callable``; the callable is called with no arguments and must return
an ``nn.Module``.  ``--weights FILE`` is loaded with ``torch.load(weights_only=True)``;
a file it refuses gets one line saying what the file is (a whole pickled model, an old
pickle protocol, a text file...), without PyTorch's own warnings.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any

from .errors import ModelError

__all__ = ["load_any", "load_model", "parse_input_size"]

#: Keys under which checkpoints commonly nest the state dict.
_NESTED = ("state_dict", "model_state_dict", "model", "net")


def _why(exc: BaseException) -> str:
    """``Type: first line of the message`` (the CLI prints one line per error)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:3])
    return shown + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")


def _import_target(spec: str) -> Any:
    if ":" not in spec:
        raise ModelError(
            f"model SPEC must be 'package.module:callable' or 'file.py:callable', got {spec!r}"
        )
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise ModelError(f"model SPEC must name a module and a callable, got {spec!r}")
    if target.endswith(".py") or os.sep in target or "/" in target:
        path = Path(target)
        if not path.is_file():
            raise ModelError(f"model file not found: {target!r}")
        name = f"_rfmap_user_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ModelError(f"cannot import model file {target!r}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise ModelError(f"importing {target!r} failed: {_why(exc)}") from exc
    else:
        try:
            module = importlib.import_module(target)
        except Exception as exc:
            raise ModelError(
                f"cannot import module {target!r} from SPEC {spec!r}: {_why(exc)}"
            ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelError(f"{target!r} has no attribute {attr!r} (SPEC {spec!r})")
        obj = getattr(obj, part)
    return obj


def load_model(spec: str, weights: str | os.PathLike[str] | None = None) -> Any:
    """Build the model named by ``spec`` (in eval mode) and optionally load a state dict.

    >>> load_model("torch.nn:Identity")
    Identity()
    """
    from .gradient import require_torch

    torch = require_torch()
    factory = _import_target(spec)
    if isinstance(factory, torch.nn.Module):
        model = factory
    elif callable(factory):
        try:
            model = factory()
        except Exception as exc:
            raise ModelError(f"calling {spec!r} failed: {_why(exc)}") from exc
    else:
        raise ModelError(f"{spec!r} is not callable")
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"{spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        _load_weights(torch, model, spec, Path(weights))
    return model.eval()


def _is_protocol_warning(item: warnings.WarningMessage) -> bool:
    return "pickle protocol" in str(item.message)


def _file_kind(path: Path) -> str:
    """``zip`` (PyTorch's format), ``pickle`` (the legacy one), ``text`` or ``other``."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return "other"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if not head:
        return "empty"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # a cut in the middle of a multi-byte character at the end is still text
        try:
            text = head[:-3].decode("utf-8") if len(head) > 3 else ""
        except UnicodeDecodeError:
            return "other"
    printable = sum(ch.isprintable() or ch in "\t\r\n" for ch in text)
    return "text" if text and printable >= 0.95 * len(text) else "other"


def _unloadable(
    name: str, path: Path, exc: BaseException, caught: list[warnings.WarningMessage]
) -> str:
    """One line saying why ``torch.load(weights_only=True)`` refused the file."""
    save = "save one with torch.save(model.state_dict(), path)"
    kind = _file_kind(path)
    if kind == "text":
        return f"cannot load weights {name!r}: it is a text file, not a PyTorch checkpoint; {save}"
    if kind == "empty":
        return f"cannot load weights {name!r}: the file is empty; {save}"
    message = str(exc)
    if "Unsupported global" in message:
        return (
            f"cannot load weights {name!r}: it holds pickled objects (e.g. a whole model "
            "saved with torch.save(model)), which torch.load(weights_only=True) refuses; "
            "save model.state_dict() instead"
        )
    protocol = next((str(item.message) for item in caught if _is_protocol_warning(item)), "")
    if protocol or ("weights_only" in message and kind in ("zip", "pickle")):
        found = re.search(r"pickle protocol (\d+)", protocol)
        which = f"pickle protocol {found.group(1)}" if found else "a pickle protocol"
        return (
            f"cannot load weights {name!r}: it was saved with {which}, which "
            "torch.load(weights_only=True) cannot read; save model.state_dict() with "
            "torch.save and its default protocol"
        )
    return (
        f"cannot load weights {name!r}: not a PyTorch checkpoint that torch.load reads "
        f"({_why(exc)}); {save}"
    )


def _load_weights(torch: Any, model: Any, spec: str, path: Path) -> None:
    """Load a state dict (possibly nested in a checkpoint) into ``model``, strictly."""
    name = str(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {name!r}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            # PyTorch warns about the pickle protocol before failing: say it in one line.
            raise ModelError(_unloadable(name, path, exc, caught)) from exc
    for item in caught:  # a successful load: pass on what PyTorch had to say, but the
        if not _is_protocol_warning(item):  # protocol note about a file it did read
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
    if isinstance(state, dict):
        for key in _NESTED:
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ModelError(f"weights file {name!r} does not hold a state dict")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {list(state[k].shape)} (the model has {list(v.shape)})"
        for k, v in own.items()
        if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != v.shape
    ]
    parts = []
    if missing:
        parts.append(f"missing {_listed(missing)}")
    if unexpected:
        parts.append(f"unexpected {_listed(unexpected)}")
    if wrong:
        parts.append(f"wrong shape {_listed(wrong)}")
    if parts:
        raise ModelError(f"weights {name!r} do not fit {spec!r}: {'; '.join(parts)}")
    try:
        model.load_state_dict(state)
    except Exception as exc:
        raise ModelError(f"weights {name!r} do not fit {spec!r}: {_why(exc)}") from exc


def parse_input_size(text: str | Any, spatial_dims: int | None = None) -> tuple[int, ...]:
    """Parse ``C,H,W`` (or ``C,L`` / ``C,D,H,W``) into positive ints.

    >>> parse_input_size("3,224,224")
    (3, 224, 224)
    """
    try:
        parts = text.split(",") if isinstance(text, str) else list(text)
        values = tuple(int(str(p).strip()) for p in parts)
    except (TypeError, ValueError):
        raise ModelError(
            f"input size must be comma-separated integers C,H,W, got {text!r}"
        ) from None
    if not 2 <= len(values) <= 4 or min(values) < 1:
        raise ModelError(
            "input size must be positive integers C,L (1D), C,H,W (2D) or C,D,H,W (3D), "
            f"got {text!r}"
        )
    if spatial_dims is not None and len(values) != spatial_dims + 1:
        raise ModelError(
            f"input size {text!r} has {len(values) - 1} spatial axes, "
            f"the model needs {spatial_dims}"
        )
    return values


def _is_torch_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _is_framework_model(obj: Any) -> bool:
    """A model object of a framework that rfmap knows (looked up in ``sys.modules``)."""
    if _is_torch_module(obj):
        return True
    for name, attr in (("flax.linen", "Module"), ("flax.nnx", "Module"), ("keras", "Layer")):
        module = sys.modules.get(name)
        kind = getattr(module, attr, None) if module is not None else None
        if isinstance(kind, type) and isinstance(obj, kind):
            return True
    return False


def _takes_one_input(obj: Any) -> bool:
    """Whether ``obj`` is a function of one required positional argument (``f(x)``)."""
    import inspect

    if isinstance(obj, type):
        return False
    try:
        parameters = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [
        p
        for p in parameters
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return len(required) == 1


def _timm_model(spec: str, weights: str | os.PathLike[str] | None) -> Any:
    """``timm:NAME``: ``timm.create_model(NAME, pretrained=False)`` (random weights)."""
    name = spec.partition(":")[2]
    try:
        import timm
    except ImportError as exc:
        raise ModelError(f"SPEC {spec!r} needs timm: pip install timm") from exc
    if name not in timm.list_models():
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ModelError(f"timm has no model {name!r}{hint}")
    try:
        model = timm.create_model(name, pretrained=False)
    except Exception as exc:
        raise ModelError(f"timm.create_model({name!r}) failed: {_why(exc)}") from exc
    if weights is not None:
        from .gradient import require_torch

        _load_weights(require_torch(), model, spec, Path(weights))
    return model.eval()


def load_any(spec: str, weights: str | os.PathLike[str] | None = None) -> Any:
    """The model SPEC names: a ``torch.nn.Module`` (as :func:`load_model` builds it), a
    Flax module, a Keras model, or a function ``f(x)`` (for JAX).

    The callable SPEC names is called with no arguments unless it is a model already or
    a function of one argument (the input), which is returned as it is.  ``weights``
    apply to PyTorch models only.
    """
    if spec.startswith("timm:"):
        return _timm_model(spec, weights)
    target = _import_target(spec)
    if _is_framework_model(target) or _takes_one_input(target):
        model = target
    elif callable(target):
        try:
            model = target()
        except Exception as exc:
            raise ModelError(f"calling {spec!r} failed: {_why(exc)}") from exc
    else:
        raise ModelError(f"{spec!r} is not callable")
    if _is_torch_module(model):
        if weights is not None:
            _load_weights(sys.modules["torch"], model, spec, Path(weights))
        return model.eval()
    if not (_is_framework_model(model) or callable(model)):
        raise ModelError(
            f"{spec!r} returned {type(model).__name__}, not a torch.nn.Module, a Flax module, "
            "a Keras model or a function f(x)"
        )
    if weights is not None:
        raise ModelError(
            "--weights loads PyTorch state dicts; give a JAX, Flax or Keras model its weights "
            "in the SPEC's function"
        )
    return model
