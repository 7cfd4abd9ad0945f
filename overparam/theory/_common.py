"""What the checks share: :class:`CheckResult` and how a result is judged (:func:`_result`), the
relative error :func:`_rel`, independent numpy oracles (full SVD powers with 0^0 = 1), and the small
regression problems, autograd gradients and factor-wise GD that the checks run on."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import losses

# ----------------------------------------------------------------------------------------------------
# Numeric checks of the appendix (``overparam verify``)
# ----------------------------------------------------------------------------------------------------

_F64 = torch.float64


def _jsonable(x):
    """Details → JSON: numpy/torch scalars and arrays to Python, non-finite floats to strings."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return _jsonable(x.detach().cpu().tolist())
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        x = float(x)
        return x if math.isfinite(x) else str(x)
    return x if x is None or isinstance(x, str) else str(x)


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one numeric check: ``passed`` iff ``error <= tolerance`` and every listed condition holds."""

    name: str
    description: str
    error: float
    tolerance: float
    passed: bool
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-serialisable: name, description, error, tolerance, passed, details (non-finite floats,
        e.g. an infinite error, become strings such as "inf", since JSON has no infinity)."""
        return _jsonable({"name": self.name, "description": self.description, "error": self.error,
                          "tolerance": self.tolerance, "passed": self.passed, "details": self.details})


def _result(name, description, error, tolerance, details, conditions=None) -> CheckResult:
    error = float(error)
    conditions = {k: bool(v) for k, v in (conditions or {}).items()}
    passed = bool(math.isfinite(error) and error <= tolerance and all(conditions.values()))
    if conditions:
        details = {**details, "conditions": conditions}
    return CheckResult(name, description, error, float(tolerance), passed, details)


def _rel(a, b) -> float:
    """‖a − b‖ / ‖b‖ (‖a − b‖ when b = 0); torch or numpy."""
    a = np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64)
    b = np.asarray(b.detach().cpu() if isinstance(b, torch.Tensor) else b, dtype=np.float64)
    diff, ref = np.linalg.norm(a - b), np.linalg.norm(b)
    return float(diff / ref) if ref > 0 else float(diff)


def _pow0(s, a):
    """s^a elementwise with 0^0 = 1 (numpy)."""
    s = np.asarray(s, dtype=np.float64)
    return np.ones_like(s) if a == 0 else s ** a


def _orthogonal_np(n: int, rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def _np_gram_power(W: np.ndarray, a: float, side: str) -> np.ndarray:
    """Independent oracle: [W Wᵀ]^a (side 'left') or [Wᵀ W]^a ('right') from numpy's full SVD,
    singular values below max(k, d)·eps·s_max set to 0, [·]^0 = identity."""
    k, d = W.shape
    U, s, Vt = np.linalg.svd(W, full_matrices=True)
    s = np.where(s > max(k, d) * np.finfo(np.float64).eps * (s.max() if s.size else 0.0), s, 0.0)
    n = k if side == "left" else d
    full = np.zeros(n)
    full[: s.size] = s
    Q = U if side == "left" else Vt.T
    return (Q * _pow0(full, 2 * a)) @ Q.T


def _regression(m, d, k, scale, noise, seed):
    """A random regression problem: X (m, d), Y = X Aᵀ + noise (m, k), float64."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(m, d, generator=g, dtype=_F64)
    A = scale * torch.randn(k, d, generator=g, dtype=_F64)
    Y = X @ A.T + noise * torch.randn(m, k, generator=g, dtype=_F64)
    return X, Y


def _loss_grad(W, X, Y, p):
    """∇L¹(W) of the ℓp loss by autograd (lp_loss: mean over examples of (1/p)‖W x − y‖_p^p)."""
    W = W.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(losses.lp_loss(X @ W.T, Y, p), W)
    return g


def _network_gd(net, X, Y, p, lr, weight_decay, steps, record):
    """Eq 4 on the factors of a LinearNetwork by autograd; ``record(net)`` after every step."""
    params = list(net.factors)
    out = []
    for _ in range(steps):
        grads = torch.autograd.grad(losses.lp_loss(net(X), Y, p), params)
        with torch.no_grad():
            for W, g in zip(params, grads):
                W.mul_(1.0 - lr * weight_decay).sub_(lr * g)
        out.append(record(net))
    return out
