"""Numerics in one place: fractional powers of W Wᵀ and Wᵀ W from one SVD of W.

For W = U S Vᵀ (SVD), [W Wᵀ]^a = U S^{2a} Uᵀ and [Wᵀ W]^b = V S^{2b} Vᵀ. We never call ``eigh`` on
W Wᵀ: forming the Gram matrix squares the condition number, and its tiny eigenvalues come out as
rounding noise of either sign.

Cutoff. A singular value s counts as zero when s <= rcond · s_max, with the default
rcond = max(k, d) · eps(dtype) (numpy's ``matrix_rank`` convention). Why: at depth N the rule takes
s^{2/N}; a singular value that is 1e-16 only by rounding would become (1e-16)^{1/8} = 1e-2 at depth 8.
[·]^0 is the identity (0^0 = 1), not the projector onto the range.
"""

from __future__ import annotations

import numbers

import torch

__all__ = [
    "check_matrix_pair",
    "check_depth",
    "check_nonneg",
    "singular_cutoff",
    "svd_powers",
    "thin_svd",
    "gram_power",
    "vec",
    "unvec",
]


def check_depth(depth) -> int:
    """Return ``depth`` if it is a positive int (bools rejected), else raise."""
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 1:
        raise ValueError(f"depth must be a positive int, got {depth!r}")
    return int(depth)


def check_nonneg(value, name: str) -> float:
    """Return ``value`` as a float if it is a finite real >= 0, else raise naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not (value >= 0) or value != value or value == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_tensor(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {x.dtype}")
    if x.ndim not in (2, 3):
        raise ValueError(
            f"{name} must be 2-D (k, d) or batched 3-D (batch, k, d), got shape {tuple(x.shape)}"
        )
    return x


def check_matrix_pair(W, G, names=("W", "grad")) -> None:
    """Validate a weight/gradient pair: tensors, floating, 2-D or 3-D, same shape, dtype, device."""
    _check_tensor(W, names[0])
    _check_tensor(G, names[1])
    if W.shape != G.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, got {tuple(W.shape)} and {tuple(G.shape)}"
        )
    if W.dtype != G.dtype:
        raise TypeError(f"{names[0]} and {names[1]} must share a dtype, got {W.dtype} and {G.dtype}")
    if W.device != G.device:
        raise ValueError(
            f"{names[0]} and {names[1]} must be on the same device, got {W.device} and {G.device}"
        )


def singular_cutoff(S: torch.Tensor, shape, rcond: float | None = None) -> torch.Tensor:
    """Absolute cutoff per matrix: rcond · s_max, rcond defaulting to max(k, d) · eps. Shape (..., 1)."""
    if rcond is None:
        rcond = max(shape[-2], shape[-1]) * torch.finfo(S.dtype).eps
    return rcond * S.amax(dim=-1, keepdim=True)


def thin_svd(W: torch.Tensor):
    """Thin SVD W = U diag(S) Vh; for a long matrix (max(k, d) >= 2 min(k, d)) via QR first.

    QR of the long side is backward stable (it does not square the condition number, unlike a
    Gram matrix) and leaves an r×r SVD: 2–3× faster than a direct SVD for e.g. 512×3136 on CPU.
    """
    k, d = W.shape[-2], W.shape[-1]
    if d >= 2 * k:  # W = Rᵀ Qᵀ with Wᵀ = Q R; Rᵀ = U S Ṽᵀ ⇒ W = U S (Q Ṽ)ᵀ
        Q, R = torch.linalg.qr(W.transpose(-1, -2))
        U, S, Vh_r = torch.linalg.svd(R.transpose(-1, -2))
        return U, S, Vh_r @ Q.transpose(-1, -2)
    if k >= 2 * d:  # W = Q R; R = Ũ S Vᵀ ⇒ W = (Q Ũ) S Vᵀ
        Q, R = torch.linalg.qr(W)
        U_r, S, Vh = torch.linalg.svd(R)
        return Q @ U_r, S, Vh
    return torch.linalg.svd(W, full_matrices=False)


def svd_powers(W: torch.Tensor, exponents, rcond: float | None = None, full: bool = False):
    """One SVD of W, and S^{2a} for each exponent a, with the cutoff applied and 0^0 = 1.

    Returns ``(U, Vh, [S^{2a} for a in exponents])``. With ``full=False`` the SVD is thin
    (r = min(k, d) singular values); with ``full=True`` U is k×k, Vh is d×d and the list holds
    two vectors per exponent, padded with zeros to length k and d: ``[(sk, sd), ...]``.
    """
    U, S, Vh = thin_svd(W) if not full else torch.linalg.svd(W, full_matrices=True)
    keep = S > singular_cutoff(S, W.shape, rcond)
    S = torch.where(keep, S, torch.zeros_like(S))

    def power(s, a):
        if a == 0:
            return torch.ones_like(s)  # [·]^0 = identity, 0^0 = 1
        return s.pow(2 * a)

    if not full:
        return U, Vh, [power(S, a) for a in exponents]
    k, d = W.shape[-2], W.shape[-1]
    out = []
    for a in exponents:
        sk = torch.zeros(W.shape[:-2] + (k,), dtype=W.dtype, device=W.device)
        sd = torch.zeros(W.shape[:-2] + (d,), dtype=W.dtype, device=W.device)
        r = S.shape[-1]
        if a == 0:
            sk.fill_(1.0)
            sd.fill_(1.0)
        sk[..., :r] = power(S, a)
        sd[..., :r] = power(S, a)
        out.append((sk, sd))
    return U, Vh, out


def gram_power(W: torch.Tensor, a: float, side: str = "left", rcond: float | None = None) -> torch.Tensor:
    """[W Wᵀ]^a (side="left", k×k) or [Wᵀ W]^a (side="right", d×d), from one full SVD of W."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    U, Vh, [(sk, sd)] = svd_powers(W, [a], rcond=rcond, full=True)
    if side == "left":
        return (U * sk.unsqueeze(-2)) @ U.transpose(-1, -2)
    V = Vh.transpose(-1, -2)
    return (V * sd.unsqueeze(-2)) @ Vh


def vec(M: torch.Tensor) -> torch.Tensor:
    """Column-major vectorisation (Claim 1): stacks the columns of M (..., k, d) into (..., k·d)."""
    return M.transpose(-1, -2).reshape(M.shape[:-2] + (-1,))


def unvec(v: torch.Tensor, k: int, d: int) -> torch.Tensor:
    """Inverse of :func:`vec`: (..., k·d) → (..., k, d)."""
    return v.reshape(v.shape[:-1] + (d, k)).transpose(-1, -2)
