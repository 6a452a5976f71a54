"""Image datasets (MNIST, FashionMNIST, CIFAR-10) read from a local root.

Nothing is downloaded: a party's plaintext comes only from files its operator put
in place, so ``load_images`` reads ``ROOT`` in torchvision's on-disk layout and,
when something is missing or malformed, raises a ``DataError`` that names the
file and says what to put where.

Both formats are read here, with numpy, rather than through ``torchvision.datasets``:

- MNIST / FashionMNIST (idx files): torchvision checks only that the four files
  of *both* splits exist, silently prefers a legacy ``processed/*.pt`` copy when
  there is one, checks the header with ``assert`` (no file name; gone under
  ``python -O``) and never compares the image count with the label count. Those
  checks are what a useful error needs, and once the header is checked the rest
  is one ``np.frombuffer``.
- CIFAR-10 (python version, pickled batches): torchvision verifies the md5 of the
  official files, so any other file (a subset, a test fixture) is refused; and a
  plain ``pickle.load`` runs whatever code a file names. The batches are read here
  with an unpickler that can only build numpy arrays (plus lists, strings, ints).

So torchvision, an optional extra, is not needed to load these datasets.
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from secure_ml.errors import DataError

IMAGE_DATASETS = ("MNIST", "FashionMNIST", "CIFAR10")
N_CLASSES = 10

MNIST_SIDE = 28
IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_BATCH = "test_batch"
CIFAR_IMAGE_SHAPE = (3, 32, 32)
CIFAR_ROW = 3 * 32 * 32

_LAYOUTS = {
    "MNIST": "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (uncompressed)",
    "FashionMNIST": "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (uncompressed)",
    "CIFAR10": f"{CIFAR_FOLDER}/{{data_batch_1..5,test_batch}} (from cifar-10-python.tar.gz)",
}

#: the only globals a CIFAR-10 batch may name: what numpy needs to rebuild an array
_ARRAY_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # bytes in a protocol-2 pickle written by Python 3
    }
)


@dataclass(frozen=True)
class ImageData:
    images: torch.Tensor  # float32 (n, channels, height, width), scaled to [0, 1]
    labels: torch.Tensor  # int64 (n,)
    n_classes: int  # 10 for all three datasets


def load_images(name: str, root: str | Path, *, train: bool) -> ImageData:
    """Load the train or test split of ``name`` from ``root`` (never downloads)."""
    if name not in IMAGE_DATASETS:
        raise DataError(
            f"unknown image dataset {name!r}: must be one of {', '.join(IMAGE_DATASETS)}"
        )
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"{name}: data root {root} is not a directory; download is disabled: "
            f"create it and put the files under it as {root}/{_LAYOUTS[name]}"
        )
    if name == "CIFAR10":
        pixels, labels = _read_cifar10(root, train=train)
    else:
        pixels, labels = _read_mnist(name, root, train=train)
    return ImageData(
        images=torch.from_numpy(pixels).float().div_(255),
        labels=torch.from_numpy(labels.astype(np.int64)),
        n_classes=N_CLASSES,
    )


# ------------------------------------------------------------------ shared --


def _require_files(name: str, root: Path, paths: list[Path]) -> None:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        listed = ", ".join(_describe_missing(p) for p in missing)
        raise DataError(
            f"{name}: missing {listed}; download is disabled: "
            f"put the files under {root} as {root}/{_LAYOUTS[name]}"
        )


def _describe_missing(path: Path) -> str:
    gz = path.with_name(path.name + ".gz")
    if gz.is_file():
        return f"{path} (found {gz.name}: decompress it, e.g. `gunzip -k {gz}`)"
    return str(path)


def _check_labels(labels: np.ndarray, path: Path) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= N_CLASSES))
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{path}: label {labels[i]} at index {i} is out of range; "
            f"labels must be 0..{N_CLASSES - 1}"
        )


# ------------------------------------------------------ MNIST, FashionMNIST --


def _read_mnist(name: str, root: Path, *, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n, 1, 28, 28) and uint8 labels (n,) of one split."""
    raw = root / name / "raw"
    prefix = "train" if train else "t10k"
    image_path = raw / f"{prefix}-images-idx3-ubyte"
    label_path = raw / f"{prefix}-labels-idx1-ubyte"
    _require_files(name, root, [image_path, label_path])
    images = _read_idx(image_path, IDX_IMAGES_MAGIC, (MNIST_SIDE, MNIST_SIDE))
    labels = _read_idx(label_path, IDX_LABELS_MAGIC, ())
    if len(images) != len(labels):
        raise DataError(
            f"{image_path} holds {len(images)} images but {label_path} holds "
            f"{len(labels)} labels: the two files must be from the same split"
        )
    _check_labels(labels, label_path)
    return images[:, None], labels


def _read_idx(path: Path, magic: int, item_shape: tuple[int, ...]) -> np.ndarray:
    """An idx file of unsigned bytes: ``magic``, n and ``item_shape`` as big-endian int32."""
    data = _read_bytes(path)
    ndim = 1 + len(item_shape)
    header = 4 * (1 + ndim)
    kind = "images" if item_shape else "labels"
    if len(data) < header:
        raise DataError(
            f"{path}: {len(data)} bytes is too short for an idx {kind} header; "
            "replace it with the original file"
        )
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        hint = " (the file is gzip-compressed: decompress it)" if data[:2] == b"\x1f\x8b" else ""
        raise DataError(
            f"{path}: idx magic number is {found}, expected {magic} for an uncompressed "
            f"idx {kind} file{hint}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if dims[1:] != item_shape:
        raise DataError(
            f"{path}: images are {'x'.join(map(str, dims[1:]))}, expected "
            f"{'x'.join(map(str, item_shape))}"
        )
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise DataError(
            f"{path}: {len(data)} bytes, but its header ({dims[0]} {kind}) needs "
            f"{expected}: the file is truncated or has extra bytes; replace it"
        )
    if dims[0] == 0:
        raise DataError(f"{path} holds no {kind}")
    return np.frombuffer(bytearray(data), dtype=np.uint8, offset=header).reshape(dims)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e


# ---------------------------------------------------------------- CIFAR-10 --


def _read_cifar10(root: Path, *, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n, 3, 32, 32) and int64 labels (n,) of one split.

    The train split is every ``data_batch_1..5`` present, in order; only
    ``data_batch_1`` is required (a subset of the batches is a valid, smaller set).
    """
    folder = root / CIFAR_FOLDER
    names = CIFAR_TRAIN_BATCHES if train else (CIFAR_TEST_BATCH,)
    _require_files("CIFAR10", root, [folder / names[0]])
    batches = [_read_cifar_batch(folder / n) for n in names if (folder / n).is_file()]
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return images.reshape(-1, *CIFAR_IMAGE_SHAPE), labels


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; refuses any other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ARRAY_GLOBALS:
            raise _ForbiddenGlobal(f"{module}.{name}")
        return super().find_class(module, name)


class _ForbiddenGlobal(pickle.UnpicklingError):
    pass


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    entry = _unpickle(path)
    if not isinstance(entry, dict):
        raise DataError(
            f"{path}: holds a {type(entry).__name__}, expected a dict with 'data' and "
            "'labels' (the python version of CIFAR-10); replace it with the original file"
        )
    data = _entry_field(entry, "data", path)
    if not _is_cifar_data(data):
        raise DataError(
            f"{path}: 'data' is {_describe(data)}, expected a uint8 array of shape "
            f"(n, {CIFAR_ROW}) (n images of 3x32x32); replace it with the original file"
        )
    if data.shape[0] == 0:
        raise DataError(f"{path} holds no images")
    labels = _cifar_labels(_entry_field(entry, "labels", path), path)
    if len(labels) != len(data):
        raise DataError(
            f"{path}: 'data' holds {len(data)} images but 'labels' holds {len(labels)} "
            "labels; replace it with the original file"
        )
    _check_labels(labels, path)
    return data, labels


def _unpickle(path: Path) -> Any:
    try:
        with path.open("rb") as f:
            # latin1 as in torchvision: the official files were pickled by Python 2
            return _ArrayUnpickler(f, encoding="latin1").load()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e
    except _ForbiddenGlobal as e:
        raise DataError(
            f"{path}: refusing to unpickle {e}: a CIFAR-10 batch holds only numpy arrays, "
            "lists and strings; use the python version of CIFAR-10 (cifar-10-python.tar.gz)"
        ) from e
    except Exception as e:  # garbage bytes can make unpickling raise almost anything
        raise DataError(
            f"{path}: not a pickled CIFAR-10 batch ({type(e).__name__}: {e}); "
            "use the python version of CIFAR-10 (cifar-10-python.tar.gz)"
        ) from e


def _entry_field(entry: dict[Any, Any], key: str, path: Path) -> Any:
    """``entry[key]``; keys are str when read with latin1, bytes when pickled as bytes."""
    for k in (key, key.encode()):
        if k in entry:
            return entry[k]
    found = ", ".join(sorted(repr(k) for k in entry))
    raise DataError(f"{path}: no {key!r} in the batch (found: {found or 'nothing'})")


def _is_cifar_data(data: Any) -> bool:
    return (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == CIFAR_ROW
    )


def _cifar_labels(raw: Any, path: Path) -> np.ndarray:
    labels = None
    if isinstance(raw, (list, tuple, np.ndarray)):
        try:
            labels = np.asarray(raw) if len(raw) else np.zeros(0, dtype=np.int64)
        except ValueError:  # a ragged list
            labels = None
    if labels is None or labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        found = _describe(raw) if labels is None else f"{_describe(raw)} of {labels.dtype}"
        raise DataError(f"{path}: 'labels' is {found}, expected a list of integers 0..9")
    return labels.astype(np.int64)


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    return f"a {type(value).__name__}"
