"""The image data sets' original files, read directly: MNIST-family IDX files (raw or ``.gz``),
CIFAR-10's python pickles and folders of PNG/JPEG files (one folder per class, torchvision's
``ImageFolder`` layout), decoded once into ``.npy`` arrays that later processes map.

torchvision's dataset classes would do the reading, but importing torchvision pulls in its
model zoo and ``torch._dynamo`` (about 2.4 s), and decoding the IDX files again costs about
1.6 s in every worker and every resume. Here a process maps the cached arrays (no copy until
they are split), so a search starts training about as soon as torch is imported.
torchvision is still used for ``download: true``, to fetch the files.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tunecli.errors import SpecError

__all__ = ["IMAGE_SUFFIXES", "FolderImages", "cache_root", "image_array", "image_paths",
           "is_image_file", "read_cifar10", "read_idx", "read_image_folder", "read_mnist_family"]

Split = tuple[np.ndarray, np.ndarray]   # images (N, C, H, W) uint8, labels (N,) int64
_IDX_TYPES = {0x08: np.uint8}


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tunecli" / "data"


def _cached(sources: list[Path], name: str, decode: Callable[[], Split]) -> Split:
    """Decoded arrays from the cache, keyed by the source files' paths, sizes and times."""
    key = hashlib.sha256("|".join(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                                  for p in sources).encode()).hexdigest()[:16]
    folder = cache_root() / "decoded" / f"{name}-{key}"
    x_file, y_file = folder / "x.npy", folder / "y.npy"
    if not (x_file.exists() and y_file.exists()):
        x, y = decode()
        folder.mkdir(parents=True, exist_ok=True)
        for path, array in ((x_file, x), (y_file, y)):  # atomic: workers may race here
            tmp = path.with_name(f".{path.stem}.{os.getpid()}.npy")
            np.save(tmp, array)
            os.replace(tmp, path)
    return np.load(x_file, mmap_mode="r"), np.load(y_file)


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, f"{stem}.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_idx(path: Path) -> np.ndarray:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    zero, dtype, dims = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype not in _IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file of bytes")
    shape = struct.unpack(f">{dims}I", data[4:4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def read_mnist_family(raw: Path, name: str) -> tuple[Split, Split] | None:
    """Train and test splits from ``raw/`` (``train-images-idx3-ubyte[.gz]`` and the three
    others), or None when a file is missing."""
    files = {stem: _idx_file(raw, stem) for stem in
             ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
    if any(path is None for path in files.values()):
        return None
    paths = {stem: path for stem, path in files.items() if path is not None}

    def split(prefix: str) -> Split:
        images, labels = paths[f"{prefix}-images-idx3-ubyte"], paths[f"{prefix}-labels-idx1-ubyte"]

        def decode() -> Split:
            return (np.ascontiguousarray(read_idx(images)[:, None, :, :]),
                    read_idx(labels).astype(np.int64))
        return _cached([images, labels], f"{name}-{prefix}", decode)

    return split("train"), split("t10k")


def read_cifar10(folder: Path) -> tuple[Split, Split] | None:
    """Train and test splits from ``cifar-10-batches-py/``, or None when a file is missing."""
    train = [folder / f"data_batch_{i}" for i in range(1, 6)]
    test = [folder / "test_batch"]
    if not all(p.is_file() for p in train + test):
        return None

    def batches(paths: list[Path]) -> Callable[[], Split]:
        def decode() -> Split:
            xs, ys = [], []
            for path in paths:
                with path.open("rb") as handle:  # the data set's own pickles, as torchvision reads
                    entry = pickle.load(handle, encoding="latin1")
                xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                ys.append(np.asarray(entry["labels"], dtype=np.int64))
            return np.concatenate(xs), np.concatenate(ys)
        return decode

    return (_cached(train, "cifar10-train", batches(train)),
            _cached(test, "cifar10-test", batches(test)))


# ---------------------------------------------------------------------------------------------
# Folders of image files

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                  ".pgm")
# Modes with one channel: a folder of only these is read as grey, any other as RGB.
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


@dataclass
class FolderImages:
    """A folder's images at one size, uint8 ``[N, C, H, W]``, and its classes (folder names)."""

    train: Split
    test: Split | None        # a ``test/`` folder beside ``train/``
    classes: list[str]
    size: tuple[int, int]     # height, width
    channels: int


def is_image_file(path: Path) -> bool:
    """A file named as an image (hidden files left out)."""
    return not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def image_paths(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def image_array(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """One image file as the model takes it: ``channels`` (1 grey, 3 RGB) at ``size``
    (height, width), uint8 ``[C, H, W]``. Training and ``predict`` both read images here, so a
    saved model sees new files exactly as it saw its training files."""
    from PIL import Image

    try:
        with Image.open(path) as opened:
            image = opened.convert("L" if channels == 1 else "RGB")
        if image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as exc:  # PIL's errors for a damaged file
        raise SpecError(f"{path} cannot be read as an image ({exc})", source=str(path),
                        fix="Replace or remove the file.") from None
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def read_image_folder(root: Path, size: tuple[int, int] | None) -> FolderImages:
    """``root/CLASS/*.png`` (or ``root/train/CLASS/...`` with ``root/test/CLASS/...``) at
    ``size``; without one every image must already share its size. The files' headers are
    read only when the folder is decoded, not by a process that finds it decoded."""
    if not root.is_dir():
        raise SpecError(f"{root} is not a folder", path="trainer.dataset.path",
                        fix="Give a folder with one subfolder of images per class.")
    parts = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    train_dir, test_dir = (root / "train", root / "test") if parts == {"train", "test"} \
        else (root, None)
    classes = _classes(train_dir)
    files = {name: image_paths(train_dir / name) for name in classes}
    test_files = {name: image_paths(test_dir / name) if (test_dir / name).is_dir() else []
                  for name in classes} if test_dir else {}
    if test_dir is not None:
        extra = sorted(set(_classes(test_dir)) - set(classes))
        if extra:
            raise SpecError(f"{test_dir} has classes that {train_dir} lacks: "
                            f"{', '.join(extra[:5])}", path="trainer.dataset.path",
                            fix="Give train/ a folder for every class of test/.")
    every = [p for group in (*files.values(), *test_files.values()) for p in group]
    found: list[tuple[tuple[int, int], int]] = []  # the scan, once, and only if decoding

    def how_to_read() -> tuple[tuple[int, int], int]:
        if not found:
            found.append(_scan(root, every, size))
        return found[0]

    def decoded(groups: dict[str, list[Path]], part: str) -> Split:
        paths = [p for name in classes for p in groups.get(name, [])]

        def decode() -> Split:
            shape, channels = how_to_read()
            x = np.stack([image_array(p, shape, channels) for p in paths]) if paths else \
                np.zeros((0, channels, *shape), dtype=np.uint8)
            y = np.array([i for i, name in enumerate(classes) for _ in groups.get(name, [])],
                         dtype=np.int64)
            return x, y
        asked = f"{size[0]}x{size[1]}" if size else "own-size"
        return _cached(every, f"folder-{part}-{asked}", decode)

    train = decoded(files, "train")
    test = decoded(test_files, "test") if test_dir is not None else None
    x = train[0]  # what the files were read as (decoded now, or by an earlier process)
    return FolderImages(train, test, classes, (int(x.shape[2]), int(x.shape[3])),
                        int(x.shape[1]))


def _scan(root: Path, every: list[Path], size: tuple[int, int] | None
          ) -> tuple[tuple[int, int], int]:
    """How to read the files before decoding them, from their headers: the size (``size``, or
    the one they share) and the channels (1 when every file is grey, else 3)."""
    from PIL import Image

    modes, sizes = set(), set()
    for path in every:
        try:
            with Image.open(path) as image:
                modes.add(image.mode)
                sizes.add((image.height, image.width))
        except (OSError, ValueError, SyntaxError) as exc:
            raise SpecError(f"{path} cannot be read as an image ({exc})",
                            path="trainer.dataset.path", fix="Replace or remove the file.") \
                from None
    if size is None:
        if len(sizes) > 1:
            shown = ", ".join(f"{w}x{h}" for h, w in sorted(sizes)[:4])
            raise SpecError(f"the images of {root} have {len(sizes)} sizes ({shown}"
                            f"{', ...' if len(sizes) > 4 else ''})",
                            path="trainer.dataset.size",
                            fix="Add size: [HEIGHT, WIDTH] to resize every image, e.g. "
                                "size: [64, 64].")
        size = next(iter(sizes))
    return size, 1 if modes <= set(_GREY_MODES) else 3


def _classes(folder: Path) -> list[str]:
    """The class folders of ``folder``: each holds images; two at least."""
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    empty = [name for name in names if not image_paths(folder / name)]
    if empty:
        raise SpecError(f"{folder / empty[0]} holds no image files "
                        f"({', '.join(IMAGE_SUFFIXES[:4])}, ...)", path="trainer.dataset.path",
                        fix="Put the class's images in it, or remove the folder.")
    if len(names) < 2:
        loose = image_paths(folder)
        raise SpecError(f"{folder} has {len(names)} class folder{'s' * (len(names) != 1)}"
                        + (f" and {len(loose)} loose images" if loose else ""),
                        path="trainer.dataset.path",
                        fix="Put each class's images in a folder named for it: "
                            f"{folder}/cat/1.png, {folder}/dog/1.png, ...")
    return names
