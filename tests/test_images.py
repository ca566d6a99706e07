"""Inputs for ERFs: noise, scikit-image samples, folders; resizing and normalisation."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from rfmap import RFMapError
from rfmap.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SAMPLE_IMAGES,
    InputKind,
    available_sample_images,
    folder_images,
    list_image_files,
    load_sample_image,
    noise_images,
    prepare_image,
    sample_images,
)

pytest.importorskip("skimage", reason="the sample images come from scikit-image")


# -- noise ------------------------------------------------------------------------------


def test_noise_is_seeded_per_image_and_independent_of_order():
    a = noise_images(4, (2, 5, 6), seed=7)
    b = noise_images(9, (2, 5, 6), seed=7)
    assert a.load(3).shape == (2, 5, 6) and a.load(3).dtype == np.float32
    # Image i depends on (seed, i) only: not on how many images there are, nor on order.
    assert np.array_equal(a.load(3), b.load(3))
    assert np.array_equal(
        a.load(0), np.random.default_rng([7, 0]).standard_normal((2, 5, 6), np.float32)
    )
    assert not np.array_equal(a.load(0), a.load(1))
    assert not np.array_equal(a.load(0), noise_images(1, (2, 5, 6), seed=8).load(0))
    assert a.kind is InputKind.NOISE and a.names[2] == "noise-2" and len(a) == 4


def test_noise_accepts_1d_and_3d_and_rejects_bad_sizes():
    assert noise_images(1, (1, 9)).load(0).shape == (1, 9)
    assert noise_images(1, (1, 3, 4, 5)).load(0).shape == (1, 3, 4, 5)
    with pytest.raises(RFMapError, match="positive integer"):
        noise_images(0, (1, 9))
    with pytest.raises(RFMapError, match="input size"):
        noise_images(1, (3,))
    with pytest.raises(RFMapError, match="outside"):
        noise_images(2, (1, 4)).load(2)


# -- sample images ----------------------------------------------------------------------


def test_sample_images_load_offline():
    names = available_sample_images()
    # The photographs the ERF papers' readers expect are all there.
    assert {"astronaut", "coffee", "chelsea", "camera", "rocket"} <= set(names)
    assert set(names) <= set(SAMPLE_IMAGES) and len(names) >= 15
    assert load_sample_image("astronaut").shape == (512, 512, 3)
    with pytest.raises(RFMapError, match="unknown sample image"):
        load_sample_image("kidneys")


def test_sample_images_are_resized_and_subset_deterministically():
    every = sample_images((3, 32, 48))
    assert len(every) == len(available_sample_images())
    x = every.load(0)
    assert x.shape == (3, 32, 48) and x.dtype == np.float32
    some = sample_images((3, 32, 48), 5, seed=1)
    again = sample_images((3, 32, 48), 5, seed=1)
    other = sample_images((3, 32, 48), 5, seed=2)
    assert some.names == again.names and len(some) == 5 and some.names != other.names
    assert list(some.names) == sorted(some.names, key=available_sample_images().index)
    grey = sample_images((1, 16, 16), names=["camera", "astronaut"])
    assert grey.load(1).shape == (1, 16, 16)
    with pytest.raises(RFMapError, match="only"):
        sample_images((3, 8, 8), len(available_sample_images()) + 1)


def test_images_need_two_spatial_axes_and_one_or_three_channels():
    with pytest.raises(RFMapError, match="1 \\(grey\\) or 3 \\(RGB\\)"):
        sample_images((4, 8, 8))
    with pytest.raises(RFMapError, match="images are 2D"):
        sample_images((3, 8))


# -- preprocessing ----------------------------------------------------------------------


def test_prepare_image_normalises_by_hand():
    image = np.zeros((2, 2, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 255, 0, 51
    x = prepare_image(image, (2, 2), 3, "imagenet")
    expected = [
        (1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0],
        -IMAGENET_MEAN[1] / IMAGENET_STD[1],
        (0.2 - IMAGENET_MEAN[2]) / IMAGENET_STD[2],
    ]
    assert x[:, 0, 0] == pytest.approx(expected, rel=1e-6)
    assert prepare_image(image, (2, 2), 3, "unit")[:, 1, 1] == pytest.approx([1.0, 0.0, 0.2])
    with pytest.raises(RFMapError, match="normalization must be one of"):
        prepare_image(image, (2, 2), 3, "zscore")
    with pytest.raises(RFMapError, match="uint8"):
        prepare_image(image.astype(np.float32), (2, 2))


def test_prepare_image_matches_torchvision_transforms():
    """The independent pipeline RepLKNet's visualize_erf.py uses."""
    transforms = pytest.importorskip("torchvision.transforms", reason="needs torchvision")
    picture = Image.fromarray(load_sample_image("coffee"))
    pipeline = transforms.Compose(
        [
            transforms.Resize((96, 128), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    expected = pipeline(picture).numpy()
    got = prepare_image(picture, (96, 128))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)


# -- folders ----------------------------------------------------------------------------


def _write(path, value=128, size=(10, 12), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, value, value)).save(path)


def test_folder_images_recursive_sorted_and_subset(tmp_path):
    _write(tmp_path / "b" / "x.png", 10)
    _write(tmp_path / "a" / "y.JPG", 20)
    _write(tmp_path / "a" / "z.jpeg", 30, mode="L")
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.relative_to(tmp_path).as_posix() for p in list_image_files(tmp_path)] == [
        "a/y.JPG",
        "a/z.jpeg",
        "b/x.png",
    ]
    images = folder_images(tmp_path, (3, 4, 4), normalization="unit")
    assert images.names == ("a/y.JPG", "a/z.jpeg", "b/x.png") and images.kind is InputKind.FOLDER
    # A grey file becomes RGB; a uniform image stays uniform through the resize.
    assert images.load(1) == pytest.approx(np.full((3, 4, 4), 30 / 255), abs=1e-6)
    assert images.load(2) == pytest.approx(np.full((3, 4, 4), 10 / 255), abs=1e-6)
    two = folder_images(tmp_path, (3, 4, 4), 2, seed=5)
    assert len(two) == 2 and two.names == folder_images(tmp_path, (3, 4, 4), 2, seed=5).names
    assert images.to_dict()["names"] == list(images.names) and images.to_dict()["count"] == 3


def test_folder_errors(tmp_path):
    with pytest.raises(RFMapError, match="does not exist"):
        folder_images(tmp_path / "missing", (3, 8, 8))
    with pytest.raises(RFMapError, match="no images"):
        folder_images(tmp_path, (3, 8, 8))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    broken = folder_images(tmp_path, (3, 8, 8))
    with pytest.raises(RFMapError, match=r"cannot read image .*broken\.png"):
        broken.load(0)
    with pytest.raises(RFMapError, match="asked for 2 images but only 1"):
        folder_images(tmp_path, (3, 8, 8), 2)
    with pytest.raises(RFMapError, match="positive integer"):
        folder_images(tmp_path, (3, 8, 8), 0)


def test_odd_image_files_in_a_folder(tmp_path):
    """Grey, RGBA, palette, 1-bit, 16-bit and 1x1 files all become RGB inputs, correctly."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    Image.fromarray(np.dstack([rgb, np.full((6, 7), 9, np.uint8)]), "RGBA").save(
        tmp_path / "rgba.png"
    )
    grey16 = rng.integers(0, 65536, (6, 7)).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    Image.new("1", (7, 6), 1).save(tmp_path / "bits.png")
    Image.new("RGB", (1, 1), (255, 0, 51)).save(tmp_path / "tiny.png")
    images = folder_images(tmp_path, (3, 6, 7), normalization="unit")
    loaded = {name: images.load(i) for i, name in enumerate(images.names)}
    # RGBA: the alpha channel is dropped, as torchvision's ImageFolder does.
    np.testing.assert_allclose(loaded["rgba.png"], rgb.transpose(2, 0, 1) / 255, atol=1e-6)
    # 16-bit grey is scaled to 8 bits (PIL's own conversion clips it to white).
    expected = np.round(grey16 / 257) / 255
    np.testing.assert_allclose(loaded["grey16.png"], np.stack([expected] * 3), atol=1e-6)
    assert loaded["grey16.png"].mean() < 0.9
    palette = np.asarray(Image.fromarray(rgb).convert("P").convert("RGB"))
    np.testing.assert_allclose(loaded["palette.png"], palette.transpose(2, 0, 1) / 255, atol=1e-6)
    assert loaded["bits.png"] == pytest.approx(np.ones((3, 6, 7)))
    # A single pixel resizes to a uniform image of its colour.
    np.testing.assert_allclose(
        loaded["tiny.png"], np.array([1.0, 0.0, 0.2])[:, None, None] * np.ones((3, 6, 7)), atol=1e-6
    )
    grey = folder_images(tmp_path, (1, 6, 7), normalization="unit")
    np.testing.assert_allclose(grey.load(grey.names.index("grey16.png"))[0], expected, atol=1e-6)


def test_noise_names_are_lazy_and_seeds_are_checked(tmp_path):
    many = noise_images(10**15, (1, 4))  # no list of 10**15 names is made
    assert len(many) == 10**15 and many.names[-1] == f"noise-{10**15 - 1}"
    assert many.names[2:4] == ("noise-2", "noise-3") and many.to_dict()["names"][99] == "noise-99"
    small = noise_images(3, (1, 4))
    assert small.names == ("noise-0", "noise-1", "noise-2") and list(small.names)[1] == "noise-1"
    assert small == noise_images(3, (1, 4)) and small != noise_images(4, (1, 4))
    _write(tmp_path / "a.png")
    for make in (
        lambda: noise_images(1, (1, 4), seed=-1),
        lambda: sample_images((3, 8, 8), seed=-2),
        lambda: folder_images(tmp_path, (3, 8, 8), seed=-3),
    ):
        with pytest.raises(RFMapError, match="seed must be a non-negative integer"):
            make()


def test_sample_images_without_scikit_image_say_to_install_it(monkeypatch):
    """Once "no scikit-image sample image loads here": the missing module went unnamed."""
    from rfmap import images

    monkeypatch.setitem(sys.modules, "skimage", None)  # `import skimage` raises ImportError
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    images.available_sample_images.cache_clear()
    try:
        with pytest.raises(RFMapError, match=r"need scikit-image.*install scikit-image"):
            images.sample_images((3, 32, 32), 2)
        with pytest.raises(RFMapError, match="install scikit-image"):
            images.load_sample_image("camera")
    finally:
        images.available_sample_images.cache_clear()


def test_unreadable_files_are_their_own_error(tmp_path):
    from rfmap.errors import UnreadableImageError

    (tmp_path / "fake.jpg").write_text("not a jpeg")
    (tmp_path / "half.png").write_bytes(_png_bytes()[:60])  # a truncated PNG
    found = folder_images(tmp_path, (3, 8, 8))
    for index in range(len(found)):
        with pytest.raises(UnreadableImageError, match=r"cannot read image .*(fake|half)"):
            found.load(index)


def _png_bytes() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()
