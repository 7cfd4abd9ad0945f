"""The ℓp regression loss of the paper's experiments (Section 8)."""

from __future__ import annotations

import numbers

import torch

__all__ = ["lp_loss", "check_p"]


def check_p(p) -> float:
    """Return p as a float if it is a real number >= 1, else raise naming it."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"p must be a real number >= 1, got {p!r}")
    if not p >= 1 or p == float("inf"):
        raise ValueError(f"p must be a finite number >= 1, got {p!r}")
    return float(p)


def lp_loss(pred: torch.Tensor, target: torch.Tensor, p: float) -> torch.Tensor:
    """L¹(W) = mean_i (1/p) ‖pred_i − target_i‖_p^p.

    ``pred`` and ``target`` have the same shape: (m,) for scalar outputs (each entry an example) or
    (..., m, k) with the last axis the output vector (summed) and all leading axes averaged.
    Differentiable; p ≥ 1 (p = 1 is the mean absolute error).
    """
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(
            f"pred and target must be torch.Tensors, got {type(pred).__name__} and {type(target).__name__}"
        )
    p = check_p(p)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.ndim == 0:
        raise ValueError("pred must have at least one dimension (examples), got a 0-d tensor")
    r = (pred - target).abs()
    per_example = r.pow(p) / p
    if pred.ndim >= 2:
        per_example = per_example.sum(dim=-1)
    return per_example.mean()
