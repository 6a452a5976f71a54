from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from imagefiles import (
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    Written,
    cifar_batch,
    cifar_folder,
    mnist_raw,
    write_cifar10,
    write_cifar_batch,
    write_idx,
    write_mnist,
)
from testkit import REPO

from secure_ml.data.images import IMAGE_DATASETS, ImageData, load_images
from secure_ml.errors import DataError

SPLITS = {True: "train", False: "test"}


def assert_loaded(data: ImageData, expected: Written, shape: tuple[int, int, int]) -> None:
    n = len(expected.labels)
    assert data.images.dtype == torch.float32
    assert data.images.shape == (n, *shape)
    assert data.labels.dtype == torch.int64
    assert data.n_classes == 10
    assert torch.equal(data.images, torch.from_numpy(expected.images).float() / 255)
    assert torch.equal(data.labels, torch.from_numpy(expected.labels))


@contextmanager
def raises_data_error(*parts: object) -> Iterator[pytest.ExceptionInfo[DataError]]:
    """Expect a DataError whose message contains every one of ``parts``."""
    with pytest.raises(DataError) as info:
        yield info
    message = str(info.value)
    for part in parts:
        assert str(part) in message, f"{part!r} not in {message!r}"


# ------------------------------------------------------------- round trips --


@pytest.mark.parametrize("train", [True, False], ids=SPLITS.get)
@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST"])
def test_mnist_formats_round_trip_exactly(tmp_path, name, train):
    written = write_mnist(tmp_path, name=name, n_train=23, n_test=7, seed=3)
    data = load_images(name, tmp_path, train=train)
    assert_loaded(data, written[SPLITS[train]], (1, 28, 28))


@pytest.mark.parametrize("train", [True, False], ids=SPLITS.get)
def test_cifar10_round_trips_exactly(tmp_path, train):
    written = write_cifar10(tmp_path, n_train=21, n_test=9, seed=4)
    data = load_images("CIFAR10", str(tmp_path), train=train)
    assert_loaded(data, written[SPLITS[train]], (3, 32, 32))


def test_pixels_span_zero_to_one(tmp_path):
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    images[1] = 255
    write_idx(mnist_raw(tmp_path) / "t10k-images-idx3-ubyte", IDX_IMAGES_MAGIC, images)
    write_idx(mnist_raw(tmp_path) / "t10k-labels-idx1-ubyte", IDX_LABELS_MAGIC, np.array([0, 9]))
    data = load_images("MNIST", tmp_path, train=False)
    assert data.images[0].max().item() == 0.0
    assert data.images[1].min().item() == 1.0
    assert data.labels.tolist() == [0, 9]


def test_fashion_mnist_reads_its_own_folder(tmp_path):
    mnist = write_mnist(tmp_path, name="MNIST", seed=1)
    fashion = write_mnist(tmp_path, name="FashionMNIST", seed=2)
    assert_loaded(load_images("MNIST", tmp_path, train=True), mnist["train"], (1, 28, 28))
    assert_loaded(load_images("FashionMNIST", tmp_path, train=True), fashion["train"], (1, 28, 28))


def test_fashion_mnist_does_not_fall_back_to_mnist(tmp_path):
    write_mnist(tmp_path, name="MNIST")
    with raises_data_error(tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte"):
        load_images("FashionMNIST", tmp_path, train=True)


def test_cifar10_train_concatenates_every_batch_in_order(tmp_path):
    written = write_cifar10(tmp_path, n_train=25, batches=5)
    assert_loaded(load_images("CIFAR10", tmp_path, train=True), written["train"], (3, 32, 32))


def test_cifar10_train_reads_whichever_batches_exist(tmp_path):
    written = write_cifar10(tmp_path, n_train=25, batches=5)  # 5 images per batch
    (cifar_folder(tmp_path) / "data_batch_2").unlink()
    keep = np.r_[0:5, 10:25]
    expected = Written(written["train"].images[keep], written["train"].labels[keep])
    assert_loaded(load_images("CIFAR10", tmp_path, train=True), expected, (3, 32, 32))


def test_cifar10_accepts_bytes_keys_and_old_numpy_pickles(tmp_path):
    """b"data"/b"labels" keys, and arrays pickled as numpy.core (numpy 1, the official files)."""
    written = write_cifar10(tmp_path, n_test=6)
    test = written["test"]
    entry = {k.encode(): v for k, v in cifar_batch(test.images, test.labels, "t").items()}
    blob = pickle.dumps(entry, protocol=2).replace(b"numpy._core.", b"numpy.core.")
    assert b"numpy.core.multiarray" in blob
    (cifar_folder(tmp_path) / "test_batch").write_bytes(blob)
    assert_loaded(load_images("CIFAR10", tmp_path, train=False), test, (3, 32, 32))


# --------------------------------------------- agreement with torchvision --


@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST"])
def test_torchvision_reads_the_generated_idx_files_identically(tmp_path, name):
    datasets = pytest.importorskip("torchvision.datasets")
    write_mnist(tmp_path, name=name)
    for train in (True, False):
        theirs = getattr(datasets, name)(str(tmp_path), train=train, download=False)
        ours = load_images(name, tmp_path, train=train)
        assert torch.equal(ours.images, theirs.data[:, None].float() / 255)
        assert torch.equal(ours.labels, theirs.targets)


def test_torchvision_reads_the_generated_cifar_files_identically(tmp_path, monkeypatch):
    cifar = pytest.importorskip("torchvision.datasets.cifar")
    # torchvision checks the md5 of the official files; everything else is the same
    monkeypatch.setattr(cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)
    write_cifar10(tmp_path, n_train=10, batches=5)
    for train in (True, False):
        theirs = cifar.CIFAR10(str(tmp_path), train=train, download=False)
        ours = load_images("CIFAR10", tmp_path, train=train)
        chw = torch.from_numpy(theirs.data).permute(0, 3, 1, 2)
        assert torch.equal(ours.images, chw.float() / 255)
        assert ours.labels.tolist() == theirs.targets
        assert len(theirs.classes) == 10


def test_importing_the_module_does_not_import_torchvision():
    code = "import sys, secure_ml.data.images; print('torchvision' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "False"


# ----------------------------------------------------- names and missing --


@pytest.mark.parametrize("name", ["ImageNet", "mnist", "CIFAR100", ""])
def test_unknown_dataset_lists_the_known_ones(tmp_path, name):
    with raises_data_error(repr(name), *IMAGE_DATASETS):
        load_images(name, tmp_path, train=True)


@pytest.mark.parametrize("name", IMAGE_DATASETS)
def test_missing_root(tmp_path, name):
    root = tmp_path / "nowhere"
    with raises_data_error(root, "download is disabled"):
        load_images(name, root, train=True)


def test_root_that_is_a_file(tmp_path):
    root = tmp_path / "file"
    root.write_text("")
    with raises_data_error(root, "not a directory", "download is disabled"):
        load_images("MNIST", root, train=False)


@pytest.mark.parametrize(
    ("train", "files"),
    [
        (True, ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]),
        (False, ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
    ],
)
@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST"])
def test_missing_mnist_files_are_all_named(tmp_path, name, train, files):
    raw = tmp_path / name / "raw"
    with raises_data_error(*(raw / f for f in files), "download is disabled", tmp_path):
        load_images(name, tmp_path, train=train)


def test_one_missing_mnist_file_is_named_alone(tmp_path):
    write_mnist(tmp_path)
    (mnist_raw(tmp_path) / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as info:
        load_images("MNIST", tmp_path, train=False)
    message = str(info.value)
    assert str(mnist_raw(tmp_path) / "t10k-labels-idx1-ubyte") in message
    assert str(mnist_raw(tmp_path) / "t10k-images-idx3-ubyte") not in message
    load_images("MNIST", tmp_path, train=True)  # the other split is still complete


def test_missing_mnist_file_with_a_gz_next_to_it_says_decompress(tmp_path):
    write_mnist(tmp_path)
    path = mnist_raw(tmp_path) / "train-images-idx3-ubyte"
    path.rename(path.with_name(path.name + ".gz"))
    with raises_data_error(path, "decompress", "download is disabled"):
        load_images("MNIST", tmp_path, train=True)


@pytest.mark.parametrize(("train", "file"), [(True, "data_batch_1"), (False, "test_batch")])
def test_missing_cifar_files(tmp_path, train, file):
    with raises_data_error(cifar_folder(tmp_path) / file, "download is disabled", tmp_path):
        load_images("CIFAR10", tmp_path, train=train)


def test_cifar_train_requires_data_batch_1(tmp_path):
    write_cifar10(tmp_path, batches=3)
    (cifar_folder(tmp_path) / "data_batch_1").unlink()
    with raises_data_error(cifar_folder(tmp_path) / "data_batch_1", "download is disabled"):
        load_images("CIFAR10", tmp_path, train=True)


# --------------------------------------------------------- malformed idx --


@pytest.mark.parametrize(
    ("file", "magic"),
    [("train-images-idx3-ubyte", IDX_IMAGES_MAGIC), ("train-labels-idx1-ubyte", IDX_LABELS_MAGIC)],
)
def test_wrong_idx_magic(tmp_path, file, magic):
    write_mnist(tmp_path)
    path = mnist_raw(tmp_path) / file
    wrong = IDX_LABELS_MAGIC if magic == IDX_IMAGES_MAGIC else IDX_IMAGES_MAGIC
    path.write_bytes(wrong.to_bytes(4, "big") + path.read_bytes()[4:])
    with raises_data_error(path, "magic", str(wrong), str(magic)):
        load_images("MNIST", tmp_path, train=True)


def test_gzip_file_under_the_uncompressed_name(tmp_path):
    import gzip

    write_mnist(tmp_path)
    path = mnist_raw(tmp_path) / "t10k-images-idx3-ubyte"
    path.write_bytes(gzip.compress(path.read_bytes()))
    with raises_data_error(path, "gzip", "decompress"):
        load_images("MNIST", tmp_path, train=False)


@pytest.mark.parametrize("file", ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"])
@pytest.mark.parametrize("change", ["truncated", "extra", "header_only_part", "empty"])
def test_idx_size_not_matching_its_header(tmp_path, file, change):
    write_mnist(tmp_path)
    path = mnist_raw(tmp_path) / file
    data = path.read_bytes()
    changed = {
        "truncated": data[:-1],
        "extra": data + b"\0",
        "header_only_part": data[:6],
        "empty": b"",
    }[change]
    path.write_bytes(changed)
    with raises_data_error(path):
        load_images("MNIST", tmp_path, train=True)


def test_idx_images_of_the_wrong_size(tmp_path):
    write_mnist(tmp_path)
    path = mnist_raw(tmp_path) / "train-images-idx3-ubyte"
    write_idx(path, IDX_IMAGES_MAGIC, np.zeros((20, 32, 32), dtype=np.uint8))
    with raises_data_error(path, "32x32", "28x28"):
        load_images("MNIST", tmp_path, train=True)


def test_image_and_label_counts_differ(tmp_path):
    write_mnist(tmp_path, n_train=20)
    labels = mnist_raw(tmp_path) / "train-labels-idx1-ubyte"
    write_idx(labels, IDX_LABELS_MAGIC, np.zeros(19, dtype=np.uint8))
    images = mnist_raw(tmp_path) / "train-images-idx3-ubyte"
    with raises_data_error(images, labels, "20 images", "19 labels"):
        load_images("MNIST", tmp_path, train=True)


def test_idx_label_out_of_range(tmp_path):
    write_mnist(tmp_path, n_test=10)
    labels = mnist_raw(tmp_path) / "t10k-labels-idx1-ubyte"
    write_idx(labels, IDX_LABELS_MAGIC, np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 10]))
    with raises_data_error(labels, "label 10 at index 9", "0..9"):
        load_images("MNIST", tmp_path, train=False)


def test_empty_idx_split(tmp_path):
    write_mnist(tmp_path, n_test=0)
    with raises_data_error(mnist_raw(tmp_path) / "t10k-images-idx3-ubyte", "no images"):
        load_images("MNIST", tmp_path, train=False)


# ------------------------------------------------------- malformed CIFAR --


def _cifar_test_batch(tmp_path, **changes):
    """Write a valid dataset, then replace test_batch by the batch dict with ``changes``."""
    written = write_cifar10(tmp_path, n_test=4)
    entry = cifar_batch(written["test"].images, written["test"].labels, "testing batch 1 of 1")
    entry.update(changes)
    entry = {k: v for k, v in entry.items() if v is not None}
    return write_cifar_batch(cifar_folder(tmp_path) / "test_batch", entry)


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (np.zeros((4, 1024), dtype=np.uint8), "shape (4, 1024)"),
        (np.zeros((4, 3, 32, 32), dtype=np.uint8), "shape (4, 3, 32, 32)"),
        (np.zeros((4, 3072), dtype=np.float32), "float32"),
        ([[0] * 3072] * 4, "a list"),
    ],
)
def test_cifar_data_of_the_wrong_shape_or_type(tmp_path, data, found):
    path = _cifar_test_batch(tmp_path, data=data)
    with raises_data_error(path, found, "(n, 3072)"):
        load_images("CIFAR10", tmp_path, train=False)


def test_cifar_batch_in_a_train_file_is_named(tmp_path):
    write_cifar10(tmp_path, n_train=10, batches=2)
    path = cifar_folder(tmp_path) / "data_batch_2"
    bad = cifar_batch(np.zeros((5, 3, 32, 32), dtype=np.uint8), np.zeros(5), "b")
    bad["data"] = bad["data"].reshape(5, 3, 1024)
    write_cifar_batch(path, bad)
    with raises_data_error(path, "(n, 3072)"):
        load_images("CIFAR10", tmp_path, train=True)
    load_images("CIFAR10", tmp_path, train=False)  # the test split is still fine


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ([1, 2, 3], "4 images but 'labels' holds 3"),
        ([], "4 images but 'labels' holds 0"),
        ([1, 2, 3, 10], "label 10 at index 3"),
        ([-1, 2, 3, 4], "label -1 at index 0"),
        ([1.0, 2.0, 3.0, 4.0], "'labels' is a list of float64"),
        ([[1], [2, 3], [4], [5]], "'labels' is a list"),
        ("0123", "'labels' is a str"),
    ],
)
def test_cifar_bad_labels(tmp_path, labels, expected):
    path = _cifar_test_batch(tmp_path, labels=labels)
    with raises_data_error(path, expected):
        load_images("CIFAR10", tmp_path, train=False)


@pytest.mark.parametrize("key", ["data", "labels"])
def test_cifar_missing_key(tmp_path, key):
    path = _cifar_test_batch(tmp_path, **{key: None})
    with raises_data_error(path, f"no {key!r}"):
        load_images("CIFAR10", tmp_path, train=False)


@pytest.mark.parametrize(
    ("blob", "expected"),
    [
        (b"", "not a pickled CIFAR-10 batch"),
        (b"not a pickle at all", "not a pickled CIFAR-10 batch"),
        (pickle.dumps([1, 2, 3]), "holds a list"),
    ],
)
def test_cifar_file_that_is_not_a_batch(tmp_path, blob, expected):
    write_cifar10(tmp_path)
    path = cifar_folder(tmp_path) / "test_batch"
    path.write_bytes(blob)
    with raises_data_error(path, expected):
        load_images("CIFAR10", tmp_path, train=False)


class _MakesDirectory:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_cifar_pickle_naming_other_globals_is_refused_without_running_it(tmp_path):
    write_cifar10(tmp_path)
    target = tmp_path / "created_by_the_pickle"
    path = cifar_folder(tmp_path) / "test_batch"
    path.write_bytes(pickle.dumps({"data": _MakesDirectory(str(target)), "labels": [0]}))
    with raises_data_error(path, "refusing to unpickle", "mkdir"):
        load_images("CIFAR10", tmp_path, train=False)
    assert not target.exists()
