"""Balanced factorizations: :func:`balanced_factors` builds N factors of W_e that satisfy Eq 7
(App A.1, Eq 19–20 read backwards, so that Eq 21–24 hold), and :func:`balancedness` measures how far a
chain of factors is from Eq 7."""

from __future__ import annotations

import numbers

import torch

from ..linalg import check_depth, singular_cutoff, thin_svd


def _orthonormal(n: int, r: int, dtype, device, generator) -> torch.Tensor:
    """An n×r matrix with orthonormal columns (QR of a Gaussian; n >= r)."""
    if r == 0:
        return torch.zeros(n, 0, dtype=dtype, device=device)
    g = torch.randn(n, r, dtype=torch.float64, generator=generator)
    q, rr = torch.linalg.qr(g)
    q = q * torch.sign(torch.diagonal(rr)).where(torch.diagonal(rr) != 0, torch.ones(r, dtype=torch.float64))
    return q.to(dtype=dtype, device=device)


def balanced_factors(W_e: torch.Tensor, depth: int, widths=None, generator: torch.Generator | None = None):
    """N factors W_1..W_N with W_N ⋯ W_1 = W_e and W_{j+1}ᵀ W_{j+1} = W_j W_jᵀ (Eq 7).

    Construction (App A.1, Eq 19–20 read backwards): W_e = U S Vᵀ with rank r; with Q_j (n_j × r)
    orthonormal columns drawn at random,
        W_1 = Q_1 S^{1/N} Vᵀ,   W_j = Q_j S^{1/N} Q_{j−1}ᵀ,   W_N = U S^{1/N} Q_{N−1}ᵀ,
    so every factor has singular values S^{1/N} and consecutive Gram matrices coincide.

    Args:
        W_e: (k, d) float tensor.
        depth: N >= 1.
        widths: hidden widths n_1..n_{N−1} (an int for all, or a sequence of N−1 ints);
            default min(k, d). Each must be >= rank(W_e).
        generator: torch.Generator for the random Q_j (CPU).
    Returns a list of N tensors (W_1 first), dtype and device of W_e.
    """
    if not isinstance(W_e, torch.Tensor) or not W_e.is_floating_point() or W_e.ndim != 2:
        raise ValueError(
            f"W_e must be a 2-D floating torch.Tensor, got "
            f"{type(W_e).__name__ if not isinstance(W_e, torch.Tensor) else (W_e.dtype, tuple(W_e.shape))}"
        )
    N = check_depth(depth)
    k, d = W_e.shape
    widths = _check_widths(widths, N, default=min(k, d))
    if N == 1:
        return [W_e.clone()]
    U, S, Vh = thin_svd(W_e)
    r = int((S > singular_cutoff(S, W_e.shape)).sum())
    small = [n for n in widths if n < r]
    if small:
        raise ValueError(f"widths {widths} cannot hold the rank {r} of W_e: every width must be >= {r}")
    root = S[:r].pow(1.0 / N)  # S^{1/N}
    Q = [_orthonormal(n, r, W_e.dtype, W_e.device, generator) for n in widths]
    factors = [(Q[0] * root) @ Vh[:r]]
    for j in range(1, N - 1):
        factors.append((Q[j] * root) @ Q[j - 1].T)
    factors.append((U[:, :r] * root) @ Q[-1].T)
    return factors


def _check_widths(widths, N: int, default: int) -> list[int]:
    if widths is None:
        return [default] * (N - 1)
    if isinstance(widths, numbers.Integral) and not isinstance(widths, bool):
        widths = [int(widths)] * (N - 1)
    try:
        widths = list(widths)
    except TypeError:
        raise TypeError(f"widths must be an int or a sequence of {N - 1} ints, got {widths!r}") from None
    if len(widths) != N - 1 or any(isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1 for n in widths):
        raise ValueError(f"widths must be {N - 1} positive ints for depth {N}, got {widths!r}")
    return [int(n) for n in widths]


def balancedness(factors) -> float:
    """Largest relative violation of Eq 7: max_j ‖W_{j+1}ᵀW_{j+1} − W_jW_jᵀ‖_F / (the larger Gram norm).

    The normaliser is max(‖W_{j+1}ᵀW_{j+1}‖_F, ‖W_jW_jᵀ‖_F); 0/0 counts as 0. One factor: 0.
    """
    factors = [W.detach() if isinstance(W, torch.Tensor) else W for W in factors]
    if not factors or any(not isinstance(W, torch.Tensor) or W.ndim != 2 for W in factors):
        raise ValueError("factors must be a non-empty sequence of 2-D tensors")
    worst = 0.0
    for j in range(len(factors) - 1):
        A, B = factors[j], factors[j + 1]
        if B.shape[1] != A.shape[0]:
            raise ValueError(f"factors {j + 1} and {j + 2} do not chain: shapes {tuple(A.shape)} and {tuple(B.shape)}")
        left = B.T @ B
        right = A @ A.T
        scale = max(float(torch.linalg.matrix_norm(left)), float(torch.linalg.matrix_norm(right)))
        if scale > 0:
            worst = max(worst, float(torch.linalg.matrix_norm(left - right)) / scale)
    return worst
