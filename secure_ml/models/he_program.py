"""A model as CKKS can evaluate it: affine maps, squares and one odd cubic.

CKKS adds and multiplies; it cannot compare. A network is therefore written
as a chain of

- ``Affine`` maps: every run of linear layers between two activations
  (Linear, Conv2d, AvgPool2d, Flatten, BatchNorm in eval mode, Dropout,
  Identity) collapses into one weight matrix and one bias. The matrix is read
  off the layers themselves, by running the run on the basis vectors: for a
  convolution this is exactly its im2col matrix, with the zeros where a
  kernel does not reach;
- ``Square`` activations (``secure_ml.models.Square``, which ``mpc.train``
  trains too);
- a final ``OddCubic``, the sigmoid as c0 + c1 t + c3 t^3 of t = logit / L,
  least-squares fitted over the whole range [-L, L] the logit can reach
  (``fit_sigmoid``), when the server is to return probabilities instead of a
  logit. The 1/L is folded into the last affine map, so the coefficients stay
  of order one and encode precisely whatever L is.

``compile_model`` checks the chain against the model on random inputs and
refuses what it cannot express (ReLU, max pooling, ...), naming the layer.
``worst_case_bounds`` bounds every intermediate value by interval arithmetic
from the inputs' bound: the CKKS parameters are sized from it
(``secure_ml.sharing.ckks_params``) and the cubic is fitted over it, so no
value can leave the range where the encoding or the approximation holds.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from secure_ml.errors import SpecError
from secure_ml.models import Square as SquareLayer

_AFFINE_LAYERS = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.AvgPool1d, nn.AvgPool2d, nn.Flatten, nn.Identity,
    nn.Dropout, nn.BatchNorm1d, nn.BatchNorm2d,
)  # fmt: skip
#: sample points of the sigmoid fit and of its error
_FIT_POINTS = 4001


@dataclass(frozen=True)
class Affine:
    """y = weight @ x + bias, for one sample's flattened values."""

    weight: torch.Tensor  # (out, in), float64
    bias: torch.Tensor  # (out,), float64


@dataclass(frozen=True)
class Square:
    """y = x * x, elementwise."""


@dataclass(frozen=True)
class OddCubic:
    """y = c0 + c1 t + c3 t^3, elementwise, of t = logit / limit (t in [-1, 1]).

    The sigmoid on [-limit, limit]; ``max_error`` is its largest error there.
    """

    c0: float
    c1: float
    c3: float
    limit: float
    max_error: float


Step = Affine | Square | OddCubic


def step_depth(step: Step) -> int:
    """Rescales a step uses: one per multiplication level (c3 x times x^2: two)."""
    return 2 if isinstance(step, OddCubic) else 1


@dataclass(frozen=True)
class HEProgram:
    """The chain of steps for one flattened sample of ``in_features`` values."""

    steps: tuple[Step, ...]
    in_features: int
    out_features: int

    @property
    def depth(self) -> int:
        return sum(step_depth(s) for s in self.steps)

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        """The chain in float64 plaintext, on rows of flattened samples."""
        y = x.double().flatten(1)
        for step in self.steps:
            if isinstance(step, Affine):
                y = y @ step.weight.T + step.bias
            elif isinstance(step, Square):
                y = y * y
            else:
                y = step.c0 + step.c1 * y + step.c3 * y**3
        return y

    def worst_case_bounds(self, input_bound: float) -> list[float]:
        """The largest |value| after each multiplication level (index 0: the inputs)."""
        bound = torch.full((self.in_features,), float(input_bound), dtype=torch.float64)
        levels = [float(input_bound)]
        for step in self.steps:
            if isinstance(step, Affine):
                bound = step.weight.abs() @ bound + step.bias.abs()
                levels.append(float(bound.max()))
            elif isinstance(step, Square):
                bound = bound * bound
                levels.append(float(bound.max()))
            else:
                largest = float(bound.max())
                levels.append(max(largest**2, abs(step.c3) * largest, abs(step.c1) * largest))
                bound = abs(step.c0) + abs(step.c1) * bound + abs(step.c3) * bound**3
                levels.append(float(bound.max()))
        return levels


def fit_sigmoid(limit: float) -> OddCubic:
    """Least-squares c0 + c1 t + c3 t^3 for sigmoid(limit t), t in [-1, 1]; and its max error."""
    t = torch.linspace(-1.0, 1.0, _FIT_POINTS, dtype=torch.float64)
    exact = torch.sigmoid(limit * t)
    basis = torch.stack([t, t**3], dim=1)  # sigmoid - 1/2 is odd: c0 = 1/2, odd powers only
    c1, c3 = torch.linalg.lstsq(basis, (exact - 0.5).unsqueeze(1)).solution.squeeze(1).tolist()
    error = float((0.5 + c1 * t + c3 * t**3 - exact).abs().max())
    return OddCubic(c0=0.5, c1=c1, c3=c3, limit=float(limit), max_error=error)


def compile_model(
    model: nn.Module,
    sample_shape: Sequence[int],
    *,
    probabilities: bool = False,
    input_bound: float = 4.0,
) -> HEProgram:
    """The model as affine maps and squares (plus the sigmoid cubic if ``probabilities``).

    Raises ``SpecError`` naming the layer CKKS cannot evaluate, or when the
    chain does not reproduce the model (a model whose forward is not the
    sequence of its layers).
    """
    model = copy.deepcopy(model).double().eval()
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise SpecError(f"the model's {name} holds NaN or infinite values; retrain it")
    shape = tuple(sample_shape)
    steps: list[Step] = []
    pending: list[nn.Module] = []
    for layer in _layers(model):
        if isinstance(layer, _AFFINE_LAYERS):
            pending.append(layer)
        elif isinstance(layer, SquareLayer):
            affine, shape = _affine(pending, shape)
            steps += [affine, Square()]
            pending = []
        else:
            raise SpecError(
                f"layer {type(layer).__name__} cannot be evaluated on CKKS ciphertexts: HE "
                "inference runs linear layers, average pooling and square activations (train "
                "with [model] activation = 'square')"
            )
    affine, shape = _affine(pending, shape)
    steps.append(affine)
    in_features = math.prod(sample_shape)
    program = HEProgram(tuple(steps), in_features, affine.weight.shape[0])
    _check_same(program, model, sample_shape)
    if probabilities:
        if program.out_features != 1:
            raise SpecError("[he] output = 'probabilities' needs a binary model with one logit; "
                            "use output = 'logits' (the client applies softmax)")  # fmt: skip
        limit = program.worst_case_bounds(input_bound)[-1]
        scaled = Affine(affine.weight / limit, affine.bias / limit)  # t = logit / limit
        program = HEProgram((*steps[:-1], scaled, fit_sigmoid(limit)), in_features, 1)
    return program


def _layers(model: nn.Module) -> list[nn.Module]:
    """The leaf layers in registration order (the zoo's models run them in that order)."""
    children = list(model.children())
    if not children:
        return [model]
    return [leaf for child in children for leaf in _layers(child)]


def _affine(layers: list[nn.Module], shape: tuple[int, ...]) -> tuple[Affine, tuple[int, ...]]:
    """The run of affine ``layers`` as one matrix, read off the basis vectors."""
    n_in = math.prod(shape)
    basis = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *shape)
    zero = torch.zeros(1, *shape, dtype=torch.float64)
    with torch.no_grad():
        images, offset = _run(layers, basis), _run(layers, zero)
    weight = (images - offset).reshape(n_in, -1).T.contiguous()
    return Affine(weight, offset.reshape(-1)), tuple(offset.shape[1:])


def _run(layers: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        if isinstance(layer, nn.Linear) and x.dim() > 2:
            x = x.flatten(1)  # the zoo's models flatten before a linear head
        x = layer(x)
    return x


def _check_same(program: HEProgram, model: nn.Module, sample_shape: Sequence[int]) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, *sample_shape, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        expected = model(x).reshape(8, -1)
    got = program.evaluate(x)
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-6, atol=1e-6):
        raise SpecError(
            f"could not express {type(model).__name__} as a chain of affine maps and squares "
            "(its forward is not the sequence of its layers); HE inference runs the model "
            "zoo's logreg, mlp and cnn, or an nn.Sequential"
        )
