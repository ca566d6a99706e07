"""``rfmap erf``: the JSON contract against the library, outputs, and every bad input."""

from __future__ import annotations

import json
import re
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="rfmap erf needs PyTorch")

from rfmap.cli import main  # noqa: E402
from rfmap.erf import erf, load_erf  # noqa: E402
from rfmap.images import folder_images, noise_images, sample_images  # noqa: E402
from rfmap.loading import load_model  # noqa: E402

MODELS = textwrap.dedent(
    """
    import torch
    from torch import nn

    def build():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding=1),
            nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1),
        )

    def other():
        torch.manual_seed(1)
        return nn.Sequential(
            nn.Conv2d(3, 4, 5, padding=2), nn.Tanh(), nn.Conv2d(4, 4, 3, padding=1)
        )

    def flat():
        return nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten())

    class Sqrt(nn.Module):
        def forward(self, x):
            return torch.sqrt(x)

    def nan():
        return nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), Sqrt())

    class Gated(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 4, 5, padding=2)
            self.fc = nn.Conv2d(4, 4, 1)
            self.conv2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)

        def forward(self, x):
            y = torch.tanh(self.conv1(x))
            y = y * torch.sigmoid(self.fc(y.mean((2, 3), keepdim=True)))
            return self.conv2(y)

    def gated():
        torch.manual_seed(0)
        return Gated()

    def dead():
        conv = nn.Conv2d(3, 2, 3, padding=1)
        with torch.no_grad():
            conv.bias.fill_(-1e3)
        return nn.Sequential(conv, nn.ReLU())
    """
)


@pytest.fixture
def models(tmp_path):
    path = tmp_path / "models.py"
    path.write_text(MODELS)
    return str(path)


#: The line that says a model without --weights is measured untrained (see its own test).
UNTRAINED = re.compile(
    r"^rfmap: warning: no --weights for \S+: measuring the untrained model it builds "
    r"\(random initial weights\); pass --weights FILE for a trained model's ERF\n",
    re.MULTILINE,
)


def run(capsys, *argv, untrained=False):
    """Exit code, stdout and stderr (less the untrained-model lines unless ``untrained``)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err if untrained else UNTRAINED.sub("", err)


def test_json_equals_the_library(capsys, models):
    spec = f"{models}:build"
    code, out, err = run(
        capsys, "erf", spec, "--input-size", "3,24,24", "-n", "3", "--seed", "4", "--json"
    )
    assert code == 0 and err == ""
    data = json.loads(out)
    expected = erf(load_model(spec), noise_images(3, (3, 24, 24), seed=4))
    assert data["spec"] == spec and data["weights"] is None
    assert data["name"] == "build (untrained)"
    assert data["count"] == 3 and data["unit"] == [6, 6]
    assert data["inputs"]["kind"] == "noise" and data["inputs"]["seed"] == 4
    assert data["gradient"] == "abs" and data["output_relu"] is False
    got, want = data["metrics"], expected.to_dict()["metrics"]
    assert got["area_ratios"] == want["area_ratios"] and got["extent"] == want["extent"]
    assert got["gaussian"]["sigma"] == pytest.approx(want["gaussian"]["sigma"], rel=1e-9)
    assert data["theoretical"]["receptive_field"] == [9, 9]
    assert got["theoretical_rf"] == [9, 9]


def test_text_figure_and_saved_map(capsys, models, tmp_path):
    spec = f"{models}:build"
    png, npz = tmp_path / "erf.png", tmp_path / "erf.npz"
    code, out, err = run(
        capsys,
        "erf",
        spec,
        "--input-size",
        "3,40,40",
        "-n",
        "2",
        "--replknet",
        "--out",
        png,
        "--save-map",
        npz,
    )
    assert code == 0 and err == ""
    assert "area ratio 20%" in out and "theoretical RF" in out and "computed on" in out
    assert f"wrote {npz}" in out and f"wrote {png}" in out
    assert png.read_bytes().startswith(b"\x89PNG")
    ((saved, meta),) = load_erf(npz)
    expected = erf(
        load_model(spec), noise_images(2, (3, 40, 40)), gradient="relu", output_relu=True
    )
    np.testing.assert_allclose(saved, expected.map, rtol=1e-6)
    assert meta["gradient"] == "relu" and meta["output_relu"] is True
    assert meta["crop"] is not None  # 9 px field inside a 40 px input: computed on a crop


def test_side_by_side(capsys, models, tmp_path):
    png = tmp_path / "both.png"
    argv = ["erf", f"{models}:build", f"{models}:other", "--input-size", "3,24,24", "-n", "2"]
    code, out, _ = run(capsys, *argv, "--out", png)
    assert code == 0 and png.read_bytes().startswith(b"\x89PNG")
    table = [line for line in out.splitlines() if line.startswith("model ") and "area 20%" in line]
    assert len(table) == 1
    rows = [line.split()[0] for line in out.splitlines() if line.startswith(("build ", "other "))]
    assert rows == ["build", "other"]
    code, out, _err = run(capsys, *argv, "--json", "--layer", "1", "--layer", "none")
    data = json.loads(out)
    assert [r["layer"] for r in data["results"]] == ["1", None]


def test_weights_are_loaded(capsys, models, tmp_path):
    spec = f"{models}:build"
    model = load_model(spec)
    with torch.no_grad():
        model[0].weight.mul_(-3)
    weights = tmp_path / "w.pth"
    torch.save(model.state_dict(), weights)
    code, out, err = run(
        capsys, "erf", spec, "--weights", weights, "--input-size", "3,24,24", "-n", "2", "--json"
    )
    assert code == 0
    data = json.loads(out)
    assert data["name"] == "build [w]" and data["weights"] == str(weights)
    loaded = erf(load_model(spec, weights), noise_images(2, (3, 24, 24)))
    plain = erf(load_model(spec), noise_images(2, (3, 24, 24)))
    assert data["metrics"]["total"] == pytest.approx(loaded.metrics.total, rel=1e-9)
    assert data["metrics"]["total"] != pytest.approx(plain.metrics.total, rel=1e-3)
    torch.save(load_model(f"{models}:other").state_dict(), tmp_path / "bad.pth")
    code, out, err = run(
        capsys, "erf", spec, "--weights", tmp_path / "bad.pth", "--input-size", "3,24,24"
    )
    assert code == 2 and err.startswith("rfmap: error: weights") and "do not fit" in err
    assert len(err.strip().splitlines()) == 1


def test_real_images(capsys, models, tmp_path):
    from PIL import Image

    spec = f"{models}:build"
    code, out, _ = run(
        capsys, "erf", spec, "--input-size", "3,32,32", "--sample-images", "-n", "2", "--json"
    )
    assert code == 0
    data = json.loads(out)
    expected = erf(load_model(spec), sample_images((3, 32, 32), 2))
    assert data["inputs"]["kind"] == "sample" and data["inputs"]["names"] == list(
        sample_images((3, 32, 32), 2).names
    )
    assert data["metrics"]["total"] == pytest.approx(expected.metrics.total, rel=1e-9)
    folder = tmp_path / "imgs"
    (folder / "a").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a/x.png", "y.jpg"):
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(folder / name)
    _code, out, _err = run(
        capsys,
        "erf",
        spec,
        "--input-size",
        "3,32,32",
        "--images",
        folder,
        "--normalize",
        "unit",
        "--json",
    )
    data = json.loads(out)
    expected = erf(load_model(spec), folder_images(folder, (3, 32, 32), normalization="unit"))
    assert data["count"] == 2 and data["inputs"]["names"] == ["a/x.png", "y.jpg"]
    assert data["metrics"]["total"] == pytest.approx(expected.metrics.total, rel=1e-9)


def test_warnings_are_one_line_on_stderr(capsys, models):
    code, _out, err = run(capsys, "erf", f"{models}:dead", "--input-size", "3,16,16", "-n", "2")
    assert code == 0
    assert err.startswith("rfmap: warning: the ERF of") and "all zero" in err
    assert len(err.strip().splitlines()) == 1


def test_a_squeeze_excitation_model_is_compared_with_its_conv_field(capsys, models):
    """trace says a gated unit reads the whole input; the ERF is set against the 7 px conv
    paths' field, and an input smaller than that field warns."""
    argv = ["erf", f"{models}:gated", "-n", "2"]
    code, out, err = run(capsys, *argv, "--input-size", "3,24,24", "--unit", "2,9")
    assert code == 0 and err == ""
    assert re.search(r"^local-path RF +7x7$", out, re.MULTILINE)
    assert "24x24 (a global op reads the whole input)" in out and "extent / local RF" in out
    code, out, _ = run(capsys, *argv, "--input-size", "3,24,24", "--unit", "2,9", "--json")
    data = json.loads(out)
    # Unit (2, 9) of the 12x12 grid sits at input (2*2, 9*2): the squares are centred there.
    assert data["metrics"]["centre"] == [4, 18] and data["theoretical"]["compared_rf"] == [7, 7]
    code, _, err = run(capsys, *argv, "--input-size", "3,6,6")
    assert code == 0 and "paths through no global operation (7x7)" in err
    assert err.startswith("rfmap: warning: ") and len(err.strip().splitlines()) == 1


def test_progress_bar(capsys, models):
    argv = ["erf", f"{models}:build", "--input-size", "3,16,16", "-n", "3", "-b", "1"]
    code, _, err = run(capsys, *argv, "--progress")
    assert code == 0 and "build: 100%" in err and "| 3/3 [" in err and "img/s]" in err
    assert "0/3" in err.split("\r")[1]  # tqdm's bar, told the total before the first batch
    code, _out, err = run(capsys, *argv, "--no-progress")
    assert err == ""


def test_without_tqdm_there_is_no_bar_and_no_failure(capsys, models, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    argv = ["erf", f"{models}:build", "--input-size", "3,16,16", "-n", "3", "-b", "1", "--json"]
    code, out, err = run(capsys, *argv, "--progress")
    assert code == 0 and json.loads(out)["count"] == 3
    assert err == "rfmap: note: no progress bar: tqdm is not installed\n"
    code, out, err = run(capsys, *argv)  # not asked for: silent
    assert code == 0 and err == ""


def test_help_explains_with_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["erf", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for needle in (
        "examples:",
        "torchrun --nproc_per_node",
        "--sample-images",
        "--replknet",
        "--weights",
        "effective receptive field",
    ):
        assert needle in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--input-size", "3,x,24"], "input size must be comma-separated integers"),
        (["--input-size", "3,24,24", "--images", "/no/such/dir"], "does not exist"),
        (["--input-size", "4,24,24", "--sample-images"], "1 (grey) or 3 (RGB) channels"),
        (["--input-size", "3,24,24", "--layer", "9"], "neither a module nor an fx node"),
        (["--input-size", "3,24,24", "--weights", "/no/w.pth"], "weights file not found"),
        (
            ["--input-size", "3,24,24", "--out", "/no/dir/erf.png"],
            "output directory does not exist",
        ),
        (["--input-size", "3,24,24", "--out", "erf.txt"], "must end in .png"),
        (["--input-size", "3,24,24", "--save-map", "erf.npy"], "must end in .npz"),
        (["--input-size", "3,24,24", "-n", "0"], "--num-images must be a positive integer"),
        (["--input-size", "3,24,24", "-b", "0"], "--batch-size must be a positive integer"),
        (["--input-size", "3,24,24", "-b", "many"], "--batch-size must be a positive integer"),
        (["--input-size", "3,24,24", "--device", "tpu"], "device must be"),
        (["--input-size", "3,24,24", "--replknet", "--gradient", "abs"], "contradicts"),
        (["--input-size", "3,24,24", "--unit", "1"], "--unit has 1 indices"),
        (["--input-size", "3,24,24", "--unit", "12,0"], "outside the output grid"),
        (["--input-size", "3,24,24", "--layer", "0", "--layer", "1"], "--layer was given 2 times"),
        (["--input-size", "3,24,24", "--dpi", "5"], "--dpi must be between"),
        (
            ["--input-size", "3,24,24", "--out", "e.png", "--cmap", "nope"],
            "unknown matplotlib colormap",
        ),
        (["--input-size", "3,24,24", "--gradient", "square"], "invalid choice"),
        (["--input-size", "3,24,24", "--seed", "-1"], "--seed must be a non-negative integer"),
        (["--sample-images"], "the following arguments are required: --input-size"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, models, tmp_path, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "erf", f"{models}:build", *extra)
    assert code == 2 and out == ""
    assert err.startswith("rfmap: error: ") and message in err
    assert len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("erf*")) and not list(tmp_path.glob("e.png"))


def test_model_errors_are_one_line_and_write_nothing(capsys, models, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ([f"{models}:flat"], "without the 2 spatial axes"),
        ([f"{models}:nan"], "holds NaN or infinite values"),
        (["no_colon_here"], "model SPEC must be"),
        ([f"{models}:missing"], "has no attribute"),
        ([f"{models}:build", "--images", empty], "no images"),
        ([f"{models}:build", "-n", "99", "--sample-images"], "asked for 99 images"),
    ]
    for argv, message in cases:
        out_png, out_npz = tmp_path / "x.png", tmp_path / "x.npz"
        code, _out, err = run(
            capsys, "erf", *argv, "--input-size", "3,16,16", "--out", out_png, "--save-map", out_npz
        )
        assert code == 2 and message in err and err.startswith("rfmap: error: "), (argv, err)
        assert len(err.strip().splitlines()) == 1
        assert not out_png.exists() and not out_npz.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".x")]


def test_skip_unreadable_reports_how_many_and_which(capsys, models, tmp_path):
    from PIL import Image

    folder = tmp_path / "messy"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (30, 30), (60 * i, 20, 200 - 60 * i)).save(folder / f"p{i}.png")
    (folder / "broken.jpg").write_text("this is not a jpeg")
    argv = ["erf", f"{models}:build", "--input-size", "3,24,24", "--images", folder]
    code, out, err = run(capsys, *argv)  # strict by default
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "cannot read image" in err and "broken.jpg" in err and "--skip-unreadable" in err
    code, out, err = run(capsys, *argv, "--skip-unreadable")
    assert code == 0
    assert err == (
        "rfmap: warning: skipped 1 unreadable image (broken.jpg): the mean is over the 3 "
        "images read\n"
    )
    assert re.search(r"^inputs +3 \(folder\)$", out, re.MULTILINE)
    assert re.search(r"^skipped +1 unreadable: broken\.jpg$", out, re.MULTILINE)
    code, out, _ = run(capsys, *argv, "--skip-unreadable", "--json")
    data = json.loads(out)
    assert data["count"] == 3 and data["skipped"] == ["broken.jpg"]
    assert "the mean is over the 3 images read" in data["notes"][-1]


def test_a_model_without_weights_is_called_untrained(capsys, models, tmp_path, monkeypatch):
    import rfmap.plot

    titles = []
    real_save = rfmap.plot.save_figure
    monkeypatch.setattr(
        rfmap.plot,
        "save_figure",
        lambda fig, path: titles.append(fig.axes[0].get_title()) or real_save(fig, path),
    )
    argv = ["erf", f"{models}:build", "--input-size", "3,16,16", "-n", "2"]
    code, out, err = run(capsys, *argv, "--out", tmp_path / "e.png", untrained=True)
    assert code == 0
    assert err == (
        f"rfmap: warning: no --weights for {models}:build: measuring the untrained model it "
        "builds (random initial weights); pass --weights FILE for a trained model's ERF\n"
    )
    assert re.search(r"^model +build \(untrained\)$", out, re.MULTILINE)
    assert titles and titles[0].startswith("build (untrained) · output")
    weights = tmp_path / "trained.pth"
    torch.save(load_model(f"{models}:build").state_dict(), weights)
    code, out, err = run(capsys, *argv, "--weights", weights, untrained=True)
    assert code == 0 and err == "" and "untrained" not in out
    assert re.search(r"^model +build \[trained\]$", out, re.MULTILINE)


def test_sample_images_without_scikit_image_say_to_install_it(capsys, models, monkeypatch):
    from rfmap import images

    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    images.available_sample_images.cache_clear()
    try:
        argv = ["erf", f"{models}:build", "--input-size", "3,16,16", "--sample-images"]
        code, out, err = run(capsys, *argv)
    finally:
        images.available_sample_images.cache_clear()
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "--sample-images" in err and "install scikit-image" in err
