"""Input-only parties with the Python API: a total of counts that clinics share.

Run it with ``.venv/bin/python protocols/python_input_parties.py``. Each
clinic (``crypten = false``) splits its counts into random shares, one per
compute party (``session.send_shares``), and is done; the office and the
university add the shares of every clinic that delivered
(``session.receive_shares``) and open the total to the office only. This week
clinic_c cannot read its records and stops with an error: it is ``optional``,
so the launcher drops it and the total covers clinics a and b.
"""

from __future__ import annotations

from pathlib import Path

import torch

import secure_ml
from secure_ml.errors import DataError

SPEC = Path(__file__).with_suffix(".toml")
WEEKS = 4


def weekly_counts(name: str) -> torch.Tensor:
    """Stand-in for each clinic's private records: cases per week."""
    if name == "clinic_c":
        raise DataError("clinic_c: records unavailable this week")
    generator = torch.Generator().manual_seed(sum(name.encode()))
    return torch.randint(0, 50, (WEEKS,), generator=generator).float()


def total_cases(session: secure_ml.Session) -> torch.Tensor | None:
    clinics = [p.name for p in session.roster.outside]
    if session.name in clinics:
        session.send_shares(weekly_counts(session.name))  # this clinic's part ends here
        return None
    total = None
    for clinic in clinics:
        shared = session.receive_shares(sender=clinic, shape=(WEEKS,))
        if shared is not None:  # None on every compute party for a clinic that dropped out
            total = shared if total is None else total + shared
    return session.reveal(total, to=["office"], name="total cases")


def main() -> None:
    results = secure_ml.run(total_cases, SPEC)
    print({name: None if value is None else value.tolist() for name, value in results.items()})
    expected = weekly_counts("clinic_a") + weekly_counts("clinic_b")
    print(f"plaintext total of clinics a and b (for comparison): {expected.tolist()}")


if __name__ == "__main__":
    main()
