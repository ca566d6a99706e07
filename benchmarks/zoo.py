"""The model zoo table: receptive fields of hundreds of real models, gradient-checked.

Writes docs/zoo.md (a reading guide and the tables) and docs/zoo.json.  Covered:

* ``timm``: one model per timm family (the family is the name's prefix before the first
  ``_`` or digit; the first name of each family in alphabetical order), at its default
  input size (``pretrained_cfg['input_size']``);
* ``timm-features``: a sample of timm models built with ``features_only=True``;
* ``tv``: every torchvision classification model, at 3x224x224 (inception_v3: 299);
* ``tv-seg``: every torchvision segmentation model (no aux head), at 3x224x224;
* ``tv-det``: the backbone (``model.backbone``: ResNet/MobileNet + FPN, SSD's VGG and
  MobileNet extractors) of every torchvision detection model, at 3x320x320;
* ``tv-video``: every torchvision video model at its default clip (3x16x112x112 for
  the ResNet-3D family, 3x16x224x224 for S3D, MViT and Video Swin).

Every model is built with random weights (nothing downloads) and analysed with
``rfmap.trace.model_rf`` (the output) and ``model_stages`` (its stages: timm's
``feature_info``, the outputs of multi-output models, else the last module at each
stride; segmentation models: ``backbone.layer1..4``, ``classifier`` and the output).
The analysis time is that of ``model_rf`` on the output (best of two when under 5 s),
model construction not counted.  Every stage that is local on some axis (and the
output, if local) is checked against the float64 gradient support of a linearised copy
(tests/model_oracle.py) at three interior units (video: two, with two random inputs):
each unit's ``input_box`` must equal the gradient's box.  Token outputs are read in
row-major order, but for timm's Hiera, whose blocks keep their tokens unrolled: its own
``reroll`` gives their order.  Models
over 600 M parameters are built on the meta device (analysis only; too big for a
float64 check here).

Each model runs in its own subprocess with a timeout, so a crash or a hang costs one
row; results are cached as one JSON file per model (``--cache``), keyed by a hash of
rfmap's sources and the library versions, so an interrupted run resumes and a re-run
recomputes only what the code change can affect.

    python benchmarks/zoo.py                      # everything (hours on 2 cores)
    python benchmarks/zoo.py --families --skip-check
    python benchmarks/zoo.py --only vgg11 --only tv:resnet50
    python benchmarks/zoo.py --render             # rewrite docs/ from the cache only
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
DEFAULT_CACHE = ROOT / "benchmarks" / ".zoo-cache"
DOCS = ROOT / "docs"

#: timm models sampled with ``features_only=True``.
FEATURES_ONLY = (
    "resnet50",
    "convnext_tiny",
    "efficientnet_b0",
    "swin_tiny_patch4_window7_224",
    "hrnet_w18_small",
    "regnety_002",
    "tf_efficientnet_b0",
    "vit_small_patch16_224",
)
#: Above this many parameters a model is built on the meta device (analysis only).
META_PARAMS = 600_000_000
GROUPS = ("timm", "timm-features", "tv", "tv-seg", "tv-det", "tv-video")
TITLES = {
    "timm": "timm: one model per family",
    "timm-features": "timm, features_only=True",
    "tv": "torchvision classification",
    "tv-seg": "torchvision segmentation",
    "tv-det": "torchvision detection backbones",
    "tv-video": "torchvision video",
}


# -- the list of models -------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One model of the zoo: ``group:name``."""

    group: str
    name: str
    family: str = ""

    @property
    def id(self) -> str:
        return f"{self.group}:{self.name}"


def family(name: str) -> str:
    """timm's family of a model name: the prefix before the first ``_`` or digit."""
    return re.split(r"[_\d]", name)[0]


def entries(groups: tuple[str, ...] = GROUPS) -> list[Entry]:
    """Every model of the chosen groups, in table order."""
    out: list[Entry] = []
    if "timm" in groups:
        import timm

        first: dict[str, str] = {}
        for name in sorted(timm.list_models()):
            first.setdefault(family(name), name)
        out += [Entry("timm", name, fam) for fam, name in sorted(first.items())]
    if "timm-features" in groups:
        out += [Entry("timm-features", name, family(name)) for name in FEATURES_ONLY]
    if any(g.startswith("tv") for g in groups):
        import torchvision.models as M

        modules = {
            "tv": M,
            "tv-seg": M.segmentation,
            "tv-det": M.detection,
            "tv-video": M.video,
        }
        for group, module in modules.items():
            if group in groups:
                out += [Entry(group, n, family(n)) for n in M.list_models(module=module)]
    return out


# -- building a model ---------------------------------------------------------------------


def input_size(entry: Entry, model: Any) -> tuple[int, ...]:
    """The input size (C, *spatial) the entry is analysed at."""
    if entry.group.startswith("timm"):
        cfg = getattr(model, "pretrained_cfg", None) or {}
        return tuple(cfg.get("input_size", (3, 224, 224)))
    if entry.group == "tv":
        return (3, 299, 299) if entry.name == "inception_v3" else (3, 224, 224)
    if entry.group == "tv-seg":
        return (3, 224, 224)
    if entry.group == "tv-det":
        return (3, 320, 320)
    if entry.name in ("r3d_18", "mc3_18", "r2plus1d_18"):
        return (3, 16, 112, 112)
    return (3, 16, 224, 224)


def _construct(entry: Entry) -> Any:
    if entry.group.startswith("timm"):
        import timm

        kwargs = {"features_only": True} if entry.group == "timm-features" else {}
        return timm.create_model(entry.name, pretrained=False, **kwargs)
    import torchvision.models as M

    if entry.group == "tv":
        return M.get_model(entry.name, weights=None)
    if entry.group == "tv-seg":
        return M.get_model(entry.name, weights=None, weights_backbone=None, aux_loss=False)
    if entry.group == "tv-det":
        return M.get_model(entry.name, weights=None, weights_backbone=None).backbone
    return M.get_model(entry.name, weights=None)


def build(entry: Entry) -> tuple[Any, str, int]:
    """The model in eval mode, where it was built (``cpu`` or ``meta``), its parameters."""
    import torch

    with torch.device("meta"):
        try:
            probe = _construct(entry)
            params = sum(p.numel() for p in probe.parameters())
        except Exception:
            params = -1
    if params > META_PARAMS:
        return probe.eval(), "meta", params
    model = _construct(entry).eval()
    return model, "cpu", sum(p.numel() for p in model.parameters())


def explicit_layers(entry: Entry) -> list[str | None] | None:
    """Layers named by hand where the stage rule does not fit (segmentation)."""
    if entry.group == "tv-seg":
        if "resnet" in entry.name:
            return [f"backbone.layer{i}" for i in range(1, 5)] + ["classifier", None]
        return ["backbone", "classifier", None]
    return None


# -- analysing and checking one model (in a worker process) ------------------------------


def _summary(label: str, r: Any) -> dict[str, Any]:
    def jump(j: Any) -> Any:
        return j if isinstance(j, int) else f"{j.numerator}/{j.denominator}"

    return {
        "layer": label,
        "node": r.node,
        "grid": list(r.grid),
        "receptive_field": list(r.receptive_field),
        "stride": [jump(j) for j in r.stride],
        "padding": list(r.padding),
        "global_axes": list(r.global_axes),
        "local_receptive_field": None
        if r.local_receptive_field is None
        else list(r.local_receptive_field),
        "method": r.method,
        "exact": r.exact,
        "measured_nodes": list(r.measured_nodes),
        # units that do not follow one stride (attention in windows, upsampling): the
        # smallest and largest unit field per axis
        "unit_fields": None
        if r.aligned is not None
        or r.min_unit_receptive_field is None
        or r.unbounded_receptive_field is None
        else [
            [int(a), int(b)]
            for a, b in zip(r.min_unit_receptive_field, r.unbounded_receptive_field, strict=True)
        ],
    }


def _write(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)


def _timed(func: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    value = func()
    return value, time.perf_counter() - start


def work(entry: Entry, path: Path, record: dict[str, Any], skip_check: bool) -> None:
    """Analyse (and check) one model, writing ``record`` to ``path`` as it goes."""
    import torch

    from rfmap.trace import model_rf, model_rfs, model_stages

    torch.manual_seed(0)
    model_rf(torch.nn.Sequential(torch.nn.Conv1d(1, 1, 3)), (1, 8))  # warm up the frontend
    record["status"] = "building"
    (model, built, params), t_build = _timed(lambda: build(entry))
    size = input_size(entry, model)
    record.update(
        input_size=list(size), built_on=built, params=params, times={"build": round(t_build, 3)}
    )
    record["status"] = "analysing"
    _write(path, record)
    result, t = _timed(lambda: model_rf(model, size))
    if t < 5:
        t = min(t, _timed(lambda: model_rf(model, size))[1])
    record["times"]["analysis"] = round(t, 4)
    record["output"] = _summary("output", result)
    record["graph_rows"] = len(result.layers)
    record["notes"] = list(result.notes)
    layers = explicit_layers(entry)
    if layers is None:
        stages, t = _timed(lambda: model_stages(model, size))
    else:
        stages, t = _timed(lambda: model_rfs(model, size, layers))
    record["times"]["stages"] = round(t, 4)
    record["stages_rule"] = stages.chosen_by
    record["stages"] = [_summary(label, r) for label, r in stages.layers]
    record["measured"] = sorted(
        {n for s in [record["output"], *record["stages"]] for n in s["measured_nodes"]}
    )
    record["status"] = "checking"
    _write(path, record)
    if skip_check:
        record["check"] = {"status": "skipped", "reason": "--skip-check"}
    elif built == "meta":
        record["check"] = {"status": "skipped", "reason": f"{params:,} parameters: built on meta"}
    else:
        record["check"] = check(model, size, stages, result, record, path)
    record["status"] = "ok"
    _write(path, record)


def _probes(chosen_by: str, labels: list[str]) -> list[str | None]:
    """What the oracle hooks for each stage: the module, or the i-th output."""
    if chosen_by.startswith("the outputs"):
        return [f"output.{i}" for i in range(len(labels))]
    return [None if label == "output" else label for label in labels]


def check(
    model: Any, size: tuple[int, ...], stages: Any, output: Any, record: dict, path: Path
) -> dict[str, Any]:
    """Gradient-check every entry that is local on some axis (see the module docstring)."""
    sys.path.insert(0, str(TESTS))
    from model_oracle import GradientOracle, check_boxes, interior_units

    labels = [label for label, _ in stages.layers]
    probes = _probes(stages.chosen_by, labels)
    todo: list[tuple[dict[str, Any], str | None, Any]] = []
    for summary, probe, (_, r) in zip(record["stages"], probes, stages.layers, strict=True):
        if all(r.global_axes):
            summary["check"] = {"status": "global"}
        else:
            todo.append((summary, probe, r))
    if all(output.global_axes):
        record["output"]["check"] = {"status": "global"}
    elif "output" not in labels:
        todo.append((record["output"], None, output))
    if not todo:
        return {"status": "global", "checked": 0}
    checked = len(todo)
    start = time.perf_counter()
    # three units share a backward pass where memory allows (2D, up to 256x256); out of
    # memory, the rest is checked again one unit per backward pass, then with one input
    slots = 3 if len(size) == 3 and size[1] * size[2] <= 256 * 256 else 1
    # video: two inputs and two units per entry (float64 3D models are slow here)
    inputs, per_entry = (2, 2) if len(size) == 4 else (3, 3)
    failed = errors = 0
    while todo:
        try:
            probes = [p for _, p, _ in todo]
            oracle = GradientOracle(model, size, probes, slots=slots, inputs=inputs)
        except Exception as exc:
            if _out_of_memory(exc) and (slots > 1 or inputs > 1):
                slots, inputs = (1, inputs) if slots > 1 else (1, 1)
                continue
            return {"status": "error", "error": f"{type(exc).__name__}: {_first_line(exc)}"}
        for _, probe, r in todo:
            order = _token_order(model, probe, r.grid)
            if order is not None:
                oracle.token_order[probe] = order
        retry = []
        for summary, probe, r in todo:
            units = interior_units(r.grid)[:per_entry]
            try:
                if retry:
                    raise MemoryError("retried one unit per backward pass")
                mismatches, boxes = check_boxes(oracle, probe, r, units)
            except Exception as exc:
                if _out_of_memory(exc) and (slots > 1 or inputs > 1):
                    retry.append((summary, probe, r))
                    continue
                summary["check"] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
                errors += 1
                continue
            extents = [[b - a for a, b in box] for box in boxes.values()]
            summary["check"] = {
                "status": "pass" if not mismatches else "fail",
                "inputs": inputs,
                "units": [list(u) for u in units],
                "gradient_field": [max(e[a] for e in extents) for a in range(len(r.grid))],
                "mismatches": [
                    {"unit": list(m.unit), "analysis": m.analytic, "gradient": m.gradient}
                    for m in mismatches
                ],
            }
            failed += bool(mismatches)
            _write(path, record)
        del oracle
        if retry and slots == 1:
            inputs = 1  # still out of memory: one random input per unit
        todo, slots = retry, 1
    return {
        "status": "fail" if failed else "error" if errors else "pass",
        "checked": checked,
        "failed": failed + errors,
        "time": round(time.perf_counter() - start, 2),
    }


def _token_order(model: Any, probe: str | None, grid: Any) -> Any:
    """timm Hiera's blocks keep their tokens unrolled: the token of each unit, from
    timm's own ``reroll`` (None for every other model and layer)."""
    match = re.fullmatch(r"blocks\.(\d+)", probe or "")
    if match is None or not hasattr(model, "reroll") or not hasattr(model, "unroll"):
        return None
    import torch

    count = 1
    for n in grid:
        count *= int(n)
    tokens = torch.arange(count, dtype=torch.float32).reshape(1, count, 1)
    with torch.no_grad():
        spatial = model.reroll(tokens, int(match.group(1)))
    if tuple(spatial.shape[1:-1]) != tuple(grid):
        return None
    return spatial[0, ..., 0].long().numpy()


def _out_of_memory(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, MemoryError) or "allocate memory" in text or "bad_alloc" in text


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else ""


#: Memory a worker may allocate (bytes; the machine is shared): over it a model fails
#: with an allocation error instead of waking the kernel's OOM killer.
MEMORY_LIMIT = int(os.environ.get("ZOO_MEMORY_LIMIT", 12 * 2**30))


def _limit_memory() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (ImportError, ValueError, OSError):  # pragma: no cover - not on this platform
        pass


def worker(entry_id: str, cache: Path, skip_check: bool, key: str) -> int:
    """Run one entry (in its own process) and write its record."""
    group, name = entry_id.split(":", 1)
    entry = Entry(group, name, family(name))
    path = cache / f"{_slug(entry_id)}.json"
    record: dict[str, Any] = {
        "id": entry.id,
        "group": group,
        "name": name,
        "family": entry.family,
        "key": key,
        "skip_check": skip_check,
        "status": "started",
    }
    warnings.simplefilter("ignore")
    _limit_memory()
    try:
        work(entry, path, record, skip_check)
    except Exception as exc:
        record["status"] = "error"
        record["error"] = f"{type(exc).__name__}: {_first_line(exc)}"
        record["traceback"] = traceback.format_exc()[-4000:]
        _write(path, record)
        return 1
    return 0


# -- the driver -------------------------------------------------------------------------


def _slug(entry_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", entry_id)


def code_key() -> str:
    """A hash of what decides a result: rfmap's sources, the oracle, library versions."""
    from importlib.metadata import version

    digest = hashlib.sha1()
    for path in [*sorted((ROOT / "src" / "rfmap").rglob("*.py")), TESTS / "model_oracle.py"]:
        digest.update(path.read_bytes())
    for package in ("torch", "torchvision", "timm"):
        digest.update(f"{package}={version(package)}".encode())
    return digest.hexdigest()[:12]


def load(cache: Path, entry: Entry) -> dict[str, Any] | None:
    path = cache / f"{_slug(entry.id)}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def up_to_date(record: dict[str, Any] | None, key: str, skip_check: bool, retry: bool) -> bool:
    if record is None or record.get("key") != key:
        return False
    if record.get("status") != "ok" and (retry or record.get("status") not in _FINAL):
        return False
    return skip_check or not record.get("skip_check", False)


_FINAL = {"ok", "error", "timeout", "crash"}


def run_one(entry: Entry, cache: Path, key: str, skip_check: bool, timeout: float) -> None:
    path = cache / f"{_slug(entry.id)}.json"
    path.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", entry.id]
    cmd += ["--cache", str(cache), "--key", key] + (["--skip-check"] if skip_check else [])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        status, tail = ("crash" if proc.returncode not in (0, 1) else None), proc.stderr[-3000:]
    except subprocess.TimeoutExpired as exc:
        status = "timeout"
        err = exc.stderr
        tail = (err.decode(errors="replace") if isinstance(err, bytes) else err or "")[-3000:]
    record = load(cache, entry) or {
        "id": entry.id,
        "group": entry.group,
        "name": entry.name,
        "family": entry.family,
        "key": key,
        "skip_check": skip_check,
    }
    if status is not None:
        stage = record.get("status", "started")
        record["status"] = status
        record["error"] = (
            f"{status} after {time.perf_counter() - start:.0f} s while {stage}"
            if status == "timeout"
            else f"the worker died (exit {proc.returncode}) while {stage}"
        )
        if stage == "checking" and "stages" in record:
            record["status"] = "ok"
            record["check"] = {"status": status, "reason": record.pop("error")}
        record["stderr"] = tail
        _write(path, record)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="only this model (a name or group:name; repeatable)",
    )
    parser.add_argument(
        "--families", action="store_true", help="only the timm family sample (same as --group timm)"
    )
    parser.add_argument(
        "--group",
        action="append",
        choices=GROUPS,
        default=[],
        help="only these groups (repeatable)",
    )
    parser.add_argument("--skip-check", action="store_true", help="no gradient check")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per model")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="one JSON per model")
    parser.add_argument("--out", type=Path, default=DOCS, help="where zoo.md/zoo.json go")
    parser.add_argument("--retry", action="store_true", help="re-run errors and timeouts")
    parser.add_argument(
        "--force",
        action="store_true",
        help="re-run the selected models even if their cached result is up to date "
        "(e.g. to re-time them on a quiet machine)",
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="only write the docs from the cache (whatever its code key)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.worker:
        return worker(args.worker, args.cache, args.skip_check, args.key)

    groups = tuple(args.group) or (("timm",) if args.families else GROUPS)
    todo = entries(groups)
    if args.only:
        todo = [e for e in todo if e.id in args.only or e.name in args.only]
        if not todo:
            print(f"zoo: no model named {', '.join(args.only)}", file=sys.stderr)
            return 2
    key = code_key()
    if not args.render:
        from tqdm.auto import tqdm

        pending = [
            e
            for e in todo
            if args.force or not up_to_date(load(args.cache, e), key, args.skip_check, args.retry)
        ]
        bar = tqdm(pending, desc="zoo", unit="model")
        for entry in bar:
            bar.set_postfix_str(entry.id)
            run_one(entry, args.cache, key, args.skip_check, args.timeout)
        bar.close()
    records = [r for e in entries(groups if args.only else GROUPS) if (r := load(args.cache, e))]
    write_docs(records, args.out, key)
    print(f"zoo: {len(records)} models in {args.out / 'zoo.md'} and {args.out / 'zoo.json'}")
    return 0


# -- the docs -------------------------------------------------------------------------------


def _axes(values: list[Any] | None) -> str:
    if values is None:
        return "-"
    texts = ["-" if v is None else str(v) for v in values]
    return texts[0] if len(set(texts)) == 1 else "x".join(texts)


def _triple(s: dict[str, Any]) -> str:
    text = f"{_axes(s['receptive_field'])}/{_axes(s['stride'])}/{_axes(s['padding'])}"
    spans = s.get("unit_fields")
    if spans and any(a != b for a, b in spans) and not all(s["global_axes"]):
        text += " (units " + _axes([f"{a}..{b}" if a != b else str(a) for a, b in spans]) + ")"
    if all(s["global_axes"]):
        text += " G"
    elif any(s["global_axes"]):
        text += " G" + "".join(str(a) for a, g in enumerate(s["global_axes"]) if g)
    check = s.get("check", {}).get("status")
    if check == "fail":
        text += " **FAIL**"
    return text


def _verdict(record: dict[str, Any]) -> str:
    check = record.get("check", {})
    status = check.get("status", "-")
    if status == "pass":
        return f"pass ({check['checked']})"
    if status == "fail":
        return f"**FAIL** ({check['failed']}/{check['checked']})"
    if status == "global":
        return "global"
    return status


def problems(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Models with a traceback, a measured op, a time over 1 s, or a failing check."""
    out: dict[str, list[str]] = {"error": [], "measured": [], "slow": [], "fail": []}
    for r in records:
        if r.get("status") != "ok":
            out["error"].append(f"`{r['id']}`: {r.get('error', r.get('status'))}")
            continue
        if r["output"]["method"] == "measured":
            notes = "; ".join(r.get("notes", [])) or "measured as a whole"
            out["measured"].append(f"`{r['id']}`: {_cell(notes)}")
        elif r.get("measured"):
            out["measured"].append(
                f"`{r['id']}`: {', '.join(r['measured'][:6])}"
                + (" ..." if len(r["measured"]) > 6 else "")
            )
        t = r.get("times", {}).get("analysis")
        if t is not None and t > 1:
            out["slow"].append(f"`{r['id']}`: {t:.2f} s ({r.get('graph_rows', '?')} rows)")
        check = r.get("check", {})
        if check.get("status") in ("fail", "error", "timeout", "crash"):
            lines = []
            for s in [*r.get("stages", []), r.get("output", {})]:
                c = s.get("check", {})
                if c.get("status") == "fail":
                    for m in c["mismatches"]:
                        lines.append(
                            f"{s['layer']} unit {m['unit']}: analysis "
                            f"{_box(m['analysis'])}, gradient {_box(m['gradient'])}"
                        )
                elif c.get("status") == "error":
                    lines.append(f"{s['layer']}: {c['error']}")
            reason = check.get("reason") or check.get("error") or ""
            detail = "; ".join(lines[:4]) + (" ..." if len(lines) > 4 else "")
            out["fail"].append(f"`{r['id']}` ({check['status']}): {detail or reason}")
    return out


def _box(box: list[list[int]]) -> str:
    return " x ".join(f"[{a}, {b})" for a, b in box)


GUIDE = """\
# The model zoo: receptive fields of {count} models

Generated by `python benchmarks/zoo.py` (code key `{key}`; torch {torch}, torchvision
{torchvision}, timm {timm}).  Every model is built with random weights; nothing is
downloaded.  Regenerate with that one command: it shows a progress bar, caches one JSON
file per model under `benchmarks/.zoo-cache/` (so an interrupted run resumes), and runs
each model in its own process with a timeout.  `--only NAME`, `--families`, `--group`
and `--skip-check` narrow it down; `--render` rewrites this page from the cache.
The same data, with every stage's node, grid and check, is in `docs/zoo.json`.

## Reading the tables

* **input**: the input size analysed (channels, then the spatial axes).
* **output**: the receptive field of the model output, as `RF/stride/padding` per axis
  (one number when all axes agree, else `HxW`).  `G` marks a *global* output: some
  operation (global pooling, attention over all tokens, `Linear` on a flattened map, a
  squeeze-excitation gate) makes every unit read the whole input; `RF` is then the input
  size and `padding` 0.  `G1` means global along axis 1 only.
* **stages**: the same triple for each stage -- timm's `feature_info` modules, the outputs
  of a multi-output model (`features_only`, FPN backbones), or the last module at each
  stride (`rfmap model --stages`).  The stride is the effective stride (jump); unit `u`
  of a local stage reads `[u*stride - padding, u*stride - padding + RF)`, except where
  units do not follow one stride (attention inside windows, upsampling, pooled tokens):
  there `RF` is the largest unit's field, `(units A..B)` gives the smallest and largest
  per axis, and `rfmap model --unit` (or `input_box`) gives any unit's box.
* **method**: *derived* when every operation the model runs has a rule (the analysis is
  exact); *measured* when some operation has none and was measured on its own with the
  gradient (`measured` lists them below).  *meta* marks a model too big to build here
  in memory (over 600 M parameters): analysed on the meta device, not gradient-checked.
* **time**: the analysis of the output with `rfmap.trace.model_rf` (model construction
  not counted; best of two runs).
* **check**: every stage that is local on some axis, and a local output, is checked
  against the float64 gradient support of a linearised copy of the real model
  (tests/model_oracle.py: activations the identity, max pools window sums, positive
  weights, three random positive inputs, a softmax weight below e^-50 of its row's
  largest counted as zero so that shifted-window masks of -100 are followed): at three
  interior units each (video: two units, two inputs; one input where two do not fit in
  memory), the analysis' input box must equal
  the gradient's.  `pass (n)`: n
  entries checked, all equal; `global`: nothing local to check; `**FAIL**`: see below.

"""


def write_docs(records: list[dict[str, Any]], out: Path, key: str) -> None:
    from importlib.metadata import version

    out.mkdir(parents=True, exist_ok=True)
    versions = {p: version(p) for p in ("torch", "torchvision", "timm")}
    lines = [GUIDE.format(count=len(records), key=key, **versions)]
    ok = [r for r in records if r.get("status") == "ok"]
    found = problems(records)
    timm_fam = [r for r in ok if r["group"] == "timm"]
    derived = [r for r in timm_fam if not r.get("measured")]
    lines.append("## Summary\n")
    lines.append(
        f"* {len(records)} models, {len(ok)} analysed; {len(found['error'])} failed "
        "(traceback, timeout or crash)."
    )
    if timm_fam:
        lines.append(
            f"* timm families: {len(derived)} of {len(timm_fam)} analysed models "
            f"({100 * len(derived) / len(timm_fam):.1f} %) are derived with no measured operation."
        )
    times = sorted(r["times"]["analysis"] for r in ok if "analysis" in r.get("times", {}))
    if times:
        lines.append(
            f"* analysis time: median {times[len(times) // 2]:.2f} s, max {times[-1]:.2f} s; "
            f"{len(found['slow'])} over 1 s."
        )
    checked = [r for r in ok if r.get("check", {}).get("status") in ("pass", "fail")]
    lines.append(
        f"* gradient check: {sum(r['check']['status'] == 'pass' for r in checked)} models pass, "
        f"{len(found['fail'])} fail or could not be checked; "
        f"{sum(r.get('check', {}).get('status') == 'global' for r in ok)} are global throughout."
    )
    lines.append("")
    for group in GROUPS:
        rows = [r for r in records if r["group"] == group]
        if not rows:
            continue
        lines += [f"## {TITLES[group]}", ""]
        lines.append(
            "| model | input | output | stages (RF/stride/padding) | method | time | check |"
        )
        lines.append("|---|---|---|---|---|---|---|")
        for r in rows:
            size = "x".join(map(str, r.get("input_size", []))) or "-"
            if r.get("status") != "ok":
                lines.append(
                    f"| `{r['name']}` | {size} | {r.get('status')} | "
                    f"{_cell(r.get('error', ''))} | - | - | - |"
                )
                continue
            stages = " · ".join(f"{s['layer']} {_triple(s)}" for s in r.get("stages", []))
            method = "measured" if r.get("measured") else "derived"
            if r.get("built_on") == "meta":
                method += ", meta"
            t = r["times"]["analysis"]
            lines.append(
                f"| `{r['name']}` | {size} | {_triple(r['output'])} | {_cell(stages)} | "
                f"{method} | {t:.2f} | {_verdict(r)} |"
            )
        lines.append("")
    titles = {
        "error": "Models that raised, timed out or crashed",
        "measured": "Models with measured operations",
        "slow": "Models analysed in over 1 s",
        "fail": "Gradient-check failures (the analysis' box vs the gradient's)",
    }
    for kind, title in titles.items():
        lines += [f"## {title}", ""]
        lines += [f"* {item}" for item in found[kind]] or ["None."]
        lines.append("")
    (out / "zoo.md").write_text("\n".join(lines))
    data = {"key": key, "versions": versions, "models": records, "problems": found}
    (out / "zoo.json").write_text(json.dumps(data, indent=1) + "\n")


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _iter_cache(cache: Path) -> Iterator[dict[str, Any]]:  # pragma: no cover - debugging aid
    for path in sorted(cache.glob("*.json")):
        yield json.loads(path.read_text())


if __name__ == "__main__":
    raise SystemExit(main())
