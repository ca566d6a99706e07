"""``erf`` under ``torchrun`` with two CPU processes (gloo) equals one process.

Each test starts one ``torchrun --standalone --nproc_per_node=2`` (two Python processes
that import torch), so the models and inputs are small.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="distributed ERF needs PyTorch")
dist = pytest.importorskip("torch.distributed", reason="needs torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():  # pragma: no cover
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

from rfmap.cli import main  # noqa: E402
from rfmap.erf import erf, load_erf  # noqa: E402
from rfmap.images import noise_images  # noqa: E402
from rfmap.loading import load_model  # noqa: E402

MODEL = textwrap.dedent(
    """
    import torch
    from torch import nn

    def build(seed=0):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, stride=2, padding=1),
            nn.Tanh(), nn.Conv2d(6, 4, 5, padding=2),
        ).double()
    """
)

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    from rfmap.erf import erf
    from rfmap.images import noise_images

    sys.path.insert(0, sys.argv[3])
    from model import build

    out, rank = sys.argv[2], os.environ["RANK"]
    # Each process draws its own random weights: erf() must use rank 0's everywhere.
    model = build(seed=int(rank))
    # 7 inputs in batches of 2: rank 0 gets 3 batches (5 inputs), rank 1 one (2 inputs).
    result = erf(model, noise_images(7, (3, 30, 30), seed=2), batch_size=2)
    np.save(f"{out}/map_{rank}.npy", result.map)
    # erf() made the process group, so it destroyed it: gloo's threads must be gone (if
    # they outlive it, they may abort the process at exit; Linux shows them in /proc).
    tasks = "/proc/self/task"
    names = os.listdir(tasks) if os.path.isdir(tasks) else []
    threads = [open(f"{tasks}/{t}/comm").read().strip() for t in names]
    with open(f"{out}/meta_{rank}.json", "w") as handle:
        json.dump(result.to_dict() | {"threads": threads}, handle)
    """
)


def torchrun(*argv, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        *map(str, argv),
    ]
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(MODEL)
    return f"{path}:build"


def test_two_processes_equal_one(tmp_path, model_file):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    torchrun(script, model_file, tmp_path, tmp_path, cwd=tmp_path)
    single = erf(load_model(model_file), noise_images(7, (3, 30, 30), seed=2), batch_size=2)
    for rank in (0, 1):
        shared = np.load(tmp_path / f"map_{rank}.npy")
        meta = json.loads((tmp_path / f"meta_{rank}.json").read_text())
        assert meta["world_size"] == 2 and meta["count"] == 7
        assert any("rank 0's" in note for note in meta["notes"])
        assert not [name for name in meta["threads"] if "gloo" in name], meta["threads"]
        # Same batches, float64: only the order of the final sum differs.
        np.testing.assert_allclose(shared, single.map, rtol=1e-12, atol=0)
        assert meta["metrics"]["area_ratios"] == single.to_dict()["metrics"]["area_ratios"]
    assert single.world_size == 1


def test_cli_under_torchrun_prints_and_writes_once(tmp_path, model_file, capsys):
    argv = ["erf", model_file, "--input-size", "3,30,30", "-n", "5", "-b", "2", "--json"]
    done = torchrun("-m", "rfmap", *argv, "--save-map", tmp_path / "two.npz", cwd=tmp_path)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # rank 1 prints nothing
    two = json.loads(lines[0])
    assert main([*argv, "--save-map", str(tmp_path / "one.npz")]) == 0
    one = json.loads(capsys.readouterr().out)
    assert two["world_size"] == 2 and one["world_size"] == 1 and two["count"] == one["count"] == 5
    assert two["metrics"]["area_ratios"] == one["metrics"]["area_ratios"]
    assert two["metrics"]["total"] == pytest.approx(one["metrics"]["total"], rel=1e-12)
    ((map_two, _),) = load_erf(tmp_path / "two.npz")
    ((map_one, _),) = load_erf(tmp_path / "one.npz")
    np.testing.assert_allclose(map_two, map_one, rtol=1e-12, atol=0)


def test_skipped_images_are_gathered_from_every_process(tmp_path, model_file, capsys):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(5):
        Image.new("RGB", (20, 20), (40 * i, 255 - 40 * i, 90)).save(folder / f"ok{i}.png")
    (folder / "bad0.jpg").write_text("not an image")  # batch of rank 0
    (folder / "ok1b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)  # batch of rank 1
    argv = ["erf", model_file, "--input-size", "3,30,30", "--images", folder, "-b", "2"]
    argv += ["--skip-unreadable", "--json"]
    done = torchrun("-m", "rfmap", *argv, cwd=tmp_path)
    two = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    assert main([str(a) for a in argv]) == 0
    one = json.loads(capsys.readouterr().out)
    assert two["world_size"] == 2 and two["count"] == one["count"] == 5
    assert two["skipped"] == one["skipped"] == ["bad0.jpg", "ok1b.png"]
    assert two["metrics"]["total"] == pytest.approx(one["metrics"]["total"], rel=1e-12)
