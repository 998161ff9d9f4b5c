"""Turning logits into calibrated probabilities: softmax with a temperature fitted on dev data."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``."""
    z = logits / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The softmax temperature that minimises the negative log-likelihood of ``targets`` (Guo et al. 2017)."""
    if len(targets) == 0:
        return 1.0
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.asarray(logits)).double()
    y = torch.from_numpy(np.asarray(targets)).long()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(min(max(log_t.exp().item(), 0.05), 20.0))
