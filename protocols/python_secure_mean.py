"""A secure statistic with the Python API: the mean over three parties' values.

Run it with ``.venv/bin/python protocols/python_secure_mean.py``. Each party
secret-shares its own values (its count and sum), the sums are added on
shares, the division happens on shares, and only the receiver opens the mean.
The other parties' ``reveal`` returns ``None``: they never hold the result.
"""

from __future__ import annotations

from pathlib import Path

import torch

import secure_ml

SPEC = Path(__file__).with_suffix(".toml")
MAX_COUNT = 1000.0  # public: an upper bound on the number of patients in all


def local_values(name: str) -> torch.Tensor:
    """Stand-in for each party's private data (here: a few lab values)."""
    seed = sum(name.encode())
    return torch.rand(50 + seed % 20, generator=torch.Generator().manual_seed(seed)) * 10


def secure_mean(session: secure_ml.Session) -> float | None:
    mine = local_values(session.name)
    summary = torch.tensor([mine.sum(), float(len(mine))])  # [sum, count]
    total = None
    for party in session.roster.parties:
        shared = session.share(summary if party.name == session.name else None, owner=party.name)
        total = shared if total is None else total + shared
    # CrypTen's reciprocal (Newton-Raphson) converges only for inputs of a
    # moderate size (it is wrong for 196, checked). Divide the shared count by a
    # public upper bound first, so the reciprocal sees a value in (0, 1].
    mean = (total[0] / MAX_COUNT) * (total[1] / MAX_COUNT).reciprocal()
    opened = session.reveal(mean, to=["registry"], name="mean")
    return None if opened is None else float(opened)


def main() -> None:
    results = secure_ml.run(secure_mean, SPEC)
    pooled = torch.cat([local_values(n) for n in results])
    print({name: value for name, value in results.items()})
    print(f"plaintext mean of the pooled values (for comparison): {float(pooled.mean()):.4f}")


if __name__ == "__main__":
    main()
