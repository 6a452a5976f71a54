"""share/reveal across real processes: round trips, receivers only, refusals, mechanisms."""

from __future__ import annotations

import json

import pytest
import torch
from mpkit import make_spec, run_parties

import secure_ml
from secure_ml.errors import PartyFailure, PrivacyBudgetExceeded

pytestmark = [pytest.mark.multiparty, pytest.mark.timeout(180)]


def own_vector(session):
    return torch.arange(4, dtype=torch.float32) * (session.rank + 1) - 1.5


def round_trip(session):
    """Every party shares a vector; each is opened to everyone, one by one."""
    opened = {}
    for party in session.roster.parties:
        mine = own_vector(session) if party.name == session.name else None
        shared = session.share(mine, owner=party.name, name=f"vector of {party.name}")
        everyone = [p.name for p in session.roster.parties]
        opened[party.name] = session.reveal(shared, to=everyone, name=f"vector of {party.name}")
    return opened


def test_share_reveal_round_trip(world, tmp_path):
    results = run_parties(round_trip, make_spec(world), tmp_path)
    for opened in results.values():
        for rank, name in enumerate(sorted(opened)):
            expected = torch.arange(4, dtype=torch.float32) * (rank + 1) - 1.5
            assert torch.allclose(opened[name], expected, atol=1e-4)


class OffsetOnShares:
    """A release mechanism for tests: notes the comm counters, adds 5 on shares."""

    name = "offset"

    def __init__(self, session, *, refuse: bool = False) -> None:
        self.session, self.refuse, self.counters = session, refuse, {}

    def charge(self, release):
        self.counters["charge"] = self.session.comm_stats()
        if self.refuse:
            raise PrivacyBudgetExceeded(f"no budget left for {release.name!r}")

    def perturb(self, release, value):
        self.counters["perturb"] = self.session.comm_stats()
        return value + 5.0  # a CrypTen op on the shares: party 0 adds the public 5


def sum_to_last_party(session):
    """The sum of one vector from each party, revealed only to the last party.

    Then the same sum again through a mechanism that adds 5 on shares, and once
    more through one whose charge refuses: each party notes its comm counters.
    """
    shares = [
        session.share(own_vector(session) if p.name == session.name else None, owner=p.name)
        for p in session.roster.parties
    ]
    total = shares[0]
    for s in shares[1:]:
        total = total + s
    last = [session.roster.parties[-1].name]
    counters = [session.comm_stats()]
    plain = session.reveal(total, to=last, name="sum")
    counters.append(session.comm_stats())
    offset = OffsetOnShares(session)
    shifted = session.reveal(total, to=last, name="sum plus 5", mechanism=offset)
    counters.append(session.comm_stats())
    refusing = OffsetOnShares(session, refuse=True)
    with pytest.raises(PrivacyBudgetExceeded, match="no budget left for 'refused'"):
        session.reveal(total, to=last, name="refused", mechanism=refusing)
    counters.append(session.comm_stats())
    return {
        "sum": plain,
        "sum plus 5": shifted,
        "counters": counters,
        "at charge": offset.counters["charge"],
        "at perturb": offset.counters["perturb"],
        "at refusal": refusing.counters["charge"],
        "mechanisms": session.release_mechanisms,
    }


def check_sum_and_mechanisms(results, out, n_parties):
    """Only the last party gets the sum (and sum + 5); the mechanism ran before any byte."""
    names = sorted(results)
    expected = sum(torch.arange(4, dtype=torch.float32) * (r + 1) - 1.5 for r in range(n_parties))
    assert torch.allclose(results[names[-1]]["sum"], expected, atol=1e-4)
    assert torch.allclose(results[names[-1]]["sum plus 5"], expected + 5.0, atol=1e-4)
    for name in names:
        got = results[name]
        if name != names[-1]:
            assert got["sum"] is None and got["sum plus 5"] is None
        start, after_plain, after_offset, after_refusal = got["counters"]
        assert after_plain["bytes"] > start["bytes"]  # the plain reveal did send shares
        # charge, then perturb, both before this reveal sent a byte; the free
        # perturbation (a public offset) leaves the reveal's cost as without it
        assert got["at charge"] == got["at perturb"] == after_plain
        cost = {k: after_offset[k] - after_plain[k] for k in start}
        assert cost == {k: after_plain[k] - start[k] for k in start}
        # a refused charge: no byte and no round on any party
        assert got["at refusal"] == after_refusal == after_offset
        assert got["mechanisms"] == {"sum plus 5": ["offset"]}
        # the party's record (merged into result.json) keeps its format
        record = json.loads((out / "parties" / name / f"result-{name}.json").read_text())
        assert record["revealed_to"] == {"sum": [names[-1]], "sum plus 5": [names[-1]]}


def test_sum_is_revealed_only_to_its_receiver(world, tmp_path):
    results = run_parties(sum_to_last_party, make_spec(world), tmp_path)
    names = sorted(results)
    check_sum_and_mechanisms(results, tmp_path, len(names))
    if make_spec(world)["protocol"]["dealer"] == "tfp":  # every party warns loudly
        for name in names:
            assert "INSECURE DEALER" in (tmp_path / "logs" / f"{name}.log").read_text()


def test_three_parties_with_dealer_reveal_a_sum_to_party_2(tmp_path):
    spec = {
        "protocol": {"name": "python", "dealer": "ttp"},
        "party": [{"name": f"h{i}", "roles": ["data_owner"]} for i in range(3)],
    }
    results = secure_ml.run(sum_to_last_party, spec, out=tmp_path, timeout=120)
    assert set(results) == {"h0", "h1", "h2"}
    check_sum_and_mechanisms(results, tmp_path, 3)


def share_out_of_range(session):
    huge = torch.tensor([1.0, 5e5]) if session.name == "p1" else None
    session.share(huge, owner="p1", name="balances")


def test_out_of_range_input_is_refused_by_every_party_naming_the_owner(tmp_path):
    with pytest.raises(PartyFailure, match=r"p1 \(rank 1\).*FixedPointRangeError.*balances"):
        secure_ml.run(share_out_of_range, make_spec("2pc"), out=tmp_path, timeout=120)


def model_inference(session):
    """p0 owns a PyTorch model, p1 owns the input; only p1 learns the output."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3), torch.nn.Sigmoid()
    )
    x = torch.randn(4, 6)
    crypten = session.crypten
    secure = crypten.nn.from_pytorch(model, torch.zeros(1, 6)).encrypt(src=0)
    shared_x = session.share(x if session.name == "p1" else None, owner="p1")
    out = session.reveal(secure(shared_x), to=["p1"], name="predictions")
    return None if out is None else float((out - model(x)).abs().max())


def test_pytorch_model_inference_matches_torch(world, tmp_path):
    results = run_parties(model_inference, make_spec(world), tmp_path)
    assert results["p0"] is None
    assert results["p1"] < 5e-3


def one_product(session):
    first, last = session.roster.parties[0].name, session.roster.parties[-1].name
    x = session.share(torch.ones(1000) if session.name == first else None, owner=first)
    y = session.share(torch.ones(1000) if session.name == last else None, owner=last)
    return session.reveal(x * y, to=[first])


@pytest.mark.parametrize("n_parties", [2, 3])
def test_dealer_bytes_count_one_triple_correction_per_product(n_parties, tmp_path):
    spec = {
        "protocol": {"name": "python", "dealer": "ttp"},
        "party": [{"name": f"q{i}", "roles": ["data_owner"]} for i in range(n_parties)],
    }
    secure_ml.run(one_product, spec, out=tmp_path, timeout=120)
    dealer = json.loads((tmp_path / "parties" / "dealer" / "result-dealer.json").read_text())
    # two requests, whatever n: the triple (a 1000-element correction) and the
    # exact truncation (party 0's shares of the mask's top bit and quotient:
    # 2 x 1000 elements), each sent to party 0 only, plus a size message each;
    # the spec-hash check at start-up adds ~100 bytes to and from each process
    requests = dealer["metrics"]["dealer_requests"]
    assert requests == 2
    corrections = 8 * (1000 + 2 * 1000)
    assert corrections <= dealer["comm"]["bytes"] < corrections + 500 * requests + 250 * n_parties
