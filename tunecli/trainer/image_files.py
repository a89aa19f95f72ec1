"""The image data sets' original files, read directly: MNIST-family IDX files (raw or ``.gz``)
and CIFAR-10's python pickles, decoded once into ``.npy`` arrays that later processes map.

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
from pathlib import Path

import numpy as np

__all__ = ["cache_root", "read_cifar10", "read_idx", "read_mnist_family"]

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
