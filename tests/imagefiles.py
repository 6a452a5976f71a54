"""Write tiny image datasets in their exact on-disk formats, for tests.

The formats are written here from their specifications, independently of
``secure_ml.data.images`` (which reads them), so a test comparing the two can
catch a reader bug instead of sharing it:

- MNIST / FashionMNIST: torchvision's layout ``ROOT/<name>/raw/`` with the four
  uncompressed idx files. An idx file is a big-endian int32 magic number (2051
  for images, 2049 for labels: unsigned bytes, 3 or 1 dimensions), one big-endian
  int32 per dimension, then the bytes in C order.
- CIFAR-10, python version: ``ROOT/cifar-10-batches-py/`` with pickled dicts
  ``data_batch_1..5`` and ``test_batch`` ({"data": uint8 (n, 3072) rows of
  R, G, B planes of 32x32, "labels": list of int, ...}) and ``batches.meta``.
  Keys are str: what the official (Python 2) files give under
  ``pickle.load(f, encoding="latin1")``, the way torchvision reads them.

Each writer returns what it wrote, per split, in ``ImageData``'s layout.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049
CIFAR_LABEL_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


class Written(NamedTuple):
    images: np.ndarray  # uint8 (n, channels, height, width)
    labels: np.ndarray  # int64 (n,)


def write_idx(path: str | Path, magic: int, array: np.ndarray) -> Path:
    """Write ``array`` (uint8) as an idx file with the given magic number."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    return path


def mnist_raw(root: str | Path, name: str = "MNIST") -> Path:
    return Path(root) / name / "raw"


def write_mnist(
    root: str | Path, name: str = "MNIST", n_train: int = 20, n_test: int = 10, seed: int = 0
) -> dict[str, Written]:
    """Write random 28x28 images and labels 0..9 as ``root/name/raw/*-ubyte``.

    Returns ``{"train": Written, "test": Written}``, images as (n, 1, 28, 28).
    """
    rng = np.random.default_rng(seed)
    raw = mnist_raw(root, name)
    written = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", IDX_IMAGES_MAGIC, images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", IDX_LABELS_MAGIC, labels)
        written[split] = Written(images[:, None], labels.astype(np.int64))
    return written


def cifar_folder(root: str | Path) -> Path:
    return Path(root) / "cifar-10-batches-py"


def write_cifar_batch(
    path: str | Path, entry: Any, protocol: int = pickle.DEFAULT_PROTOCOL
) -> Path:
    """Pickle ``entry`` (normally a batch dict) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(entry, f, protocol=protocol)
    return path


def cifar_batch(images: np.ndarray, labels: np.ndarray, batch_label: str) -> dict[str, Any]:
    """A batch dict as in the official files, from images (n, 3, 32, 32)."""
    return {
        "batch_label": batch_label,
        "labels": [int(label) for label in labels],
        "data": images.reshape(len(images), 3 * 32 * 32),
        "filenames": [f"image_{i:05d}.png" for i in range(len(images))],
    }


def write_cifar10(
    root: str | Path, n_train: int = 20, n_test: int = 10, seed: int = 0, batches: int = 1
) -> dict[str, Written]:
    """Write random images and labels as ``root/cifar-10-batches-py/``.

    The train split is cut into ``batches`` contiguous, near-equal parts
    (``np.array_split``) written as ``data_batch_1..batches``.
    Returns ``{"train": Written, "test": Written}``, images as (n, 3, 32, 32).
    """
    if not 1 <= batches <= 5:
        raise ValueError(f"batches = {batches}: CIFAR-10 has 1 to 5 train batches")
    rng = np.random.default_rng(seed)
    folder = cifar_folder(root)
    written = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.int64)
        written[split] = Written(images, labels)
    train_parts = list(
        zip(
            np.array_split(written["train"].images, batches),
            np.array_split(written["train"].labels, batches),
            strict=True,
        )
    )
    for i, (images, labels) in enumerate(train_parts, start=1):
        entry = cifar_batch(images, labels, f"training batch {i} of 5")
        write_cifar_batch(folder / f"data_batch_{i}", entry)
    test = written["test"]
    write_cifar_batch(
        folder / "test_batch", cifar_batch(test.images, test.labels, "testing batch 1 of 1")
    )
    per_batch = len(train_parts[0][1])
    meta = {
        "num_cases_per_batch": per_batch,
        "label_names": list(CIFAR_LABEL_NAMES),
        "num_vis": 3072,
    }
    write_cifar_batch(folder / "batches.meta", meta)
    return written
