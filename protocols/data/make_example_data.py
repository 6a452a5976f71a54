"""Write the local files the example specs read (into protocols/data/generated/).

    .venv/bin/python protocols/data/make_example_data.py

- ``hospital_a.csv``, ``hospital_b.csv``: breast cancer data split by columns
  between two hospitals, each with a ``patient_id`` column, rows in different
  orders and only partly overlapping (as real registries are); hospital_b's
  file also holds the diagnosis.
- ``cifar/cifar-10-batches-py/``: a few random images in CIFAR-10's on-disk
  format, standing in for a client's photos (nothing can be downloaded here).
"""

from __future__ import annotations

import csv
import pickle
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer

OUT = Path(__file__).resolve().parent / "generated"


def write_hospital_csvs(out: Path, seed: int = 0) -> None:
    data = load_breast_cancer()
    rng = np.random.default_rng(seed)
    ids = [f"P{i:04d}" for i in range(len(data.target))]
    half = data.data.shape[1] // 2
    names = [n.replace(" ", "_") for n in data.feature_names]
    # each hospital misses a few patients the other has
    keep_a = rng.permutation(len(ids))[: len(ids) - 15]
    keep_b = rng.permutation(len(ids))[: len(ids) - 10]
    with open(out / "hospital_a.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["patient_id", *names[:half]])
        for i in keep_a:
            w.writerow([ids[i], *(f"{v:.6g}" for v in data.data[i, :half])])
    with open(out / "hospital_b.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["patient_id", *names[half:], "diagnosis"])
        for i in keep_b:
            w.writerow([ids[i], *(f"{v:.6g}" for v in data.data[i, half:]), data.target[i]])


def write_cifar(out: Path, n_train: int = 8, n_test: int = 4, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder = out / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("data_batch_1", n_train), ("test_batch", n_test)):
        batch = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, n).tolist(),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class_{i}" for i in range(10)]}, f)


def main(out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_hospital_csvs(out)
    write_cifar(out)
    print(f"example data written to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
