"""share/reveal across real processes: round trips, receivers only, refusals."""

from __future__ import annotations

import json

import pytest
import torch
from mpkit import make_spec, run_parties

import secure_ml
from secure_ml.errors import PartyFailure

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


def sum_to_last_party(session):
    """The sum of one vector from each party, revealed only to the last party."""
    shares = [
        session.share(own_vector(session) if p.name == session.name else None, owner=p.name)
        for p in session.roster.parties
    ]
    total = shares[0]
    for s in shares[1:]:
        total = total + s
    return session.reveal(total, to=[session.roster.parties[-1].name], name="sum")


def test_sum_is_revealed_only_to_its_receiver(world, tmp_path):
    results = run_parties(sum_to_last_party, make_spec(world), tmp_path)
    names = sorted(results)
    n = len(names)
    expected = sum(torch.arange(4, dtype=torch.float32) * (r + 1) - 1.5 for r in range(n))
    assert torch.allclose(results[names[-1]], expected, atol=1e-4)
    assert all(results[name] is None for name in names[:-1])
    if make_spec(world)["protocol"]["dealer"] == "tfp":  # every party warns loudly
        for name in names:
            assert "INSECURE DEALER" in (tmp_path / "logs" / f"{name}.log").read_text()


def test_three_parties_with_dealer_reveal_a_sum_to_party_2(tmp_path):
    spec = {
        "protocol": {"name": "python", "dealer": "ttp"},
        "party": [{"name": f"h{i}", "roles": ["data_owner"]} for i in range(3)],
    }
    results = secure_ml.run(sum_to_last_party, spec, out=tmp_path, timeout=120)
    assert results["h0"] is None and results["h1"] is None
    expected = sum(torch.arange(4, dtype=torch.float32) * (r + 1) - 1.5 for r in range(3))
    assert torch.allclose(results["h2"], expected, atol=1e-4)


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
