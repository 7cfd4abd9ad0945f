"""Depth-N linear networks without biases (Eq 2): x ↦ W_N ⋯ W_1 x."""

from __future__ import annotations

import numbers

import torch
from torch import nn

from .linalg import check_depth, check_nonneg
from .theory.balanced import _check_widths, balanced_factors

__all__ = ["LinearNetwork", "chain_product"]

INITS = ("normal", "identity", "balanced")


def chain_product(factors) -> torch.Tensor:
    """W_N ⋯ W_1 for factors given as W_1..W_N (batched factors (B, n_j, n_{j−1}) work too).

    Multiplies from the output side when that side is narrower (k = 1: a row vector times each
    factor), which is the cheap association for the paper's single-output networks.
    """
    factors = list(factors)
    if factors[-1].shape[-2] <= factors[0].shape[-1]:
        out = factors[-1]
        for W in reversed(factors[:-1]):
            out = out @ W
    else:
        out = factors[0]
        for W in factors[1:]:
            out = W @ out
    return out


class LinearNetwork(nn.Module):
    """Depth-N linear network with factors W_1 (n_1 × in) … W_N (out × n_{N−1}), no biases.

    Args:
        in_features, out_features: d and k.
        depth: N >= 1 (N = 1 is the linear model).
        hidden: one width for all hidden layers or a list of depth−1 widths. Default
            min(in_features, out_features): the narrowest width that loses no expressiveness
            (1 for the paper's single-output regressions, as in its Figures 3–5).
        init: "normal" — i.i.d. N(0, std²) (App C.1, std = 0.01);
              "identity" — normal plus 1 on the diagonal of every factor, square or not (Fig 5 left);
              "balanced" — the balanced factorization (Eq 7 exactly) of the end-to-end matrix that
              the "normal" draw gives, so the scale matches the paper's near-zero init.
        std: standard deviation of the normal draw.
        generator: torch.Generator for reproducible draws.
    """

    def __init__(self, in_features: int, out_features: int, depth: int, hidden=None, init: str = "normal",
                 std: float = 0.01, generator: torch.Generator | None = None, dtype=None, device=None):
        super().__init__()
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        N = check_depth(depth)
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        std = check_nonneg(std, "std")
        self.in_features, self.out_features, self.depth, self.init = int(in_features), int(out_features), N, init
        widths = _check_widths(hidden, N, default=min(in_features, out_features))
        dims = [self.in_features, *widths, self.out_features]
        self.widths = widths
        kw = dict(dtype=dtype or torch.get_default_dtype())
        Ws = [torch.randn(dims[j + 1], dims[j], generator=generator, **kw) * std for j in range(N)]
        if init == "identity":
            Ws = [W + torch.eye(*W.shape, **kw) for W in Ws]
        elif init == "balanced":
            Ws = balanced_factors(chain_product(Ws), N, widths, generator=generator)
        self.factors = nn.ParameterList([nn.Parameter(W.to(device)) for W in Ws])

    def end_to_end(self) -> torch.Tensor:
        """W_e = W_N ⋯ W_1, (out_features, in_features) (Eq 5)."""
        return chain_product(self.factors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x @ W_eᵀ for x of shape (batch, in_features)."""
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"expected input with last dimension {self.in_features}, got shape {tuple(x.shape)}")
        return x @ self.end_to_end().transpose(-1, -2)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, depth={self.depth}, "
                f"widths={self.widths}, init={self.init!r}")
