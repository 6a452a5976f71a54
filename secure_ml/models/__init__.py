"""Model zoo: plaintext PyTorch classes that secure protocols train and release.

Every model here is an ordinary ``nn.Module``: a released ``state_dict`` loads
into the same class in plaintext. ``build_model`` makes one from a spec's
``[model]`` section and the task's shape. Initial weights come from the spec's
seed, so every party builds the same (public) starting point.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from secure_ml.errors import SpecError
from secure_ml.spec import ACTIVATIONS

TRAINABLE_KINDS = ("logreg", "linreg", "mlp", "cnn")
BUILT_IN_KINDS = (*TRAINABLE_KINDS, "torchvision:resnet18")


class _LinearModel(nn.Module):
    """One linear layer, ``x @ w.T + b``; its state_dict keys are ``linear.*``."""

    def __init__(self, n_features: int, n_outputs: int = 1) -> None:
        super().__init__()
        self.linear = nn.Linear(n_features, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class LogisticRegression(_LinearModel):
    """Logistic regression; forward returns logits (one per class, or one if binary)."""


class LinearRegression(_LinearModel):
    """Linear regression: forward returns the predicted targets."""


class Square(nn.Module):
    """``x * x``, elementwise: the HE-friendly activation (a CKKS ciphertext can
    be squared, not compared with zero).

    Written ``x.pow(2)`` (the same values as ``x * x``) for the ONNX export: it
    becomes ``Pow(x, 2)`` with a public exponent, which CrypTen computes as one
    square on shares. ``x * x`` exports as ``Mul(x, x)``, a node with the same
    value twice as input, which CrypTen 0.4.1's ``nn.Graph`` never runs
    ("nn.Graph.forward() failed. Is graph unconnected?"). No parameters: in an
    ``nn.Sequential`` it takes a ReLU's place without moving any state_dict key.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.pow(2)


def activation_layer(activation: str) -> nn.Module:
    """A fresh activation module for ``activation`` (one of ``ACTIVATIONS``)."""
    if activation == "relu":
        return nn.ReLU()
    if activation == "square":
        return Square()
    raise _unknown_activation(activation)


def _unknown_activation(activation: str) -> SpecError:
    return SpecError(
        f"[model] activation = {activation!r}: must be one of {', '.join(ACTIVATIONS)}"
    )


class MLP(nn.Module):
    """Fully connected network with an activation (ReLU by default) between layers."""

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        hidden: Sequence[int] = (64,),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        activation_layer(activation)  # refuse an unknown one before building anything
        sizes = [n_features, *hidden]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b), activation_layer(activation)]
        layers.append(nn.Linear(sizes[-1], n_outputs))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(1))


class SmallCNN(nn.Module):
    """Two convolutions with average pooling (cheap in MPC), then a linear head;
    ``activation`` (ReLU by default) after each convolution."""

    def __init__(
        self, in_shape: Sequence[int], n_outputs: int, channels: int = 8, activation: str = "relu"
    ) -> None:
        super().__init__()
        activation_layer(activation)  # refuse an unknown one before building anything
        c, h, w = in_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, channels, kernel_size=3, padding=1),
            activation_layer(activation),
            nn.AvgPool2d(2),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
            activation_layer(activation),
            nn.AvgPool2d(2),
        )
        self.head = nn.Linear(channels * (h // 4) * (w // 4), n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


@dataclass(frozen=True)
class TaskShape:
    """What a model must fit: one sample's shape and the number of outputs."""

    sample_shape: tuple[int, ...]
    n_outputs: int


def build_model(
    kind: str,
    shape: TaskShape,
    *,
    seed: int,
    hidden: Sequence[int] = (64,),
    channels: int = 8,
    activation: str = "relu",
) -> nn.Module:
    """A fresh model of ``kind`` with seeded (public) initial weights.

    ``activation`` is the hidden layers' (mlp, cnn); logreg and linreg have
    none and ignore it; torchvision:resnet18 has ReLUs only.
    """
    if activation not in ACTIVATIONS:
        raise _unknown_activation(activation)
    torch.manual_seed(seed)
    n_features = int(torch.tensor(shape.sample_shape).prod())
    if kind == "logreg":
        return LogisticRegression(n_features, shape.n_outputs)
    if kind == "linreg":
        return LinearRegression(n_features, shape.n_outputs)
    if kind == "mlp":
        return MLP(n_features, shape.n_outputs, hidden, activation)
    if kind == "cnn":
        if len(shape.sample_shape) != 3:
            raise SpecError(f"[model] kind = 'cnn' needs image data (c, h, w), got {shape}")
        return SmallCNN(shape.sample_shape, shape.n_outputs, channels, activation)
    if kind == "torchvision:resnet18":
        if activation != "relu":
            raise SpecError(
                f"[model] activation = {activation!r}: kind = 'torchvision:resnet18' has "
                "ReLU activations only; remove activation or set it to 'relu'"
            )
        import torchvision

        return torchvision.models.resnet18(num_classes=shape.n_outputs)
    raise SpecError(f"[model] kind = {kind!r}: must be one of {', '.join(BUILT_IN_KINDS)}")
