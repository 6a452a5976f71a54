"""An owner's refused input reaches its peers as a kind of failure, never as a value.

Issue 12, item 5: ``FixedPointRangeError`` names the offending value and its
index, which the owner may read in its own log; every other party learns only
that the owner's input failed validation and of which kind.
"""

from __future__ import annotations

import pytest
import torch
from mpkit import make_spec

import secure_ml
from secure_ml.errors import PartyFailure

pytestmark = pytest.mark.multiparty

#: traces of the private value 987654.321 at index 7, in the forms an error prints
VALUE_TRACES = ("987654", "9.87654", "(7,)", "index 7")


def shares_an_out_of_range_balance(session):
    balances = None
    if session.name == "p1":
        balances = torch.zeros(10)
        balances[7] = 987654.321
    session.share(balances, owner="p1", name="balances")


def files_of(out, party):
    return [
        out / "logs" / f"{party}.log",
        out / ".control" / f"{party}.status.json",
        *sorted((out / "parties" / party).glob("*")),
    ]


@pytest.mark.timeout(90)
def test_peers_learn_the_kind_of_failure_but_not_the_value(tmp_path):
    spec = make_spec("3pc")
    with pytest.raises(PartyFailure, match=r"p1 \(rank 1\) failed: FixedPointRangeError"):
        secure_ml.run(shares_an_out_of_range_balance, spec, out=tmp_path, timeout=60)
    owner_log = (tmp_path / "logs" / "p1.log").read_text()
    assert "987654" in owner_log and "(7,)" in owner_log  # the owner sees its own value
    for peer in ("p0", "p2"):
        files = files_of(tmp_path, peer)
        assert files[0].is_file() and files[1].is_file()
        for path in files:
            text = path.read_text(errors="replace")
            leaked = [trace for trace in VALUE_TRACES if trace in text]
            assert not leaked, f"{path} shows {leaked}"
        status = files[1].read_text()
        assert "party p1 could not provide balances: FixedPointRangeError" in status
        assert "outside CrypTen's fixed-point range" in status
