"""``rfmap model``: the receptive field of a PyTorch, ONNX, JAX/Flax or Keras model, per layer."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from ._common import CLIError, parse_unit, print_json

EPILOG = """\
SPEC is 'package.module:callable' (called with no arguments, e.g.
torchvision.models:resnet50) or 'path/to/file.py:callable'; --weights loads a state dict
with torch.load(weights_only=True).  A PyTorch model is run once on the meta device and
every ATen operation it runs is analysed exactly (residual additions, concatenations,
strides, dilation, padding, pooling, upsampling, attention, window partitions...); an
op without a rule is measured with the gradient instead, and the report says which.
The callable may also return (or be) a Flax module, a Keras model or a JAX function
f(x): those are traced with jax.make_jaxpr on abstract shapes (Keras on the JAX backend,
which rfmap selects when nothing else does), fed (1, *spatial, C) by default
(--channels).  Receptive field, stride (jump) and padding are per spatial axis:
output unit u reads input positions [u*stride - padding, u*stride - padding + RF).
After global pooling, Linear on a flattened map or a squeeze-excitation gate a unit
reads the whole input ('global'): the RF is then the input size (the JSON keeps the
unbounded hull and the RF of the local paths as extra keys).

examples:
  rfmap model torchvision.models:resnet50 --input-size 3,224,224
  rfmap model torchvision.models:vgg16 --input-size 3,224,224 --layer features.16
  rfmap model torchvision.models:resnet18 --input-size 3,64,64 --layer layer2 --unit 0,3
  rfmap model my_net.py:build --input-size 1,16000 --json
  rfmap model torchvision.models:alexnet --input-size 3,128,128 --layer features --measure
  rfmap model my_flax.py:ResNet --input-size 3,64,64 --layer block1.conv1
  rfmap model my_keras.py:build_tcn --input-size 3,200 --measure
  rfmap model torchvision.models:resnet50 --input-size 3,224,224 --layer layer1,layer2,layer3
  rfmap model timm:convnext_tiny --input-size 3,224,224 --stages --json

An ONNX file (SPEC ending in .onnx) is read with the onnx package (pip install
'rfmap[onnx]'); --input-size stays C,H,W whatever the model's layout, --layer takes an
ONNX node or tensor name, and operators without a rule and --measure use onnxruntime
(perturbation of the model with its weights set to ones).  Loading parses protobuf
only: no code runs and external data files are never read.
  rfmap model resnet18.onnx --input-size 3,224,224 --layer /layer2/layer2.1/relu_1/Relu

exit status: 0 ok; 1 with --measure when the gradient disagrees with the analysis;
2 on an error (bad SPEC, input size, layer or unit; a model that cannot run).
"""


def register(subparsers: Any) -> None:
    """Register ``rfmap model``."""
    p = subparsers.add_parser(
        "model",
        help="receptive field of a PyTorch, ONNX, JAX/Flax or Keras model, per layer "
        "(checked by gradient)",
        description=(
            "Receptive field, stride, padding and alignment of a PyTorch, ONNX, JAX/Flax or "
            "Keras model's output or of any intermediate layer, with a per-layer table."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "spec", metavar="SPEC", help="package.module:callable, file.py:callable or model.onnx"
    )
    p.add_argument(
        "--input-size",
        "-s",
        required=True,
        metavar="C,H,W",
        help="input size without the batch: C,L (1D), C,H,W (2D) or C,D,H,W (3D)",
    )
    p.add_argument(
        "--layer",
        "-l",
        default=None,
        metavar="NODE",
        help="a module name (layer1.0) or a row of the table (layer1.0.add); an ONNX node "
        "or tensor name; a Flax module path (block1.conv1) or a Keras layer name; "
        "default: the output.  Several, comma-separated (layer1,layer2,layer3), print one "
        "row per layer (PyTorch)",
    )
    p.add_argument(
        "--stages",
        action="store_true",
        help="one row per stage (PyTorch): timm's feature_info modules, the outputs of a model "
        "with several (feature pyramids, timm features_only), else the last module at each "
        "stride",
    )
    p.add_argument(
        "--unit",
        "-u",
        default=None,
        metavar="I,J",
        help="also print the input box of this unit of the layer (clipped and unclipped)",
    )
    p.add_argument(
        "--measure",
        action="store_true",
        help="check the analysis against the gradient of the real model for the unit "
        "(default: the centre unit); exit 1 if they disagree",
    )
    p.add_argument(
        "--method",
        choices=("auto", "analytic", "measure"),
        default="auto",
        help="auto: derive, measure only unsupported ops (default); analytic: fail on them; "
        "measure: the gradient for the whole model",
    )
    p.add_argument(
        "--channels",
        choices=("first", "last"),
        default=None,
        help="where the C of --input-size goes: last (1,H,W,C; default for JAX, Flax and "
        "Keras) or first (1,C,H,W; PyTorch and ONNX)",
    )
    p.add_argument(
        "--weights", "-w", default=None, metavar="FILE", help="a PyTorch state dict to load"
    )
    p.add_argument(
        "--all", action="store_true", help="show every node, not only those that change the RF"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_model)


def _spatial_dims(model: Any) -> int | None:
    """The number of spatial axes of the first convolution or pool, if any."""
    import torch

    nn = torch.nn
    kinds = {
        1: (nn.Conv1d, nn.ConvTranspose1d, nn.MaxPool1d, nn.AvgPool1d),
        2: (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.AvgPool2d),
        3: (nn.Conv3d, nn.ConvTranspose3d, nn.MaxPool3d, nn.AvgPool3d),
    }
    for module in model.modules():
        for ndim, types in kinds.items():
            if isinstance(module, types):
                return ndim
    return None


def _is_onnx(spec: str) -> bool:
    """A SPEC naming an ONNX file: it ends in ``.onnx``, or is an existing file that is
    not Python source."""
    return spec.lower().endswith(".onnx") or (
        os.path.isfile(spec) and not spec.lower().endswith(".py")
    )


def _layer_list(args: argparse.Namespace) -> list[str] | None:
    """The layers of ``--layer a,b,c`` (None for one layer); bad combinations are errors."""
    several = args.layer is not None and "," in args.layer
    if args.stages and args.layer is not None:
        raise CLIError("--stages and --layer cannot be combined: --stages chooses the layers")
    if not several and not args.stages:
        return None
    option = "--stages" if args.stages else "several --layer names"
    for flag, given in (("--unit", args.unit), ("--measure", args.measure), ("--all", args.all)):
        if given:
            raise CLIError(f"{flag} takes one layer, not {option}")
    if not several:
        return []
    names = [name.strip() for name in args.layer.split(",")]
    if any(not name for name in names):
        raise CLIError(f"--layer: empty layer name in {args.layer!r}")
    return names


def _run_several(
    args: argparse.Namespace, model: Any, size: tuple[int, ...], names: list[str]
) -> int:
    """``--layer a,b,c`` or ``--stages``: one row per layer, from one capture."""
    from ..trace import model_rfs, model_stages

    if names:
        result = model_rfs(model, size, names, method=args.method)
    else:
        result = model_stages(model, size, method=args.method)
    if args.json:
        print_json(result.to_dict())
    else:
        print(result)
    return 0


def run_model(args: argparse.Namespace) -> int:
    if _is_onnx(args.spec):
        return _run_onnx(args)
    import sys

    from ..frontends.keras import prepare_keras_backend
    from ..loading import load_any, parse_input_size

    parse_input_size(args.input_size)  # check the syntax before importing the model
    names = _layer_list(args)
    unit = parse_unit(args.unit)
    prepare_keras_backend()  # before the SPEC's module imports Keras
    model = load_any(args.spec, args.weights)
    torch = sys.modules.get("torch")
    keras = sys.modules.get("keras")
    is_keras = keras is not None and isinstance(model, keras.Layer)  # a Module on torch too
    if torch is not None and isinstance(model, torch.nn.Module) and not is_keras:
        from ..trace import model_rf

        if args.channels == "last":
            raise CLIError("--channels last: PyTorch models take channels first")
        size = parse_input_size(args.input_size, _spatial_dims(model))
        if names is not None:
            return _run_several(args, model, size, names)
        result = model_rf(model, size, args.layer, method=args.method)

        def measure(chosen: tuple[int, ...] | None) -> Any:
            from ..measure import measure_rf

            # the analysis knows the grid: its dims are found by size in the module's
            # output (channels first, channels last as in Swin, or tokens)
            spatial = chosen is not None and result.method != "measured"
            grid = result.grid if spatial else None
            return measure_rf(model, size, chosen, layer=args.layer, grid=grid).box

        return _report(args, result, unit, measure, "gradient check")
    if names is not None:
        raise CLIError("several --layer names and --stages are for PyTorch models")
    from ..frontends.jax_models import open_model

    session = open_model(model, parse_input_size(args.input_size), args.channels or "last")
    result = session.receptive_field(args.layer, method=args.method)
    return _report(
        args, result, unit, lambda chosen: session.measure(chosen, args.layer).box, "gradient check"
    )


def _run_onnx(args: argparse.Namespace) -> int:
    """``rfmap model FILE.onnx``: the ONNX frontend (onnx, onnxruntime to measure)."""
    from ..frontends import onnx as frontend
    from ..loading import parse_input_size

    if args.weights is not None:
        raise CLIError("--weights is for PyTorch models; an ONNX file holds its weights")
    if args.channels == "last":
        raise CLIError("--channels last: ONNX inputs are read as the file declares them")
    if _layer_list(args) is not None:
        raise CLIError("several --layer names and --stages are for PyTorch models")
    size = parse_input_size(args.input_size)
    unit = parse_unit(args.unit)
    model = frontend.load_onnx(args.spec)
    result = frontend.model_rf(model, size, args.layer, method=args.method)

    def measure(chosen: tuple[int, ...] | None) -> Any:
        return frontend.measure_rf(model, size, chosen, layer=args.layer).box

    return _report(args, result, unit, measure, "perturbation check (onnxruntime)")


def _report(
    args: argparse.Namespace,
    result: Any,
    unit: tuple[int, ...] | None,
    measure: Callable[[tuple[int, ...] | None], Any],
    check: str,
) -> int:
    """Print the result (text or JSON), the unit's box and the measured check."""
    from ..receptive import _normalise_unit, format_table

    spatial = any(n > 1 for n in result.grid)
    if unit is not None and not spatial:
        raise CLIError(f"--unit: {result.node!r} has no spatial grid (it reads the whole input)")
    out = result.to_dict()
    lines = [format_table(result, all_rows=args.all)]
    code = 0
    if unit is not None or args.measure:
        chosen = _normalise_unit(unit, result.grid, result.node)
        box = [list(b) for b in result.input_box(chosen)]
        info: dict[str, Any] = {"unit": list(chosen), "box": box}
        text = f"unit {_fmt_unit(chosen)} reads input box {_fmt_box(box)}"
        if result.method != "measured":
            info["unclipped_box"] = [list(b) for b in result.input_box(chosen, clip=False)]
            text += f" (unclipped: {_fmt_box(info['unclipped_box'])})"
        out["unit"] = info
        lines += ["", text]
        if args.measure:
            got = [list(b) for b in measure(chosen if spatial else None)]
            match = got == box
            out["measured"] = {
                "unit": list(chosen),
                "box": got,
                "analytic_box": box,
                "match": match,
            }
            verdict = "matches" if match else "DIFFERS from"
            lines += [
                "",
                f"{check}, unit {_fmt_unit(chosen)}: measured box {_fmt_box(got)} {verdict} "
                f"the analytic box {_fmt_box(box)}",
            ]
            code = 0 if match else 1
    if args.json:
        print_json(out)
    else:
        print("\n".join(lines))
    return code


def _fmt_unit(unit: tuple[int, ...]) -> str:
    return f"({', '.join(map(str, unit))})"


def _fmt_box(box: list[list[int]]) -> str:
    return " x ".join(f"[{a}, {b})" for a, b in box)


__all__ = ["register", "run_model"]
