"""reveal's mechanism hook without processes: order of stages, refusals, records.

A fake shared value logs every opening (``get_plain_text(dst=...)``), which is
the only place a reveal sends shares; the session is a real ``Session`` that
is never started (reveal needs only its roster, rank and record).
"""

from __future__ import annotations

import pytest
import torch

from secure_ml.errors import EXIT_CODES, PrivacyBudgetExceeded, exit_code_for
from secure_ml.release import Release, ReleaseMechanism, reveal
from secure_ml.session import Session
from secure_ml.spec import spec_from_dict


class FakeShared:
    """Stands for a CrypTen shared tensor: knows its plaintext, logs openings."""

    def __init__(self, plain: torch.Tensor, log: list) -> None:
        self.plain, self.log = plain, log
        self.shape = plain.shape

    def __add__(self, offset: float) -> FakeShared:
        return FakeShared(self.plain + offset, self.log)

    def get_plain_text(self, dst: int) -> torch.Tensor:
        self.log.append(("open", dst))
        return self.plain


class Offset:
    """A mechanism that logs its stages and adds a public offset on shares."""

    name = "offset"

    def __init__(self, log: list, *, refuse: bool = False) -> None:
        self.log, self.refuse, self.releases = log, refuse, []

    def charge(self, release: Release) -> None:
        self.log.append(("charge", release.name))
        self.releases.append(release)
        if self.refuse:
            raise PrivacyBudgetExceeded(f"no budget left for {release.name!r}")

    def perturb(self, release: Release, value: FakeShared) -> FakeShared:
        self.log.append(("perturb", release.name))
        return value + 5.0


def session(rank: int = 1) -> Session:
    spec = spec_from_dict(
        {
            "protocol": {"name": "python", "dealer": "ttp"},
            "party": [{"name": f"p{i}", "roles": ["data_owner"]} for i in range(3)],
        }
    )
    return Session(spec, rank=rank, rendezvous="unused", out_dir="unused")


def test_without_a_mechanism_reveal_only_opens_to_each_receiver_in_turn():
    log: list = []
    me = session(rank=2)
    out = reveal(me, FakeShared(torch.ones(3), log), to=["p2", "p0", "p2"], name="sum")
    assert log == [("open", 2), ("open", 0)]
    assert torch.equal(out, torch.ones(3))
    assert me.revealed == {"sum": ["p2", "p0"]} and me.release_mechanisms == {}


def test_a_mechanism_is_charged_then_perturbs_before_any_opening():
    log: list = []
    me, mechanism = session(rank=0), Offset(log)
    assert isinstance(mechanism, ReleaseMechanism)
    out = me.reveal(
        FakeShared(torch.zeros(2, 3), log), to=["p0", "p1"], name="m", mechanism=mechanism
    )
    assert log == [("charge", "m"), ("perturb", "m"), ("open", 0), ("open", 1)]
    assert torch.equal(out, torch.full((2, 3), 5.0))
    (release,) = mechanism.releases
    assert release.receivers == ("p0", "p1") and release.shape == (2, 3)
    assert release.rank == 0 and release.roster is me.roster
    # result.json's revealed_to keeps its format; the mechanism is noted beside it
    assert me.revealed == {"m": ["p0", "p1"]} and me.release_mechanisms == {"m": ["offset"]}


def test_a_refused_charge_opens_nothing_and_records_nothing():
    log: list = []
    me = session()
    with pytest.raises(PrivacyBudgetExceeded, match="no budget left for 'm'"):
        me.reveal(
            FakeShared(torch.ones(1), log), to=["p1"], name="m", mechanism=Offset(log, refuse=True)
        )
    assert log == [("charge", "m")]
    assert me.revealed == {} and me.release_mechanisms == {}
    assert exit_code_for(PrivacyBudgetExceeded("x")) == EXIT_CODES[PrivacyBudgetExceeded] == 12


def test_bad_receivers_are_refused_before_the_mechanism_is_charged():
    log: list = []
    with pytest.raises(KeyError, match="no party named 'p9'"):
        reveal(session(), FakeShared(torch.ones(1), log), to=["p9"], mechanism=Offset(log))
    with pytest.raises(ValueError, match="dealer"):
        reveal(session(), FakeShared(torch.ones(1), log), to=["dealer"], mechanism=Offset(log))
    assert log == []


class NoPerturb:
    name = "half"

    def charge(self, release: Release) -> None:
        pass


class PlaintextPerturb(Offset):
    def perturb(self, release: Release, value: FakeShared) -> torch.Tensor:
        return value.plain  # a plaintext: must never be "opened"


def test_a_mechanism_that_is_not_one_is_refused_before_anything_happens():
    log: list = []
    with pytest.raises(TypeError, match="NoPerturb lacks perturb"):
        reveal(session(), FakeShared(torch.ones(1), log), to=["p1"], mechanism=NoPerturb())
    with pytest.raises(TypeError, match="'offset': perturb returned Tensor, not a shared value"):
        reveal(
            session(), FakeShared(torch.ones(1), log), to=["p1"], mechanism=PlaintextPerturb(log)
        )
    assert ("open", 1) not in log


def test_a_party_outside_cryptens_world_cannot_receive():
    spec = spec_from_dict(
        {
            "protocol": {"name": "python", "dealer": "ttp"},
            "party": [
                {"name": "p0", "roles": ["data_owner"]},
                {"name": "p1", "roles": ["data_owner"]},
                {"name": "client", "roles": ["receiver"], "crypten": False},
            ],
        }
    )
    log: list = []
    me = Session(spec, rank=0, rendezvous="unused", out_dir="unused")
    with pytest.raises(ValueError, match="client is outside CrypTen's world"):
        reveal(me, FakeShared(torch.ones(2), log), to=["p0", "client"], mechanism=Offset(log))
    assert log == []  # refused before the charge and before any opening
