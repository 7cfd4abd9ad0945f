"""The end-to-end update rule of a depth-N linear network (Eq 10, Claim 1, Claim 2).

Notation (paper): W = W_e is the end-to-end matrix, shape (k, d); grad = ∇L¹(W_e); N = depth.

    precondition(W, G, N) = Σ_{j=1..N} [W Wᵀ]^{(j−1)/N} · G · [Wᵀ W]^{(N−j)/N}          (Eq 10)

Fast path. With one thin SVD W = U S Vᵀ (U: k×r, V: d×r, r = min(k, d)) and A = Uᵀ G V:

    precondition = U (M ∘ A) Vᵀ                                 (range × range part)
                 + U diag(t) Uᵀ G (I − V Vᵀ)     (only if d > r)  (j = N term, right complement)
                 + (I − U Uᵀ) G V diag(t) Vᵀ     (only if k > r)  (j = 1 term, left complement)

with M_{rr'} = Σ_j s_r^{2(j−1)/N} s_{r'}^{2(N−j)/N} (Claim 1's eigenvalues) and t = s^{2(N−1)/N}.
Only the thin side is decomposed: for k ≪ d the work is O(k² d). For k = 1 (or d = 1) Claim 2's
closed form is used instead: O(d), no SVD.
"""

from __future__ import annotations

import torch

from .linalg import check_depth, check_matrix_pair, check_nonneg, svd_powers

__all__ = ["precondition", "end_to_end_step", "preconditioner_matrix", "single_output_precondition"]


def single_output_precondition(W: torch.Tensor, G: torch.Tensor, depth: int) -> torch.Tensor:
    """Claim 2 (Eq 12): ‖W‖^{2−2/N} (G + (N−1) Pr_W(G)), Pr_W(G) = ⟨G, W⟩ W / ‖W‖² (0 at W = 0).

    W, G: (..., 1, d) or (..., k, 1) — any matrix with a single row or column. No validation.
    """
    N = depth
    if N == 1:
        return G.clone()
    sq = W.square().sum(dim=(-2, -1), keepdim=True)  # ‖W‖², (..., 1, 1)
    inner = (W * G).sum(dim=(-2, -1), keepdim=True)  # ⟨G, W⟩
    nonzero = sq > 0
    safe = torch.where(nonzero, sq, torch.ones_like(sq))
    proj = torch.where(nonzero, inner / safe, torch.zeros_like(sq)) * W  # Pr_W(G)
    scale = sq.pow(1.0 - 1.0 / N)  # ‖W‖^{2−2/N}; 0 at W = 0 since N ≥ 2
    return scale * (G + (N - 1) * proj)


def _svd_precondition(W: torch.Tensor, G: torch.Tensor, N: int, rcond: float | None) -> torch.Tensor:
    a = [(j - 1) / N for j in range(1, N + 1)]  # exponents of [W Wᵀ]
    U, Vh, pw = svd_powers(W, sorted(set(a)), rcond=rcond)
    table = dict(zip(sorted(set(a)), pw))
    # M_{rr'} = Σ_j s_r^{2a_j} s_{r'}^{2(1 − 1/N − a_j)}; b_j = (N−j)/N = a_{N+1−j}.
    M = sum(table[aj].unsqueeze(-1) * table[a[N - 1 - i]].unsqueeze(-2) for i, aj in enumerate(a))
    V = Vh.transpose(-1, -2)
    Ut = U.transpose(-1, -2)
    GV = G @ V  # (k, r)
    A = Ut @ GV  # (r, r)
    out = U @ (M * A) @ Vh
    t = table[a[-1]]  # s^{2(N−1)/N}
    k, d = W.shape[-2], W.shape[-1]
    r = min(k, d)
    if d > r:  # right complement: U diag(t) Uᵀ G (I − V Vᵀ)
        UtG = Ut @ G
        out = out + (U * t.unsqueeze(-2)) @ (UtG - A @ Vh)
    if k > r:  # left complement: (I − U Uᵀ) G V diag(t) Vᵀ
        out = out + ((GV - U @ A) * t.unsqueeze(-2)) @ Vh
    return out


def precondition(W: torch.Tensor, grad: torch.Tensor, depth: int, *, rcond: float | None = None) -> torch.Tensor:
    """Eq 10's preconditioned gradient Σ_{j=1..N} [W Wᵀ]^{(j−1)/N} · grad · [Wᵀ W]^{(N−j)/N}.

    Args:
        W: end-to-end matrix, (k, d) or batched (B, k, d); any float dtype and device.
        grad: ∇L¹(W), same shape, dtype and device.
        depth: N ≥ 1. N = 1 returns a copy of ``grad`` (plain gradient descent).
        rcond: relative singular-value cutoff (default max(k, d)·eps, see :mod:`overparam.linalg`).

    Single-row or single-column W uses Claim 2's closed form (no SVD); otherwise one thin SVD.
    Inputs are not modified.
    """
    check_matrix_pair(W, grad)
    N = check_depth(depth)
    if N == 1:
        return grad.clone()
    if W.shape[-2] == 1 or W.shape[-1] == 1:
        return single_output_precondition(W, grad, N)
    return _svd_precondition(W, grad, N, rcond)


def end_to_end_step(W: torch.Tensor, grad: torch.Tensor, depth: int, lr: float, weight_decay: float = 0.0,
                    *, rcond: float | None = None) -> torch.Tensor:
    """One step of Eq 10: (1 − η λ N) W − η · precondition(W, grad, N). Returns a new tensor."""
    N = check_depth(depth)
    lr = check_nonneg(lr, "lr")
    weight_decay = check_nonneg(weight_decay, "weight_decay")
    step = precondition(W, grad, N, rcond=rcond)
    return (1.0 - lr * weight_decay * N) * W - lr * step


def preconditioner_matrix(W: torch.Tensor, depth: int, *, rcond: float | None = None) -> torch.Tensor:
    """Claim 1's P_W, (k·d)×(k·d), acting on column-major vec(grad) (Eq 11).

    P_W = Σ_j [Wᵀ W]^{(N−j)/N} ⊗ [W Wᵀ]^{(j−1)/N} (Eq 31), built from one full SVD of W.
    Dense and O((kd)²) memory: for analysis and tests, not for training.
    """
    if not isinstance(W, torch.Tensor) or not W.is_floating_point() or W.ndim != 2:
        raise ValueError(
            f"W must be a 2-D floating torch.Tensor, got "
            f"{type(W).__name__ if not isinstance(W, torch.Tensor) else (W.dtype, tuple(W.shape))}"
        )
    N = check_depth(depth)
    exps = sorted({(j - 1) / N for j in range(1, N + 1)} | {(N - j) / N for j in range(1, N + 1)})
    U, Vh, pw = svd_powers(W, exps, rcond=rcond, full=True)
    table = dict(zip(exps, pw))
    V = Vh.transpose(-1, -2)
    P = torch.zeros(W.shape[0] * W.shape[1], W.shape[0] * W.shape[1], dtype=W.dtype, device=W.device)
    for j in range(1, N + 1):
        left = (U * table[(j - 1) / N][0]) @ U.T  # [W Wᵀ]^{(j−1)/N}, k×k
        right = (V * table[(N - j) / N][1]) @ Vh  # [Wᵀ W]^{(N−j)/N}, d×d
        P = P + torch.kron(right, left)
    return P
