"""Model zoo: plaintext PyTorch classes whose state_dicts secure training releases."""

from __future__ import annotations

import torch


class LogisticRegression(torch.nn.Module):
    """Binary logistic regression: ``sigmoid(x @ w.T + b)``; forward returns logits."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(n_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)
