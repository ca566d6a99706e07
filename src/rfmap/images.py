"""Inputs for effective receptive fields: noise, scikit-image samples, folders of images.

An :class:`ImageSet` is a lazy, indexable set of model inputs of one shape ``(C, *spatial)``:
``load(i)`` returns a float32 array, so a set of 50,000 validation images costs nothing
until it is read, one batch at a time.  Three sources:

- :func:`noise_images`: standard-normal noise (Luo et al. 2016), image ``i`` drawn from
  its own seeded generator, so the inputs do not depend on batching or on the number of
  processes;
- :func:`sample_images`: the natural images that ship inside scikit-image and load offline;
- :func:`folder_images`: every ``.jpg``/``.jpeg``/``.png`` under a folder (recursively).

Real images are resized to the input size (bicubic, as RepLKNet's ``visualize_erf.py``),
scaled to [0, 1] and normalised with the ImageNet mean and standard deviation.
Needs pillow; the sample images need scikit-image (``pip install 'rfmap[images]'``).

>>> noise = noise_images(2, (1, 4, 4), seed=0)
>>> len(noise), noise.load(1).shape, noise.load(1).dtype
(2, (1, 4, 4), dtype('float32'))
"""

from __future__ import annotations

import enum
import functools
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import RFMapError, UnreadableImageError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_SUFFIXES",
    "SAMPLE_IMAGES",
    "ImageSet",
    "InputKind",
    "NoiseNames",
    "Normalization",
    "available_sample_images",
    "folder_images",
    "list_image_files",
    "load_sample_image",
    "noise_images",
    "prepare_image",
    "sample_images",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Grey-scale models get the mean of the three ImageNet channels.
_GREY_MEAN = (0.449,)
_GREY_STD = (0.226,)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

#: Natural images bundled with scikit-image (in this order); those that need a download
#: are skipped by :func:`available_sample_images`.
SAMPLE_IMAGES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "coins",
    "moon",
    "grass",
    "gravel",
    "brick",
    "cell",
    "clock",
    "colorwheel",
    "page",
    "text",
    "microaneurysms",
)


class Normalization(str, enum.Enum):
    """How pixel values are scaled: ImageNet mean/std (default) or plain [0, 1]."""

    IMAGENET = "imagenet"
    UNIT = "unit"


class InputKind(str, enum.Enum):
    """Where the inputs of an :class:`ImageSet` come from."""

    NOISE = "noise"
    SAMPLE = "sample"
    FOLDER = "folder"


def _check_input_size(input_size: Sequence[int], *, images: bool) -> tuple[int, ...]:
    size = tuple(int(v) for v in input_size)
    if len(size) < 2 or min(size) < 1:
        raise RFMapError(f"input size must be C,H,W positive integers, got {list(input_size)}")
    if images:
        if len(size) != 3:
            raise RFMapError(
                f"images are 2D: the input size must be C,H,W, got {list(size)}; "
                "use noise inputs for 1D or 3D models"
            )
        if size[0] not in (1, 3):
            raise RFMapError(
                f"images have 1 (grey) or 3 (RGB) channels, the model takes {size[0]}; "
                "use noise inputs"
            )
    return size


def _skimage_data() -> Any:
    """``skimage.data``, or a clear error saying to install scikit-image."""
    try:
        import skimage.data
    except ImportError as exc:
        raise RFMapError(
            "the sample images (--sample-images) need scikit-image, which is not installed: "
            "install scikit-image (pip install scikit-image, or pip install 'rfmap[images]')"
        ) from exc
    return skimage.data


def _sample_loader(name: str) -> Any:
    return getattr(_skimage_data(), name, None)


def load_sample_image(name: str) -> np.ndarray:
    """A scikit-image sample image as a uint8 array (``H x W`` or ``H x W x 3``).

    >>> load_sample_image("camera").shape
    (512, 512)
    """
    if name not in SAMPLE_IMAGES:
        raise RFMapError(f"unknown sample image {name!r}; choose from {', '.join(SAMPLE_IMAGES)}")
    loader = _sample_loader(name)
    if loader is None:
        raise RFMapError(f"this scikit-image version has no sample image {name!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = np.asarray(loader())
    except Exception as exc:
        raise RFMapError(
            f"sample image {name!r} does not load offline: {type(exc).__name__}"
        ) from exc
    if image.dtype != np.uint8:
        raise RFMapError(f"sample image {name!r} is {image.dtype}, expected uint8")
    return image


@functools.lru_cache(maxsize=1)
def available_sample_images() -> tuple[str, ...]:
    """The names in :data:`SAMPLE_IMAGES` that load here without a download."""
    _skimage_data()  # no scikit-image: say so, rather than "no sample image loads"
    names = []
    for name in SAMPLE_IMAGES:
        try:
            load_sample_image(name)
        except RFMapError:
            continue
        names.append(name)
    return tuple(names)


def list_image_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Every jpg/jpeg/png file under ``directory`` (recursively, sorted, case-insensitive)."""
    root = Path(directory)
    if not root.is_dir():
        raise RFMapError(f"image folder does not exist or is not a folder: {str(root)!r}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise RFMapError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {str(root)!r}")
    return files


def prepare_image(
    image: Any,
    size: Sequence[int],
    channels: int = 3,
    normalization: Normalization | str = Normalization.IMAGENET,
) -> np.ndarray:
    """Resize (bicubic) and normalise one image into a float32 ``(C, H, W)`` array.

    ``image`` is a PIL image or a uint8 array (``H x W``, ``H x W x 3`` or ``x 4``).

    >>> x = prepare_image(np.full((8, 8), 255, np.uint8), (4, 4), 3, "unit")
    >>> x.shape, float(x.min()), float(x.max())
    ((3, 4, 4), 1.0, 1.0)
    """
    from PIL import Image

    norm = _normalization(normalization)
    if channels not in (1, 3):
        raise RFMapError(f"images have 1 or 3 channels, got channels={channels!r}")
    height, width = (int(v) for v in size)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise RFMapError(f"image arrays must be uint8, got {image.dtype}")
        image = Image.fromarray(image)
    if image.mode == "I" or image.mode.startswith("I;16"):
        image = _eight_bit(image)
    picture = image.convert("RGB" if channels == 3 else "L")
    if picture.size != (width, height):
        picture = picture.resize((width, height), Image.Resampling.BICUBIC)
    array = np.asarray(picture, dtype=np.float32) / np.float32(255)
    array = array.reshape(height, width, channels).transpose(2, 0, 1)
    if norm is Normalization.IMAGENET:
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else (_GREY_MEAN, _GREY_STD)
        array = (array - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[
            :, None, None
        ]
    return np.ascontiguousarray(array, dtype=np.float32)


def _eight_bit(image: Any) -> Any:
    """A 16-bit grey image (PIL mode ``I;16`` or ``I``) as 8-bit grey: ``round(v / 257)``.

    PIL's own conversion clips such values at 255, which turns a 16-bit PNG white.
    """
    from PIL import Image

    values = np.asarray(image, dtype=np.float64)
    scaled = np.clip(np.round(values / 257.0), 0, 255)
    return Image.fromarray(scaled.astype(np.uint8))


def _normalization(value: Normalization | str) -> Normalization:
    try:
        return Normalization(value)
    except ValueError:
        choices = ", ".join(n.value for n in Normalization)
        raise RFMapError(f"normalization must be one of {choices}, got {value!r}") from None


class NoiseNames(Sequence[str]):
    """The names ``noise-0``, ``noise-1``, ... of ``n`` noise inputs, made on demand.

    A million noise inputs cost no memory until they are used.

    >>> names = NoiseNames(3)
    >>> len(names), names[-1], names[:2], names == ("noise-0", "noise-1", "noise-2")
    (3, 'noise-2', ('noise-0', 'noise-1'), True)
    """

    __slots__ = ("_n",)

    def __init__(self, n: int) -> None:
        self._n = int(n)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return tuple(f"noise-{i}" for i in range(self._n)[index])
        return f"noise-{range(self._n)[index]}"

    def __iter__(self) -> Iterator[str]:
        return (f"noise-{i}" for i in range(self._n))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, NoiseNames):
            return self._n == other._n
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(other) == self._n and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("NoiseNames", self._n))

    def __repr__(self) -> str:
        return f"NoiseNames({self._n})"


@dataclass(frozen=True)
class ImageSet:
    """A lazy set of model inputs of shape ``input_size`` (see the module docstring).

    ``names`` holds one name per input: ``noise-<i>`` (a lazy :class:`NoiseNames`), the
    sample image's name, or the file's path relative to ``root``.
    """

    kind: InputKind
    names: Sequence[str]
    input_size: tuple[int, ...]
    seed: int = 0
    normalization: Normalization = Normalization.IMAGENET
    root: str | None = None

    def __len__(self) -> int:
        return len(self.names)

    def load(self, index: int) -> np.ndarray:
        """Input ``index`` as a float32 array of shape ``input_size``."""
        if not 0 <= index < len(self.names):
            raise RFMapError(f"input index {index} is outside 0..{len(self.names) - 1}")
        if self.kind is InputKind.NOISE:
            rng = np.random.default_rng([self.seed, index])
            return rng.standard_normal(self.input_size, dtype=np.float32)
        channels, height, width = self.input_size
        if self.kind is InputKind.SAMPLE:
            image: Any = load_sample_image(self.names[index])
            return prepare_image(image, (height, width), channels, self.normalization)
        path = Path(self.root or ".") / self.names[index]
        image = _open_image(path)
        try:
            return prepare_image(image, (height, width), channels, self.normalization)
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise UnreadableImageError(
                f"cannot read image {str(path)!r}: {type(exc).__name__}: {exc}"
            ) from exc

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (the names are listed up to 100)."""
        return {
            "kind": self.kind.value,
            "count": len(self.names),
            "input_size": list(self.input_size),
            "seed": self.seed,
            "normalization": None if self.kind is InputKind.NOISE else self.normalization.value,
            "root": self.root,
            "names": list(self.names[:100]),
        }


def _open_image(path: Path) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as picture:
            picture.load()
            return picture.copy()
    except (
        OSError,
        UnidentifiedImageError,
        Image.DecompressionBombError,
        SyntaxError,
        EOFError,
        ValueError,
    ) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UnreadableImageError(
            f"cannot read image {str(path)!r}: {type(exc).__name__}: {message}"
        ) from exc


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise RFMapError(f"the seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _choose(count: int, n: int | None, seed: int, what: str) -> list[int]:
    """All ``count`` indices, or ``n`` of them drawn at random with ``seed`` (in order)."""
    if n is None:
        return list(range(count))
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise RFMapError(f"the number of images must be a positive integer, got {n!r}")
    if n > count:
        raise RFMapError(f"asked for {n} images but only {count} {what}")
    if n == count:
        return list(range(count))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(count, size=n, replace=False))


def noise_images(n: int, input_size: Sequence[int], seed: int = 0) -> ImageSet:
    """``n`` standard-normal inputs of shape ``input_size`` (any number of spatial axes)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise RFMapError(f"the number of images must be a positive integer, got {n!r}")
    size = _check_input_size(input_size, images=False)
    return ImageSet(InputKind.NOISE, NoiseNames(int(n)), size, _check_seed(seed))


def sample_images(
    input_size: Sequence[int],
    n: int | None = None,
    *,
    names: Sequence[str] | None = None,
    seed: int = 0,
    normalization: Normalization | str = Normalization.IMAGENET,
) -> ImageSet:
    """The scikit-image sample images that load offline (or ``names``), ``n`` of them."""
    size = _check_input_size(input_size, images=True)
    seed = _check_seed(seed)
    if names is None:
        pool = available_sample_images()
        if not pool:
            raise RFMapError("no scikit-image sample image loads here")
    else:
        pool = tuple(names)
        for name in pool:
            load_sample_image(name)
    chosen = _choose(len(pool), n, seed, "sample images load offline here")
    return ImageSet(
        InputKind.SAMPLE,
        tuple(pool[i] for i in chosen),
        size,
        seed,
        _normalization(normalization),
    )


def folder_images(
    directory: str | os.PathLike[str],
    input_size: Sequence[int],
    n: int | None = None,
    *,
    seed: int = 0,
    normalization: Normalization | str = Normalization.IMAGENET,
) -> ImageSet:
    """The images under ``directory`` (all, or ``n`` drawn at random with ``seed``)."""
    size = _check_input_size(input_size, images=True)
    seed = _check_seed(seed)
    root = Path(directory)
    files = list_image_files(root)
    chosen = _choose(len(files), n, seed, f"images are under {str(root)!r}")
    names = tuple(files[i].relative_to(root).as_posix() for i in chosen)
    return ImageSet(InputKind.FOLDER, names, size, seed, _normalization(normalization), str(root))
