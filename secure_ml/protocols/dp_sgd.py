"""DP-SGD on shares: ``mpc.train`` with a ``[dp]`` section.

Per-example gradients are clipped, summed and noised while every value is
secret-shared; only the noisy model leaves the shared domain, to the
receivers, at the end. Models: ``logreg``, ``linreg`` and ``mlp`` (stacks of
Linear layers with ReLU between them), trained with a hand-written forward
and backward pass so that the per-example output gradients are at hand.

Stages of one run, and what each party sends and learns (the load, share and
standardise stages are ``mpc.train``'s):

1. ``charge`` (before training): the accountant calibrates the noise
   multiplier sigma from ``[dp] epsilon``, ``delta``, the sampling rate q and
   the number of steps T; every data owner checks its own budget ledger for
   (sigma, q, T), the compute parties exchange one verdict each, and either
   every owner charges the whole training or every party refuses
   (``secure_ml.release.dp.charge_owners``). Nothing else is sent yet.
2. ``bound`` (once): the shared, standardised training features (and
   regression targets) are clamped to [-FEATURE_BOUND, FEATURE_BOUND] on
   shares, so that every value stays far inside the fixed-point range and an
   outlier row cannot overflow the products below. Nothing is opened.
3. ``sample`` (once per epoch): a shared 0/1 Poisson mask over all training
   rows for each step of the epoch (``secure_ml.sharing.sampling``): every
   row is in a step's batch with probability q, independently, and no party
   learns which rows are. So every step touches every row, and the
   amplification by subsampling holds against the parties too.
4. ``step`` (T times, nothing opened): forward pass over all rows; the
   per-example output gradient; backward through the layers; per-example
   squared gradient norms by the ghost-norm identity
   |g_i|^2 = sum over layers of |delta_i|^2 (|a_i|^2 + 1) (no per-example
   gradient is materialised); the clipping factor min(1, C / |g_i|) computed
   with range reduction (``clip_scales``); the masked, clipped sum of the
   gradients; then each party adds its own Gaussian noise to its own share of
   the sum (``GaussianOnShares.perturb``: sigma^2 / (n - t) per party, so no
   coalition of t parties knows the calibrated part); and the SGD update
   (with momentum if asked) on shares. What is sent: CrypTen's masked
   openings and the dealer's tuples.
5. ``evaluate`` and ``release`` as in ``mpc.train``: the test metric (test
   rows, not covered by the DP guarantee, reported as such) and the weights
   are opened to the receivers only. The per-epoch loss that ``mpc.train``
   opens without DP is withheld: it would be an un-noised value of the
   training data.

Clipping in fixed point. CrypTen's ``inv_sqrt`` starts Newton's method from a
guess that fails for large inputs, so the norms are range-reduced first:
u = |g|^2 / C^2; e = the number of k in 1..K with u >= 4^k; z = max(u, 1) /
4^e, which lies in [1, 4) (for u < 4^(K+1)); and min(1, C / |g|) = 2^-e /
sqrt(z). 1 / sqrt(z) on [1, 4) starts from a linear guess (relative error
< 0.09) and takes three Newton steps (relative error ~1e-7, below the 2^-16
grid). The scale 2^-e is applied to the output gradients before the rest of
the factor, so a heavily clipped gradient keeps its relative precision. Each
Newton step lands below the true 1 / sqrt(z) (it never overshoots), and the
clip target is C (1 - CLIP_MARGIN): the fixed-point rounding of the clipped
gradient (a few 2^-16 per element) cannot push its norm above C.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from secure_ml.errors import SpecError
from secure_ml.parties import RECEIVER

if TYPE_CHECKING:
    from secure_ml.session import Session
    from secure_ml.spec import Spec

#: model kinds DP-SGD on shares trains (Linear stacks); others are refused
DP_KINDS = ("logreg", "linreg", "mlp")
#: standardised training features and targets are clamped to +- this on shares
FEATURE_BOUND = 16.0
#: thresholds 4^1 .. 4^K of the range reduction: squared norms up to 4^(K+1) C^2
RANGE_STEPS = 20
#: the clip target is C (1 - CLIP_MARGIN): room for fixed-point rounding
CLIP_MARGIN = 2.0**-6
#: 1 / sqrt(z) on [1, 4]: the linear guess a - b z with the smallest relative error
_GUESS = (1.0675, 0.1525)
_NEWTON_STEPS = 3
#: added to squared norms before their bits are read: far above the rounding of a
#: sum of squares (a few 2^-16), far below anything that changes a clip factor
_NONNEGATIVE = 2.0**-10


@dataclass(frozen=True)
class DPSGDPlan:
    """The public schedule and calibration of one DP-SGD run."""

    rows: int
    steps_per_epoch: int
    epochs: int
    #: Poisson rate of every step, on the 2^-16 grid (what the mask draws)
    sample_rate: float
    noise_multiplier: float
    max_grad_norm: float

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def expected_batch(self) -> float:
        return self.sample_rate * self.rows


def make_plan(spec: Spec, rows: int) -> DPSGDPlan:
    """Opacus's schedule: ceil(rows / batch_size) steps per epoch, each sampling rows at
    rate 1 / steps_per_epoch (``DPDataLoader``), and the sigma that fits the budget."""
    from secure_ml.release.accounting import noise_multiplier_for
    from secure_ml.sharing.sampling import on_grid

    dp, train = spec.dp, spec.train
    per_epoch = math.ceil(rows / train.batch_size)
    rate = on_grid(1 / per_epoch)
    steps = per_epoch * train.epochs
    try:
        sigma = noise_multiplier_for(
            dp.epsilon, dp.delta, sample_rate=rate, steps=steps, accountant=dp.accountant
        )
    except ValueError as error:  # Opacus: "The privacy budget is too low."
        raise SpecError(
            f"[dp] epsilon = {dp.epsilon}: the {dp.accountant!r} accountant cannot certify it "
            f"for {steps} steps at sample rate {rate:.4g} and delta = {dp.delta} ({error}); "
            "raise epsilon or delta (RDP cannot go below about ln(1/delta) / 62), or use "
            "accountant = 'prv'"
        ) from None
    return DPSGDPlan(rows, per_epoch, train.epochs, rate, sigma, dp.max_grad_norm)


# ------------------------------------------------------------------- layers --


def linear_layers(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The Linear layers of a logreg/linreg/MLP model, in forward order, with their names."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]


@dataclass
class SharedLayer:
    weight: Any  # (out, in)
    bias: Any  # (out,)


def share_layers(crypten: Any, model: nn.Module) -> list[SharedLayer]:
    """The model's public initial weights as shared tensors (party 0 shares them)."""
    return [
        SharedLayer(crypten.cryptensor(m.weight.detach(), src=0),
                    crypten.cryptensor(m.bias.detach(), src=0))
        for _, m in linear_layers(model)
    ]  # fmt: skip


def forward(layers: Sequence[SharedLayer], x: Any) -> tuple[Any, list[Any], list[Any]]:
    """The output, every layer's input, and every hidden layer's ReLU derivative."""
    inputs, slopes = [], []
    for i, layer in enumerate(layers):
        inputs.append(x)
        z = x.matmul(layer.weight.t()) + layer.bias
        if i == len(layers) - 1:
            return z, inputs, slopes
        slope = z > 0
        slopes.append(slope)
        x = z * slope
    raise ValueError("a model needs at least one layer")


def example_gradient(out: Any, y: Any, task: str) -> Any:
    """d(loss of one example)/d(its output), per row: the mean is taken after clipping."""
    if task == "binary":
        return out.sigmoid() - y
    if task == "multiclass":
        return out.softmax(dim=1) - y
    return (out - y) * (2.0 / out.shape[1])


def backward(layers: Sequence[SharedLayer], top: Any, slopes: Sequence[Any]) -> list[Any]:
    """Per-example output gradients of every layer, first layer first."""
    deltas = [top]
    for layer, slope in zip(reversed(layers[1:]), reversed(slopes), strict=True):
        deltas.append(deltas[-1].matmul(layer.weight) * slope)
    return deltas[::-1]


def squared_norms(crypten: Any, deltas: Sequence[Any], inputs: Sequence[Any], first: Any) -> Any:
    """|g_i|^2 = sum over layers of |delta_i|^2 (|a_i|^2 + 1), per row (ghost norms).

    ``first``: the rows' |x_i|^2, computed once (the features do not change).
    One multiplication round squares every delta and every hidden input.
    """
    parts = [*deltas, *inputs[1:]]
    squares = crypten.cat(parts, dim=1).square()
    sums = [block.sum(1) for block in split_columns(squares, parts)]
    delta_sums, input_sums = sums[: len(deltas)], [first, *sums[len(deltas) :]]
    total = None
    for d, a in zip(delta_sums, input_sums, strict=True):
        term = d * (a + 1)
        total = term if total is None else total + term
    return total


def split_columns(joined: Any, parts: Sequence[Any]) -> list[Any]:
    """``joined`` (the ``parts`` side by side) cut back into blocks of their widths."""
    blocks, start = [], 0
    for part in parts:
        width = int(part.shape[1])
        blocks.append(joined[:, start : start + width])
        start += width
    return blocks


# ----------------------------------------------------------------- clipping --


def clip_scales(crypten: Any, u: Any) -> tuple[Any, Any]:
    """For u = |g|^2 / C^2 per row: (w, r) with min(1, 1 / sqrt(u)) = r * w / 2^K.

    ``w`` = 2^(K-e), an integer at CrypTen scale 1 (exact), and ``r`` = 1 /
    sqrt(z) in (0.5, 1] (see the module docstring). Keeping 2^-e as an exact
    integer lets the caller apply it to the gradients before anything small
    is formed.
    """
    from secure_ml.sharing.bits import at_least_powers_of_two

    # [u >= 4^k], k = 0..K, from one conversion to bits. The tiny offset keeps the
    # operand >= 0 when rounding left a zero norm a grid unit below zero.
    above = at_least_powers_of_two(u + _NONNEGATIVE, [2 * k for k in range(RANGE_STEPS + 1)])
    at_least_one, bits = above[:, 0], above[:, 1:]
    z = (u - 1) * at_least_one + 1  # max(u, 1)
    e_onehot = onehot_exponent(crypten, bits)
    # 4^(K-e) and 2^(K-e): integer weights of the one-hot code, exact at scale 1
    four = torch.tensor([4 ** (RANGE_STEPS - k) for k in range(RANGE_STEPS + 1)])
    two = torch.tensor([2 ** (RANGE_STEPS - k) for k in range(RANGE_STEPS + 1)])
    z_reduced = (z * (e_onehot * four).sum(-1)).div(4**RANGE_STEPS)
    w = (e_onehot * two).sum(-1)
    return w, inv_sqrt_1_to_4(z_reduced)


def onehot_exponent(crypten: Any, bits: Any) -> Any:
    """From the thermometer code b_k = [u >= 4^k] (k = 1..K), the one-hot code of e.

    o_0 = 1 - b_1, o_k = b_k - b_(k+1), o_K = b_K: local on shares.
    """
    head = 1 - bits[:, :1]
    middle = bits[:, :-1] - bits[:, 1:]
    return crypten.cat([head, middle, bits[:, -1:]], dim=1)


def inv_sqrt_1_to_4(z: Any) -> Any:
    """1 / sqrt(z) for z in [1, 4): linear guess, then Newton (never above the true value)."""
    a, b = _GUESS
    y = z * (-b) + a
    for _ in range(_NEWTON_STEPS):
        y = y * (3 - z * y.square()) / 2
    return y


def clipped_deltas(crypten: Any, deltas: Sequence[Any], u: Any, mask: Any) -> list[Any]:
    """Every layer's per-example output gradients, times mask_i * min(1, 1 / sqrt(u_i))."""
    w, r = clip_scales(crypten, u)
    joined = crypten.cat(list(deltas), dim=1)
    scaled = (joined * w.unsqueeze(1)).div(2**RANGE_STEPS)  # delta 2^-e: no precision lost
    return split_columns(scaled * (r * mask).unsqueeze(1), deltas)


@dataclass
class RowFacts:
    """What clipping needs of the fixed training rows, computed once before training."""

    #: every row's |x_i|^2
    squared: Any
    #: the clip target C (1 - CLIP_MARGIN)
    target: float
    #: one Linear layer with one output: target / sqrt(|x_i|^2 + 1) per row, else None
    bounds: Any = None


def row_facts(crypten: Any, layers: Sequence[SharedLayer], x: Any, target: float) -> RowFacts:
    """|x_i|^2, and for single-output linear models each row's bound on its output gradient.

    With one Linear layer and one output, |g_i| = |delta_i| sqrt(|x_i|^2 + 1)
    and only the scalar delta_i changes from step to step: clipping g_i to
    the target is clamping delta_i to +-target / sqrt(|x_i|^2 + 1). The
    bound is computed once, with the same range reduction as ``clip_scales``
    (|x_i|^2 + 1 >= 1, so the factor is 2^-e / sqrt(z) exactly).
    """
    squared = x.square().sum(1)
    if len(layers) != 1 or int(layers[0].weight.shape[0]) != 1:
        return RowFacts(squared, target)
    w, r = clip_scales(crypten, squared + 1)
    bounds = ((r * target) * w).div(2**RANGE_STEPS)
    return RowFacts(squared, target, bounds)


def clip_per_example(
    crypten: Any, deltas: Sequence[Any], inputs: Sequence[Any], facts: RowFacts, mask: Any
) -> list[Any]:
    """The masked, clipped per-example output gradients of every layer."""
    if facts.bounds is not None:  # one output: clamp it to the row's bound (two relus)
        delta, bound = deltas[0], facts.bounds.unsqueeze(1)
        both = crypten.stack([delta - bound, -delta - bound]).relu()
        return [(delta - both[0] + both[1]) * mask.unsqueeze(1)]
    norms = squared_norms(crypten, deltas, inputs, facts.squared)
    return clipped_deltas(crypten, deltas, norms * (1 / facts.target**2), mask)


def gradient_sum(crypten: Any, clipped: Sequence[Any], inputs: Sequence[Any]) -> Any:
    """The sum over rows of the clipped per-example gradients, flattened: [W_1, b_1, W_2, ...]."""
    parts = []
    for delta, a in zip(clipped, inputs, strict=True):
        parts += [delta.t().matmul(a).flatten(), delta.sum(0)]
    return crypten.cat(parts)


# --------------------------------------------------------------------- run --


@dataclass
class DPTrainer:
    """DP-SGD on the shared rows of ``mpc.train``'s state (stages 2-4 of the docstring)."""

    session: Session
    plan: DPSGDPlan
    task: str
    layers: list[SharedLayer]
    mechanism: Any
    release: Any

    def step(self, x: Any, y: Any, facts: RowFacts, mask: Any, velocity: Any) -> Any:
        out, inputs, slopes = forward(self.layers, x)
        deltas = backward(self.layers, example_gradient(out, y, self.task), slopes)
        crypten = self.session.crypten
        clipped = clip_per_example(crypten, deltas, inputs, facts, mask)
        total = gradient_sum(crypten, clipped, inputs)
        noisy = self.mechanism.perturb(self.release, total)
        return self.update(noisy * (1 / self.plan.expected_batch), velocity)

    def update(self, gradient: Any, velocity: Any) -> Any:
        """SGD on shares; with momentum, ``velocity`` (shared, zero at first) is returned."""
        spec = self.session.spec
        lr, momentum = spec.train.lr, spec.train.momentum
        if velocity is not None:
            velocity = velocity * momentum + gradient
            gradient = velocity
        start = 0
        for layer in self.layers:
            for name in ("weight", "bias"):
                param = getattr(layer, name)
                size = param.nelement()
                change = gradient[start : start + size].reshape(param.shape)
                setattr(layer, name, param - change * lr)
                start += size
        return velocity


def bound_inputs(state: Any) -> None:
    """Stage 2: clamp the training features (and regression targets) on shares."""
    from secure_ml.protocols.stats import clamp

    def bounded(x: Any) -> Any:
        low, high = torch.tensor(-FEATURE_BOUND), torch.tensor(FEATURE_BOUND)
        return clamp(x, low, high)

    state.x_train = bounded(state.x_train.flatten(1))
    if state.task == "regression":
        state.y_train = bounded(state.y_train)


def train_dp(session: Session, state: Any) -> dict[str, Any]:
    """Stages 1-4: charge, bound, then T noisy steps; returns the privacy block.

    Starts from ``state.torch_model``'s public initial weights and leaves the
    trained layers, still shared, in ``state.dp_layers``.
    """
    from secure_ml.release.dp import GaussianOnShares
    from secure_ml.release.mechanism import Release
    from secure_ml.sharing.sampling import poisson_mask

    spec, crypten = session.spec, session.crypten
    rows = int(state.x_train.shape[0])
    plan = make_plan(spec, rows)
    layers = share_layers(crypten, state.torch_model)
    receivers = tuple(p.name for p in session.roster.with_role(RECEIVER))
    n_params = sum(p.nelement() for p in state.torch_model.parameters())
    mechanism = GaussianOnShares(
        sensitivity=plan.max_grad_norm, noise_multiplier=plan.noise_multiplier,
        collusion_threshold=spec.dp.collusion_threshold, sample_rate=plan.sample_rate,
        steps=plan.steps, epsilon=spec.dp.epsilon, delta=spec.dp.delta,
        name="DP-SGD gaussian on shares",
    )  # fmt: skip
    release = Release(name="DP-SGD training", receivers=receivers, shape=(n_params,),
                      session=session)  # fmt: skip
    mechanism.charge(release)  # stage 1: every owner pays for all T steps, or nobody trains
    bound_inputs(state)
    x, y = state.x_train, state.y_train
    facts = row_facts(crypten, layers, x, plan.max_grad_norm * (1 - CLIP_MARGIN))
    trainer = DPTrainer(session, plan, state.task, layers, mechanism, release)
    # with momentum the velocity starts at a shared zero, so every step makes the same calls
    velocity = crypten.cryptensor(torch.zeros(n_params)) if spec.train.momentum else None
    for epoch in range(1, plan.epochs + 1):
        masks = poisson_mask(crypten, plan.sample_rate, (plan.steps_per_epoch, rows))
        for step in range(plan.steps_per_epoch):
            remaining = (plan.epochs - epoch) * plan.steps_per_epoch + plan.steps_per_epoch - step
            with session.step(("dp-sgd", rows), remaining):
                velocity = trainer.step(x, y, facts, masks[step], velocity)
        session.progress(f"epoch {epoch}/{plan.epochs} (DP-SGD)")
    state.dp_layers = layers
    return describe(spec, plan, mechanism, session.world_size)


def coalition_epsilons(plan: DPSGDPlan, dp: Any, t: int, n: int) -> dict[str, float]:
    """For each coalition size k = t+1 .. n-1: the epsilon left against k colluding parties.

    They can subtract their own noise, variance k sigma^2 / (n - t) of the total
    n sigma^2 / (n - t); what the others added, sigma^2 (n - k) / (n - t), is
    still noise, so the guarantee degrades rather than vanishes.
    """
    from secure_ml.release.accounting import GaussianSteps, epsilon_for

    out = {}
    for k in range(t + 1, n):
        sigma = plan.noise_multiplier * math.sqrt((n - k) / (n - t))
        steps = [GaussianSteps(sigma, plan.sample_rate, plan.steps)]
        out[str(k)] = epsilon_for(steps, dp.delta, accountant=dp.accountant)
    return out


def describe(spec: Spec, plan: DPSGDPlan, mechanism: Any, n_parties: int) -> dict[str, Any]:
    """result.json's privacy block for a DP-SGD run."""
    from secure_ml.release.accounting import GaussianSteps, epsilon_for

    dp = spec.dp
    spent = epsilon_for(
        [GaussianSteps(plan.noise_multiplier, plan.sample_rate, plan.steps)], dp.delta,
        accountant=dp.accountant,
    )  # fmt: skip
    details = mechanism.describe(n_parties)
    larger = coalition_epsilons(plan, dp, details["collusion_threshold"], n_parties)
    return {
        "epsilon": spent,
        "epsilon_target": dp.epsilon,
        "epsilon_vs_parties": spent,
        "protect_against": dp.protect_against,
        "delta": dp.delta,
        "accountant": dp.accountant,
        "noise_multiplier": plan.noise_multiplier,
        "noise_multiplier_total": details["total_sigma"] / plan.max_grad_norm,
        "noise_sigma_total": details["total_sigma"],
        "max_grad_norm": plan.max_grad_norm,
        "sample_rate": plan.sample_rate,
        "steps": plan.steps,
        "expected_batch_size": plan.expected_batch,
        "mechanism": "DP-SGD: Gaussian on shares, Poisson sampling on shares",
        "collusion_threshold": details["collusion_threshold"],
        "against": details["against"],
        "epsilon_vs_larger_coalitions": larger,
        "sampling": (
            "Poisson on shares: no party learns which rows a step uses, so the amplification "
            "by subsampling holds against the parties too (epsilon_vs_parties = epsilon)"
        ),
        "neighbouring": "add or remove one training row (the row count is public)",
        "withheld": ["per-epoch training loss"],
        "exact_releases": ["test metric (computed on the test rows, which DP does not cover)"],
        "not_covered": (
            "each owner's standardisation statistics (computed from its own data, as in "
            "plaintext pipelines) shape the model but are not noised"
        ),
    }
