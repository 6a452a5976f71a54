"""The parts of DP-SGD on shares, on real shares: clipping, one huge row, the Poisson mask.

One body per world (2PC, 3PC, TTP) checks, against plaintext:

- the range-reduced clipping: per-example gradients whose norms run from
  1e-3 C to 1e4 C come out with norm min(|g|, C (1 - margin)), never above C;
- an MLP's clipped per-example gradient sum (backward through ReLU, ghost
  norms over both layers) equals the plaintext one from autograd;
- one huge row (features 1e3, clamped on shares first, as training does)
  adds at most C to the clipped gradient sum, and nothing to the other rows'
  part of it;
- the bits helper: [x >= 2^j] for many j from one conversion, exactly;
- the Poisson mask: 0/1, at its rate, fresh on every call;
- one training step with no row sampled moves the weights by exactly the
  noise: lr times the total sigma over the expected batch, per weight.
"""

from __future__ import annotations

import math

import pytest
import torch
from mpkit import make_spec, run_parties

from secure_ml.protocols import dp_sgd

pytestmark = [pytest.mark.multiparty, pytest.mark.timeout(180)]

C = 0.5
ROWS = 120
MASK_SHAPE = (40, 500)  # 20,000 draws
RATE = 0.2
#: the noise-only step: a 60 x 80 layer (4,860 weights), sigma 2, q N = 10
NOISE_LAYER = (80, 60)
NOISE_PLAN = dp_sgd.DPSGDPlan(
    rows=20, steps_per_epoch=2, epochs=1, sample_rate=0.5, noise_multiplier=2.0,
    max_grad_norm=1.0,
)  # fmt: skip


def gradients() -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs a (rows, 4) and output gradients d (rows, 3) with |g| = |d| sqrt(|a|^2 + 1)
    spread evenly on a log scale from 1e-3 C to 1e4 C."""
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(ROWS, 4, generator=gen)
    d = torch.randn(ROWS, 3, generator=gen)
    norms = C * torch.logspace(-3, 4, ROWS)
    d = d / d.norm(dim=1, keepdim=True) * (norms / (a.square().sum(1) + 1).sqrt()).unsqueeze(1)
    return a, d


def logreg_rows() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ten ordinary rows plus one huge row, labels, and weights of a 5-feature logreg."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(11, 5, generator=gen)
    x[-1] = 1e3  # the huge row
    y = (torch.rand(11, 1, generator=gen) > 0.5).float()
    weight, bias = torch.randn(1, 5, generator=gen), torch.randn(1, generator=gen)
    y[-1] = float((x[-1] @ weight.T + bias).item() < 0)  # wrong by far: the largest gradient
    return x, y, weight, bias


def body(session):
    crypten = session.crypten
    mine = session.rank == 0
    out = {}
    # clipping over seven orders of magnitude
    a, d = gradients()
    x = session.share(a if mine else None, owner="p0")
    delta = session.share(d if mine else None, owner="p0")
    target = C * (1 - dp_sgd.CLIP_MARGIN)  # as the training step clips
    u = dp_sgd.squared_norms(crypten, [delta], [x], x.square().sum(1)) * (1 / target**2)
    everyone = crypten.cryptensor(torch.ones(ROWS)) >= 0
    out["clipped"] = dp_sgd.clipped_deltas(crypten, [delta], u, everyone)[0]
    # one huge row, through the training step's own functions
    rows, labels, weight, bias = logreg_rows()
    state = type("State", (), {})()
    state.task = "binary"
    state.x_train = session.share(rows if mine else None, owner="p0", limit="encode")
    state.y_train = session.share(labels if mine else None, owner="p0")
    dp_sgd.bound_inputs(state)
    layers = [dp_sgd.SharedLayer(crypten.cryptensor(weight), crypten.cryptensor(bias))]
    for name, keep in (("without", torch.arange(11) < 10), ("with", torch.ones(11))):
        mask = crypten.cryptensor(keep.float()) > 0.5
        out[name] = clipped_sum(session, state, layers, mask)
    # an MLP: backward through a ReLU layer, norms over both layers
    mlp, x_mlp, y_mlp = small_mlp()
    shared_mlp = [
        dp_sgd.SharedLayer(
            crypten.cryptensor(m.weight.detach()), crypten.cryptensor(m.bias.detach())
        )
        for _, m in dp_sgd.linear_layers(mlp)
    ]
    state.x_train = crypten.cryptensor(x_mlp)
    state.y_train = crypten.cryptensor(y_mlp)
    all_rows = crypten.cryptensor(torch.ones(len(x_mlp))) > 0.5
    out["mlp"] = clipped_sum(session, state, shared_mlp, all_rows, task="multiclass")
    # linear regression: the same clamp path as logreg, with the squared error's gradient
    rows, targets, weight, bias = regression_rows()
    state.x_train, state.y_train = crypten.cryptensor(rows), crypten.cryptensor(targets)
    linear = [dp_sgd.SharedLayer(crypten.cryptensor(weight), crypten.cryptensor(bias))]
    all_rows = crypten.cryptensor(torch.ones(len(rows))) > 0.5
    out["linreg"] = clipped_sum(session, state, linear, all_rows, task="regression")
    # the bits helper, at and around powers of two
    values = torch.tensor([0.0, 2**-16, 0.99, 1.0, 1.5, 4.0, 1023.9, 1024.0, 3e5])
    shared = session.share(values if mine else None, owner="p0", limit="encode")
    from secure_ml.sharing.bits import at_least_powers_of_two
    from secure_ml.sharing.sampling import poisson_mask

    out["bits"] = at_least_powers_of_two(shared, [-16, -1, 0, 2, 10, 18])
    out["noise_step"] = noise_only_step(session)
    out["mask"] = poisson_mask(crypten, RATE, MASK_SHAPE)
    out["mask_again"] = poisson_mask(crypten, RATE, MASK_SHAPE)
    opened = {k: session.reveal(v, to=["p0"], name=k) for k, v in out.items()}
    return opened if mine else {k: v is None for k, v in opened.items()}


def noise_only_step(session):
    """One DPTrainer step whose Poisson mask sampled no row: the update is the noise."""
    from secure_ml.release.dp import GaussianOnShares
    from secure_ml.release.mechanism import Release

    crypten = session.crypten
    inputs, outputs = NOISE_LAYER
    x = crypten.cryptensor(torch.randn(NOISE_PLAN.rows, inputs, generator=gen(5)))
    y = crypten.cryptensor(torch.ones(NOISE_PLAN.rows, outputs))
    weight = torch.zeros(outputs, inputs)
    layers = [
        dp_sgd.SharedLayer(crypten.cryptensor(weight), crypten.cryptensor(torch.zeros(outputs)))
    ]
    mechanism = GaussianOnShares(sensitivity=1.0, noise_multiplier=NOISE_PLAN.noise_multiplier)
    release = Release("noise step", ("p0",), (outputs * (inputs + 1),), session)
    trainer = dp_sgd.DPTrainer(session, NOISE_PLAN, "multiclass", layers, mechanism, release)
    nobody = crypten.cryptensor(torch.zeros(NOISE_PLAN.rows)) > 0.5
    facts = dp_sgd.row_facts(crypten, layers, x, target=1.0)
    trainer.step(x, y, facts, nobody, None)
    return layers[0].weight


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def small_mlp() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A 5-6-3 MLP, 12 rows and one-hot labels; gradients from tiny to well above C."""
    from secure_ml.models import MLP

    torch.manual_seed(6)
    mlp = MLP(5, 3, hidden=(6,))
    x = torch.randn(12, 5, generator=gen(7)) * torch.logspace(-2, 1, 12).unsqueeze(1)
    y = torch.nn.functional.one_hot(torch.arange(12) % 3, 3).float()
    return mlp, x, y


def clipped_sum(session, state, layers, mask, task="binary"):
    crypten = session.crypten
    x, y = state.x_train, state.y_train
    out, inputs, slopes = dp_sgd.forward(layers, x)
    deltas = dp_sgd.backward(layers, dp_sgd.example_gradient(out, y, task), slopes)
    facts = dp_sgd.row_facts(crypten, layers, x, C * (1 - dp_sgd.CLIP_MARGIN))
    clipped = dp_sgd.clip_per_example(crypten, deltas, inputs, facts, mask)
    return dp_sgd.gradient_sum(crypten, clipped, inputs)


def test_clipping_huge_rows_bits_and_mask_on_shares(world, tmp_path):
    results = run_parties(body, make_spec(world), tmp_path)
    assert all(all(results[p].values()) for p in results if p != "p0")  # nothing elsewhere
    got = results["p0"]
    a, d = gradients()
    # clipping: |clipped g| = min(|g|, target) within fixed-point tolerance, never above C
    scale = (a.square().sum(1) + 1).sqrt()
    norms = d.norm(dim=1) * scale
    clipped = got["clipped"].norm(dim=1) * scale
    target = C * (1 - dp_sgd.CLIP_MARGIN)
    expected = torch.minimum(norms, torch.tensor(target))
    assert clipped.max() <= C
    # fixed-point tolerance: a few 2^-16 per element (absolute), 1e-3 relative
    error = (clipped - expected).abs()
    worst = int((error - 1e-3 * expected).argmax())
    assert (error <= 3e-4 + 1e-3 * expected).all(), (worst, norms[worst], error[worst])
    # one huge row: clamped to the feature bound, then clipped: it adds at most C
    huge_part = got["with"] - got["without"]
    assert 0.5 * C < huge_part.norm() <= C
    rows, labels, weight, bias = logreg_rows()
    bounded = rows[:10].clamp(-dp_sgd.FEATURE_BOUND, dp_sgd.FEATURE_BOUND)
    plain = plaintext_clipped_sum(bounded, labels[:10], weight, bias, target)
    # CrypTen's sigmoid is an approximation (~1e-3): ten rows of it, times |x| ~ 2
    torch.testing.assert_close(got["without"], plain, atol=1e-2, rtol=0)
    # the MLP: the same clipped sum as per-example autograd in plaintext
    mlp, x_mlp, y_mlp = small_mlp()
    expected_mlp = plaintext_mlp_clipped_sum(mlp, x_mlp, y_mlp, target)
    torch.testing.assert_close(got["mlp"], expected_mlp, atol=1e-2, rtol=0)
    # linear regression: per-example 2 (out - y) [x, 1], clipped, summed
    rows, targets, weight, bias = regression_rows()
    delta = 2 * (rows @ weight.T + bias - targets)
    expected_linreg = clip_and_sum(torch.cat([delta * rows, delta], dim=1), target)
    torch.testing.assert_close(got["linreg"], expected_linreg, atol=1e-2, rtol=0)
    # bits: [x >= 2^j] exactly, zero and exact powers included
    values = torch.tensor([0.0, 2**-16, 0.99, 1.0, 1.5, 4.0, 1023.9, 1024.0, 3e5])
    powers = torch.tensor([2.0**j for j in (-16, -1, 0, 2, 10, 18)])
    assert torch.equal(got["bits"].long(), (values.unsqueeze(1) >= powers).long())
    # the mask: 0/1 at its rate (6 standard errors: false failure ~2e-9), fresh each call
    for key in ("mask", "mask_again"):
        mask = got[key]
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        rate = mask.float().mean().item()
        assert abs(rate - RATE) < 6 * math.sqrt(RATE * (1 - RATE) / mask.nelement())
    agree = (got["mask"] == got["mask_again"]).float().mean().item()
    assert agree < 0.75  # independent masks agree on ~68 % of entries; equal ones on all
    # the noise-only step: sd = lr sigma_total / (q N), sigma_total = sigma sqrt(n / (n - t)),
    # t = n - 1; the sample sd of 4,800 draws is within 6 % (6 standard errors) of it
    n = len(results)
    expected = 0.5 * NOISE_PLAN.noise_multiplier * math.sqrt(n) / NOISE_PLAN.expected_batch
    step = got["noise_step"]
    assert abs(step.std().item() / expected - 1) < 0.06
    assert abs(step.mean().item()) < 6 * expected / math.sqrt(step.nelement())


def regression_rows() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eight rows of 3 features, targets and a linear model: errors from 0.01 to 10."""
    x = torch.randn(8, 3, generator=gen(8))
    weight, bias = torch.randn(1, 3, generator=gen(9)), torch.zeros(1)
    targets = x @ weight.T + torch.logspace(-2, 1, 8).unsqueeze(1) * torch.tensor(
        [1.0, -1.0] * 4
    ).unsqueeze(1)
    return x, targets, weight, bias


def clip_and_sum(per_example: torch.Tensor, target: float) -> torch.Tensor:
    factor = torch.clamp(target / per_example.norm(dim=1), max=1.0)
    return (per_example * factor.unsqueeze(1)).sum(0)


def plaintext_clipped_sum(x, y, weight, bias, target):
    """The clipped per-example gradient sum of logistic regression, in plaintext."""
    delta = torch.sigmoid(x @ weight.T + bias) - y  # (rows, 1)
    return clip_and_sum(torch.cat([delta * x, delta], dim=1), target)


def plaintext_mlp_clipped_sum(mlp, x, y, target):
    """Per-example gradients by autograd, each clipped to ``target``, summed; layer order
    [W1, b1, W2, b2] like ``gradient_sum``."""
    total = None
    for row, label in zip(x, y, strict=True):
        mlp.zero_grad()
        loss = torch.nn.functional.cross_entropy(mlp(row.unsqueeze(0)), label.unsqueeze(0))
        loss.backward()
        grad = torch.cat([p.grad.flatten() for p in mlp.parameters()])
        grad = grad * min(1.0, target / grad.norm().item())
        total = grad if total is None else total + grad
    return total
