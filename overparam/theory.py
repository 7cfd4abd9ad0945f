"""Balanced factorizations (Eq 7) and the numeric checks of the appendix's results.

Each check is a function returning a :class:`CheckResult`; :func:`run_checks` runs them (this is what
``overparam verify`` prints). Every check is deterministic (fixed seeds, float64), runs in a fraction of
a second to a few seconds on a CPU, and calls the library's own functions through their modules
(``end_to_end.precondition`` etc.), so a wrong library function makes the check fail. Each description
says what ``error`` and ``tolerance`` mean for that check; ``passed`` may also require conditions listed
in ``details["conditions"]``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np
import torch

from . import end_to_end, losses
from .linalg import check_depth, singular_cutoff, thin_svd

__all__ = ["balanced_factors", "balancedness", "CheckResult", "run_checks", "check_names"]


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


# --- Theorem 1 --------------------------------------------------------------------------------------

_T1 = dict(m=16, d=4, k=2, depth=3, hidden=[3, 5], p=4, scale=0.5, noise=0.1, std=0.3, weight_decay=0.1,
           lr=0.01, horizon=1.0, ratio=4, ratio_slack=1.5, small_gap_tol=0.03)


def _theorem1_gap(lr, steps, c=_T1):
    from . import models

    X, Y = _regression(c["m"], c["d"], c["k"], c["scale"], c["noise"], seed=0)
    net = models.LinearNetwork(c["d"], c["k"], c["depth"], hidden=c["hidden"], init="balanced", std=c["std"],
                               generator=torch.Generator().manual_seed(1), dtype=_F64)
    W = net.end_to_end().detach().clone()  # W_e(0), shared start
    W0 = W.clone()
    rule = []
    for _ in range(steps):
        W = end_to_end.end_to_end_step(W, _loss_grad(W, X, Y, c["p"]), c["depth"], lr, c["weight_decay"])
        rule.append(W)
    nets = _network_gd(net, X, Y, c["p"], lr, c["weight_decay"], steps, lambda n: n.end_to_end().detach().clone())
    scale = max(float(w.norm()) for w in rule)
    gap = max(float((a - b).norm()) for a, b in zip(nets, rule)) / scale
    return gap, {"lr": lr, "steps": steps, "gap": gap, "norm_We_0": float(W0.norm()), "norm_We_T": float(W.norm()),
                 "moved": float((W - W0).norm()), "loss_0": float(losses.lp_loss(X @ W0.T, Y, c["p"])),
                 "loss_T": float(losses.lp_loss(X @ W.T, Y, c["p"]))}


def _at_two_lrs(measure, c):
    """measure(lr, steps) at lr and at lr/ratio over the same horizon T = lr·steps: the O(lr) test.

    Returns (value at lr, details), (value at lr/ratio, details), their ratio, and the accepted band.
    """
    steps = int(round(c["horizon"] / c["lr"]))
    v1, d1 = measure(c["lr"], steps)
    v2, d2 = measure(c["lr"] / c["ratio"], steps * c["ratio"])
    ratio = v1 / v2 if v2 > 0 else float("inf")
    return (v1, d1), (v2, d2), ratio, (c["ratio"] / c["ratio_slack"], c["ratio"] * c["ratio_slack"])


def check_theorem_1() -> CheckResult:
    """Theorem 1: from a balanced start, the factors' gradient flow moves W_e by Eq 10's rule. Discrete GD
    on both sides differs by O(lr) over a fixed horizon, so the gap must shrink with the lr."""
    c = _T1
    (g1, d1), (g2, d2), ratio, (lo, hi) = _at_two_lrs(_theorem1_gap, c)
    return _result(
        "theorem-1",
        f"GD on a depth-{c['depth']} net (autograd, balanced init, widths {c['hidden']}, l{c['p']} loss, "
        f"weight decay {c['weight_decay']}) tracks Eq 10 from the same W_e(0) over T = lr*steps = {c['horizon']}; "
        f"error = gap max_t ||W_e^net - W_e^rule||_F / max_t ||W_e^rule|| at lr/{c['ratio']}; "
        f"also requires gap(lr)/gap(lr/{c['ratio']}) in [{lo:.3g}, {hi:.3g}] (gap is O(lr))",
        g2, c["small_gap_tol"],
        {"config": c, "large_lr": d1, "small_lr": d2, "gap_ratio": ratio},
        {"gap_ratio_near_lr_ratio": lo <= ratio <= hi})


# --- Lemma 1 / Eq 17–18 -----------------------------------------------------------------------------

def _gram_differences(factors):
    """D_j = W_{j+1}ᵀ W_{j+1} − W_j W_jᵀ, j = 1..N−1, and the Gram matrices C'_{j+1} = W_{j+1}ᵀ W_{j+1}."""
    Ws = [W.detach() for W in factors]
    return ([Ws[j + 1].T @ Ws[j + 1] - Ws[j] @ Ws[j].T for j in range(len(Ws) - 1)],
            [Ws[j + 1].T @ Ws[j + 1] for j in range(len(Ws) - 1)])


_L1 = dict(m=16, d=4, k=2, depth=3, hidden=[3, 5], p=4, scale=0.5, noise=0.1, std=0.5, weight_decay=0.5,
           lr=0.004, horizon=2.0, tol=0.02)


def check_lemma_1() -> CheckResult:
    """Eq 17 with Lemma 1 (α = 2ηλ): D_j(t) = e^{−2λt} D_j(0) for any init under gradient flow."""
    from . import models

    c = _L1
    X, Y = _regression(c["m"], c["d"], c["k"], c["scale"], c["noise"], seed=0)
    net = models.LinearNetwork(c["d"], c["k"], c["depth"], hidden=c["hidden"], init="normal", std=c["std"],
                               generator=torch.Generator().manual_seed(2), dtype=_F64)
    D0, C0 = _gram_differences(net.factors)
    steps = int(round(c["horizon"] / c["lr"]))
    traj = _network_gd(net, X, Y, c["p"], c["lr"], c["weight_decay"], steps, lambda n: _gram_differences(n.factors))
    lam, err, gram_change = c["weight_decay"], 0.0, 0.0
    for s, (D, C) in enumerate(traj, start=1):
        decay = math.exp(-2.0 * lam * c["lr"] * s)  # e^{−2λt}, t = lr · steps
        err = max(err, max(float((Dt - decay * Di).norm() / (decay * Di).norm()) for Dt, Di in zip(D, D0)))
        gram_change = max(gram_change, max(float((Ct - decay * Ci).norm() / (decay * Ci).norm())
                                           for Ct, Ci in zip(C, C0)))
    return _result(
        "lemma-1",
        f"Eq 17 + Lemma 1 (alpha = 2*eta*lambda): from an unbalanced normal init (std {c['std']}), "
        f"D_j = W_(j+1)^T W_(j+1) - W_j W_j^T decays as exp(-2 lambda t) under GD (lr {c['lr']}, "
        f"lambda {lam}, T = {c['horizon']}); error = max_t,j ||D_j(t) - exp(-2 lambda t) D_j(0)|| / "
        "||exp(-2 lambda t) D_j(0)||; also requires the Gram matrices themselves to move far from pure decay",
        err, c["tol"],
        {"config": c, "decay_at_T": math.exp(-2 * lam * c["horizon"]),
         "norm_D0": [float(D.norm()) for D in D0],
         "gram_deviation_from_pure_decay": gram_change},
        {"grams_move_by_more_than_10x_tol": gram_change > 10 * c["tol"]})


_E18 = dict(m=16, d=4, k=2, depth=3, hidden=[3, 5], p=4, scale=0.5, noise=0.1, std=0.3, weight_decay=0.1,
            lr=0.01, horizon=1.0, ratio=4, ratio_slack=1.5, tol=0.02)


def _balancedness_drift(lr, steps, c=_E18):
    from . import models

    X, Y = _regression(c["m"], c["d"], c["k"], c["scale"], c["noise"], seed=0)
    net = models.LinearNetwork(c["d"], c["k"], c["depth"], hidden=c["hidden"], init="balanced", std=c["std"],
                               generator=torch.Generator().manual_seed(1), dtype=_F64)
    start = balancedness(net.factors)
    return start, max(_network_gd(net, X, Y, c["p"], lr, c["weight_decay"], steps, lambda n: balancedness(n.factors)))


def check_eq_18() -> CheckResult:
    c = _E18
    (b1, s1), (b2, s2), ratio, (lo, hi) = _at_two_lrs(lambda lr, n: _balancedness_drift(lr, n)[::-1], c)
    return _result(
        "eq-18",
        f"Eq 18 (Lemma 1 with equal start): from balanced init, GD with weight decay {c['weight_decay']} keeps "
        f"balancedness (Eq 7 violation) small over T = {c['horizon']}; error = max_t balancedness at lr "
        f"{c['lr'] / c['ratio']:.3g}; also requires drift(lr)/drift(lr/{c['ratio']}) in [{lo:.3g}, {hi:.3g}] "
        "(the violation is the O(lr) discretisation error)",
        b2, c["tol"],
        {"config": c, "balancedness_at_init": max(s1, s2), "max_violation_large_lr": b1,
         "max_violation_small_lr": b2, "ratio": ratio},
        {"ratio_near_lr_ratio": lo <= ratio <= hi, "init_balanced_to_1e-12": max(s1, s2) <= 1e-12})


# --- Claim 1 / Claim 2 ------------------------------------------------------------------------------

# (k, d, depth, singular values of W: fewer than min(k, d) means rank-deficient; () means W = 0)
_C1_CASES = [(2, 4, 3, (2.0, 0.7)), (4, 2, 2, (1.5, 0.4)), (3, 3, 4, (2.0, 1.3, 0.5)),
             (3, 4, 3, (1.7, 0.6)), (3, 5, 5, (1.2,)), (1, 3, 3, (0.9,)), (3, 1, 4, (1.1,)),
             (3, 2, 3, ()), (2, 3, 1, (1.0, 0.3)), (4, 4, 8, (3.0, 1.0, 0.2))]


def _known_svd_matrix(k, d, svals, rng):
    """W = U diag(svals) Vᵀ with U (k×k), V (d×d) random orthogonal: the SVD is known exactly."""
    U, V = _orthogonal_np(k, rng), _orthogonal_np(d, rng)
    r = len(svals)
    W = (U[:, :r] * np.asarray(svals, dtype=np.float64)) @ V[:, :r].T if r else np.zeros((k, d))
    return W, U, V


def _claim1_oracle(U, V, svals, N):
    """P from the stated eigenpairs: Σ_{r,r'} λ_{rr'} vec(u_r v_r'ᵀ) vec(u_r v_r'ᵀ)ᵀ (column-major vec),
    λ_{rr'} = Σ_j σ_r^{2(N−j)/N} σ_r'^{2(j−1)/N}, σ_r = 0 beyond the given values, 0^0 = 1."""
    k, d = U.shape[0], V.shape[0]
    su, sv = np.zeros(k), np.zeros(d)
    su[: len(svals)] = svals[:k]
    sv[: len(svals)] = svals[:d]
    lam = sum(np.outer(_pow0(su, 2 * (N - j) / N), _pow0(sv, 2 * (j - 1) / N)) for j in range(1, N + 1))  # (k, d)
    O = np.stack([np.kron(V[:, b], U[:, a]) for b in range(d) for a in range(k)], axis=1)  # columns vec(u_a v_bᵀ)
    L = np.array([lam[a, b] for b in range(d) for a in range(k)])
    return (O * L) @ O.T, lam


def check_claim_1() -> CheckResult:
    rng = np.random.default_rng(10)
    worst = {"P_vs_eigenpairs": 0.0, "symmetry": 0.0, "psd": 0.0, "precondition_vs_P_vec": 0.0}
    cases = []
    for k, d, N, svals in _C1_CASES:
        W, U, V = _known_svd_matrix(k, d, svals, rng)
        G = rng.standard_normal((k, d))
        P = end_to_end.preconditioner_matrix(torch.tensor(W, dtype=_F64), N).numpy()
        P_ref, lam = _claim1_oracle(U, V, svals, N)
        scale = max(np.linalg.norm(P_ref), 1.0)
        e_p = np.linalg.norm(P - P_ref) / scale
        e_sym = np.linalg.norm(P - P.T) / scale
        e_psd = max(0.0, -float(np.linalg.eigvalsh((P + P.T) / 2).min())) / scale
        pre = end_to_end.precondition(torch.tensor(W, dtype=_F64), torch.tensor(G, dtype=_F64), N).numpy()
        via_P = (P_ref @ G.reshape(-1, order="F")).reshape((k, d), order="F")  # unvec(P vec(G))
        e_pre = _rel(pre, via_P)
        for key, v in zip(worst, (e_p, e_sym, e_psd, e_pre)):
            worst[key] = max(worst[key], float(v))
        cases.append({"shape": [k, d], "depth": N, "singular_values": list(svals),
                      "P_vs_eigenpairs": e_p, "precondition_vs_P_vec": e_pre, "min_eigenvalue": float(lam.min())})
    return _result(
        "claim-1",
        "Claim 1 / Eq 11: preconditioner_matrix equals sum_rr' lambda_rr' vec(u_r v_r'^T)vec(..)^T with "
        "lambda_rr' = sum_j s_r^(2(N-j)/N) s_r'^(2(j-1)/N) (exact SVD, 0^0 = 1), is symmetric PSD, and "
        "precondition(W, G) = unvec(P vec(G)); shapes k<d, k>d, square, k=1, d=1, rank-deficient, W=0, "
        "depths 1-8; error = max relative deviation",
        max(worst.values()), 1e-10, {"worst": worst, "cases": cases})


_C2_CASES = [(1, 2), (2, 2), (5, 3), (9, 4), (4, 8), (3, 1)]  # (d, depth)


def _np_sum_form(W, G, N):
    """Eq 10's sum Σ_j [W Wᵀ]^{(j−1)/N} G [Wᵀ W]^{(N−j)/N}, literally, with numpy SVD powers."""
    return sum(_np_gram_power(W, (j - 1) / N, "left") @ G @ _np_gram_power(W, (N - j) / N, "right")
               for j in range(1, N + 1))


def check_claim_2() -> CheckResult:
    rng = np.random.default_rng(20)
    worst, cases = 0.0, []
    for d, N in _C2_CASES:
        for shape in ((1, d), (d, 1)):
            for zero in (False, True):
                W = np.zeros(shape) if zero else rng.standard_normal(shape)
                G = rng.standard_normal(shape)
                Wt, Gt = torch.tensor(W, dtype=_F64), torch.tensor(G, dtype=_F64)
                closed = end_to_end.single_output_precondition(Wt, Gt, N).numpy()
                literal = _np_sum_form(W, G, N)
                kron = (end_to_end.preconditioner_matrix(Wt, N).numpy() @ G.reshape(-1, order="F")).reshape(
                    shape, order="F")
                e = max(_rel(closed, literal), _rel(closed, kron))
                worst = max(worst, e)
                cases.append({"shape": list(shape), "depth": N, "W_zero": zero, "error": e,
                              "norm_update": float(np.linalg.norm(closed))})
    return _result(
        "claim-2",
        "Claim 2 / Eq 12: single_output_precondition (closed form) equals Eq 10's sum computed literally "
        "(numpy SVD powers) and via preconditioner_matrix, for 1 x d and d x 1 W, d = 1..9, N = 1..8, "
        "including W = 0 (update 0 for N >= 2); error = max relative deviation",
        worst, 1e-12, {"cases": cases})


def check_claim_2_at_zero() -> CheckResult:
    rng = np.random.default_rng(30)
    worst, cases = 0.0, []
    for shape in ((1, 5), (5, 1), (3, 4), (4, 2)):
        G = torch.tensor(rng.standard_normal(shape), dtype=_F64)
        Z = torch.zeros(shape, dtype=_F64)
        for N in range(2, 9):
            a = float(end_to_end.precondition(Z, G, N).abs().max())
            b = float(end_to_end.end_to_end_step(Z, G, N, lr=0.1, weight_decay=0.5).abs().max())
            worst = max(worst, a, b)
            cases.append({"shape": list(shape), "depth": N, "max_abs_precondition": a, "max_abs_step": b})
    depth1 = float((end_to_end.end_to_end_step(Z, G, 1, lr=0.1) + 0.1 * G).abs().max())
    return _result(
        "claim-2-at-zero",
        "At W_e = 0 the update of Eq 10/12 is exactly zero for N = 2..8 (closed form and SVD path, with "
        "and without weight decay), but -lr*grad for N = 1; error = max |entry| of the update, tolerance 0",
        worst, 0.0, {"cases": cases, "depth_1_deviation_from_minus_lr_grad": depth1},
        {"depth_1_is_minus_lr_grad": depth1 == 0.0})


def check_depth_1_is_gd() -> CheckResult:
    from . import models

    rng = np.random.default_rng(40)
    errs = {}
    for k, d in ((1, 4), (3, 5), (4, 2)):
        W = torch.tensor(rng.standard_normal((k, d)), dtype=_F64)
        G = torch.tensor(rng.standard_normal((k, d)), dtype=_F64)
        lr, wd = 0.03, 0.2
        errs[f"step_{k}x{d}"] = _rel(end_to_end.end_to_end_step(W, G, 1, lr, wd), (1 - lr * wd) * W - lr * G)
        errs[f"P_{k}x{d}"] = _rel(end_to_end.preconditioner_matrix(W, 1), torch.eye(k * d, dtype=_F64))
    X, Y = _regression(12, 3, 2, 0.5, 0.1, seed=3)
    net = models.LinearNetwork(3, 2, 1, generator=torch.Generator().manual_seed(4), std=0.5, dtype=_F64)
    W = net.end_to_end().detach().clone()
    for _ in range(5):
        W = end_to_end.end_to_end_step(W, _loss_grad(W, X, Y, 4), 1, 0.05, 0.1)
    _network_gd(net, X, Y, 4, 0.05, 0.1, 5, lambda n: None)
    errs["network_depth_1_vs_rule_5_steps"] = _rel(net.end_to_end().detach(), W)
    return _result(
        "depth-1-is-gd",
        "N = 1: end_to_end_step is (1 - lr*lambda) W - lr*grad, P_W = I, and a depth-1 LinearNetwork trained "
        "by autograd GD follows the rule; error = max relative deviation",
        max(errs.values()), 1e-13, errs)


# --- Eqs 7, 21–24: balanced factors -----------------------------------------------------------------

# (k, d, depth, widths, singular values)
_E21_CASES = [(2, 4, 3, [3, 5], (1.6, 0.5)), (4, 3, 4, [3, 6, 4], (2.0, 1.0, 0.3)),
              (3, 4, 3, [2, 2], (1.4,)), (1, 5, 5, [1, 2, 3, 1], (1.3,)), (2, 3, 3, [2, 4], ()),
              (3, 3, 2, [5], (0.8, 0.8, 0.1))]


def check_eq_21_24() -> CheckResult:
    rng = np.random.default_rng(50)
    worst = {"product": 0.0, "eq_7": 0.0, "eq_23": 0.0, "eq_24": 0.0}
    for k, d, N, widths, svals in _E21_CASES:
        W, _, _ = _known_svd_matrix(k, d, svals, rng)
        Ws = balanced_factors(torch.tensor(W, dtype=_F64), N, widths, generator=torch.Generator().manual_seed(5))
        Ws = [w.numpy() for w in Ws]
        prod = Ws[0]
        for w in Ws[1:]:
            prod = w @ prod
        worst["product"] = max(worst["product"], _rel(prod, W))
        worst["eq_7"] = max(worst["eq_7"], balancedness([torch.tensor(w) for w in Ws]))
        scale = max(np.linalg.norm(W), 1.0)
        for j in range(1, N + 1):
            top = Ws[N - 1]  # W_N ⋯ W_j
            for w in reversed(Ws[j - 1: N - 1]):
                top = top @ w
            bottom = Ws[0]  # W_j ⋯ W_1
            for w in Ws[1:j]:
                bottom = w @ bottom
            e23 = np.linalg.norm(top @ top.T - _np_gram_power(W, (N - j + 1) / N, "left")) / scale
            e24 = np.linalg.norm(bottom.T @ bottom - _np_gram_power(W, j / N, "right")) / scale
            worst["eq_23"] = max(worst["eq_23"], float(e23))
            worst["eq_24"] = max(worst["eq_24"], float(e24))
    return _result(
        "eq-21-24",
        "balanced_factors: W_N...W_1 = W_e, Eq 7, and the identities of the proof of Theorem 1, "
        "W_N..W_j (W_N..W_j)^T = [W_e W_e^T]^((N-j+1)/N) (Eq 23), (W_j..W_1)^T(W_j..W_1) = [W_e^T W_e]^(j/N) "
        "(Eq 24), widths >= rank, rank-deficient and zero W_e; error = max relative deviation",
        max(worst.values()), 1e-12, {"worst": worst,
                                     "cases": [{"shape": [k, d], "depth": N, "widths": w, "singular_values": list(s)}
                                               for k, d, N, w, s in _E21_CASES]})


# --- Theorem 2 (A.4): Lemmas 2 and 3 -----------------------------------------------------------------

_GL_NODES = 64  # Gauss–Legendre nodes per smooth piece


def _curve(e, f, r, R, n=_GL_NODES):
    """Γ_{r,R} (Eq 38) in the plane of the unit vectors e ⊥ f, as quadrature points w, tangents w' and
    weights (so ∮ φ · dw ≈ Σ weight · ⟨φ(w), w'⟩). Both half circles pass through the +f side."""
    x, wq = np.polynomial.legendre.leggauss(n)
    pts, tans, wts = [], [], []

    def seg(a, b):  # s ∈ [a, b] ↦ s e
        s = (b - a) / 2 * x + (a + b) / 2
        pts.append(np.outer(s, e)); tans.append(np.tile(e, (n, 1))); wts.append(wq * (b - a) / 2)

    def arc(rho, start):  # θ ∈ [0, π]: from start·rho·e to −start·rho·e through +f
        th = np.pi / 2 * (x + 1)
        pts.append(rho * (np.outer(start * np.cos(th), e) + np.outer(np.sin(th), f)))
        tans.append(rho * (np.outer(-start * np.sin(th), e) + np.outer(np.cos(th), f)))
        wts.append(wq * np.pi / 2)

    seg(-R, -r)      # Γ¹: −R e → −r e
    arc(r, -1.0)     # Γ²: −r e → r e on the sphere of radius r
    seg(r, R)        # Γ³: r e → R e
    arc(R, 1.0)      # Γ⁴: R e → −R e on the sphere of radius R
    return np.concatenate(pts), np.concatenate(tans), np.concatenate(wts)


def _F_field(points, phi_values, N):
    """F_φ(w) (Eq 36) at many points, by the library's Claim 2 closed form (batched 1×d matrices)."""
    W = torch.tensor(points, dtype=_F64).unsqueeze(-2)  # (n, 1, d)
    G = torch.tensor(phi_values, dtype=_F64).unsqueeze(-2)
    return end_to_end.single_output_precondition(W, G, N).squeeze(-2).numpy()


def _line_integral(values, tans, wts) -> float:
    return float(np.sum(wts * np.einsum("nd,nd->n", values, tans)))


def _lemma3(N, r, R):
    q = 3 - 2 / N
    return (2 * N / q - 2) * (R ** q - r ** q)


def _lemma2_bound(N, r, R, max_phi):
    length = np.pi * r + np.pi * R + 2 * (R - r)
    return N * length * R ** (2 - 2 / N) * max_phi


def check_theorem_2() -> CheckResult:
    d = 4
    rng = np.random.default_rng(60)
    # (a) Lemma 3 for the constant field e
    e = rng.standard_normal(d); e /= np.linalg.norm(e)
    f = rng.standard_normal(d); f -= (f @ e) * e; f /= np.linalg.norm(f)
    lemma3 = []
    err_a = 0.0
    for N in (2, 3, 4, 8):
        for r, R in ((0.3, 1.0), (0.05, 0.4)):
            pts, tans, wts = _curve(e, f, r, R)
            I = _line_integral(_F_field(pts, np.tile(e, (len(pts), 1)), N), tans, wts)
            ref = _lemma3(N, r, R)
            err = abs(I - ref) / R ** (3 - 2 / N)
            err_a = max(err_a, err)
            bound = _lemma2_bound(N, r, R, 1.0)
            lemma3.append({"N": N, "r": r, "R": R, "integral": I, "lemma_3": ref, "error": err,
                           "lemma_2_bound": bound, "lemma_2_holds": abs(I) <= bound})
    # (b) the gradient of a real ℓ4 loss, N = 3
    N, m = 3, 20
    X = rng.standard_normal((m, d))
    y = rng.standard_normal(m) + 1.0
    grad = lambda Wp: ((Wp @ X.T - y) ** 3 @ X) / m  # ∇ of mean_i (1/4)(⟨w, x_i⟩ − y_i)^4, (n, d)
    g0 = grad(np.zeros((1, d)))[0]
    c = float(np.linalg.norm(g0))
    e = g0 / c
    f = rng.standard_normal(d); f -= (f @ e) * e; f /= np.linalg.norm(f)
    K = 2 * N / (3 - 2 / N) - 2
    eps = 0.25 * c * K / (2 * np.pi * N)  # A.4: 0.5 c K − 2πNε > 0, with a margin of 2
    R = 1.0
    while True:  # A.4's procedure: r^{3−2/N} = 0.5 R^{3−2/N}, R small enough that ‖ξ‖ ≤ ε on Γ
        r = 0.5 ** (1 / (3 - 2 / N)) * R
        pts, tans, wts = _curve(e, f, r, R)
        phi = grad(pts)
        max_xi = float(np.linalg.norm(phi - g0, axis=1).max())
        if max_xi <= eps or R < 1e-6:
            break
        R /= 2
    I_F = _line_integral(_F_field(pts, phi, N), tans, wts)
    I_grad = _line_integral(phi, tans, wts)  # ∮ ∇L: zero by the gradient theorem
    I_Fxi = _line_integral(_F_field(pts, phi - g0, N), tans, wts)
    bound_F = _lemma2_bound(N, r, R, float(np.linalg.norm(phi, axis=1).max()))
    bound_xi = _lemma2_bound(N, r, R, max_xi)
    c_lemma3 = c * _lemma3(N, r, R)
    lower = c_lemma3 - N * 2 * np.pi * R ** (3 - 2 / N) * max_xi
    scale = R ** (3 - 2 / N) * c  # the size of every term in (b)
    err_b = abs(I_grad) / (float(np.linalg.norm(phi, axis=1).max()) * (np.pi * (r + R) + 2 * (R - r)))
    part_b = {"N": N, "c": c, "R": R, "r": r, "epsilon": eps, "max_xi": max_xi, "integral_F": I_F,
              "integral_grad": I_grad, "integral_F_xi": I_Fxi, "c_times_lemma_3": c_lemma3,
              "proof_lower_bound": lower, "lemma_2_bound_F": bound_F, "lemma_2_bound_xi": bound_xi,
              "integral_F_over_lemma_2_bound": I_F / bound_F, "integral_F_over_c_lemma_3": I_F / c_lemma3,
              "integral_grad_relative": err_b, "integral_F_relative": I_F / scale}
    conditions = {
        "lemma_2_holds_constant_field": all(x["lemma_2_holds"] for x in lemma3),
        "lemma_2_holds_grad_field": abs(I_F) <= bound_F,
        "lemma_2_holds_xi_field": abs(I_Fxi) <= bound_xi,
        "F_integral_nonzero_and_above_proof_bound": I_F >= lower > 0,
        "F_integral_clearly_nonzero": I_F / bound_F > 1e-3,
    }
    return _result(
        "theorem-2",
        "A.4: line integrals over the closed curve Gamma_{r,R} (Gauss-Legendre, d = 4). (a) constant e: "
        "matches Lemma 3 (2N/(3-2/N) - 2)(R^(3-2/N) - r^(3-2/N)) for N = 2, 3, 4, 8; (b) l4-loss gradient, "
        "N = 3, R, r as in A.4's procedure: the integral of grad L vanishes, that of F = Eq 14 does not, and "
        "exceeds the proof's lower bound; (c) Lemma 2's bound holds; error = max(|quadrature - Lemma 3| / "
        "R^(3-2/N), |integral of grad L| / (len * max|grad L|))",
        max(err_a, err_b), 1e-10, {"lemma_3": lemma3, "gradient_field": part_b}, conditions)


# --- Appendix B: the p = 4, N = 2 acceleration bound ------------------------------------------------

_AB_SETTINGS = [(1000.0, 1.0, 0.05, 5e-5), (400.0, 1.0, 0.05, 1.25e-4), (2000.0, 2.0, 0.02, 2e-5)]  # y1, y2, ε1, ε2
_AB_REL = 0.1  # "converged": |w_i − y_i| ≤ 0.1·|y_i| for both coordinates


def _ab_assumptions(y1, y2, e1, e2) -> dict:
    """Appendix B's assumptions, made quantitative (≫ read as a factor ≥ 10, ≈ as within 2×)."""
    return {"y1 >> y2 (y1/y2 >= 100)": y1 / y2 >= 100,
            "y2 ~ 1 (0.5 <= y2 <= 2)": 0.5 <= y2 <= 2,
            "1 >> eps1 and y2 >> eps1 (eps1 <= 0.1 min(1, y2))": e1 <= 0.1 * min(1.0, y2),
            "eps1 >> eps2 (eps1/eps2 >= 100)": e1 / e2 >= 100,
            "eps1/eps2 ~ y1/y2 (within 2x)": 0.5 <= (e1 / e2) / (y1 / y2) <= 2,
            "eps1*y1 >> 1 (>= 10)": e1 * y1 >= 10}


def _gd_quartic_iterations(delta0: float, target: float, eta: float, max_sim: int = 10 ** 6):
    """Iterations of δ ← δ − η δ³ (GD on (1/4)(w − y)^4, δ = w − y) until |δ| ≤ target: (lo, hi),
    or None when it diverges or stalls. Exact simulation while x = η δ² ≥ 1e-4 (a few thousand steps at most:
    x_t ≈ 1/(2t) once x < 1); below that, with u = 1/δ², u ← u/(1 − x)² and 2η ≤ Δu ≤ 2η·g(x₀),
    g(x) = ((1 − x)^{-2} − 1)/(2x) increasing and x decreasing, which brackets the count to a relative
    1.5e-4 without running it (Appendix B's GD needs ~10^7 iterations)."""
    delta, t = float(delta0), 0
    while abs(delta) > target:
        x = eta * delta * delta
        if x >= 2.0 or t >= max_sim:
            return None  # |1 − x| ≥ 1: |δ| never decreases; or stalled
        if x < 1e-4:
            u0, u_star = 1.0 / (delta * delta), 1.0 / (target * target)
            g = ((1.0 - x) ** -2 - 1.0) / (2.0 * x) if x > 0 else 1.0
            return (t + math.ceil((u_star - u0) / (2.0 * eta * g)), t + math.ceil((u_star - u0) / (2.0 * eta)))
        delta -= eta * delta ** 3
        t += 1
    return t, t


def _ab_gd(y1, y2, e1, e2):
    """GD on L(w) = (1/4) Σ_i (w_i − y_i)^4 from (ε1, ε2): coordinates decouple. Best lr over a fine grid
    c·2/y1², c ∈ (0, 1.02], the iterations of the slower coordinate."""
    best = None
    for c in np.concatenate([np.linspace(0.01, 0.99, 99), np.linspace(0.991, 1.02, 30)]):
        eta = float(c) * 2.0 / y1 ** 2
        t1 = _gd_quartic_iterations(e1 - y1, _AB_REL * y1, eta)
        t2 = _gd_quartic_iterations(e2 - y2, _AB_REL * y2, eta)
        if t1 is None or t2 is None:
            continue
        lo, hi = max(t1[0], t2[0]), max(t1[1], t2[1])
        if best is None or lo < best["iterations_lo"]:
            best = {"lr": eta, "lr_over_2_div_y1sq": float(c), "iterations_lo": lo, "iterations_hi": hi,
                    "w1_iterations": t1[0], "w2_iterations_lo": t2[0], "w2_iterations_hi": t2[1]}
    if best is None:
        return None
    # cross-check: continuous-time estimate of the w2 count, (1/δ*² − 1/δ0²)/(2η)
    best["w2_continuous_estimate"] = (1 / (_AB_REL * y2) ** 2 - 1 / (e2 - y2) ** 2) / (2 * best["lr"])
    return best


def _ab_overparam(settings, max_steps=10 ** 5):
    """Eq 12 (N = 2, λ = 0) at η = 1/(2 ε1 y1²), all settings batched through the library's precondition."""
    y = torch.tensor([[s[0], s[1]] for s in settings], dtype=_F64).unsqueeze(-2)  # (S, 1, 2)
    W = torch.tensor([[s[2], s[3]] for s in settings], dtype=_F64).unsqueeze(-2)
    eta = torch.tensor([1.0 / (2 * s[2] * s[0] ** 2) for s in settings], dtype=_F64).view(-1, 1, 1)
    done = torch.full((len(settings),), float("inf"), dtype=_F64)
    first, t, chunk = None, 0, 512
    while t < max_steps:
        traj = []
        for _ in range(chunk):
            W = W - eta * end_to_end.precondition(W, (W - y) ** 3, 2)  # ∇L = (w − y)^3: the formula's gradient
            traj.append(W)
        if first is None:
            first = traj[0].squeeze(-2).tolist()
        F = ((torch.stack(traj) - y).abs() <= _AB_REL * y.abs()).all(dim=-1).squeeze(-1)  # (chunk, S)
        hit = F.any(dim=0) & torch.isinf(done)
        done = torch.where(hit, F.to(torch.int8).argmax(dim=0).to(_F64) + t + 1, done)
        t += chunk
        finite = torch.isfinite(W).all(dim=-1).squeeze(-1)
        if not bool((torch.isinf(done) & finite).any()):  # every setting converged or diverged
            break
    return done.tolist(), first


def check_appendix_b() -> CheckResult:
    op_iters, first = _ab_overparam(_AB_SETTINGS)
    rows, worst, assumptions_ok = [], 0.0, True
    for (y1, y2, e1, e2), t_op, w1st in zip(_AB_SETTINGS, op_iters, first):
        gd = _ab_gd(y1, y2, e1, e2)
        bound = y1 / (4 * e1)
        speedup = gd["iterations_lo"] / t_op if gd is not None else float("inf")  # conservative: GD's lower count
        worst = max(worst, bound / speedup if speedup > 0 else float("inf"))
        assumptions = _ab_assumptions(y1, y2, e1, e2)
        assumptions_ok &= all(assumptions.values())
        rows.append({"y1": y1, "y2": y2, "eps1": e1, "eps2": e2, "assumptions": assumptions,
                     "overparam_lr": 1 / (2 * e1 * y1 ** 2), "overparam_iterations": t_op, "overparam_w_after_1": w1st,
                     "gd": gd, "speedup": speedup, "bound_y1_over_4eps1": bound})
    return _result(
        "appendix-b",
        "App B (p = 4, N = 2, two examples, L = (1/4) sum_i (w_i - y_i)^4, no weight decay): iterations until "
        f"|w_i - y_i| <= {_AB_REL} |y_i| for both i, GD at its best lr on a fine grid (counted exactly / "
        "bracketed in closed form) vs Eq 12 at lr = 1/(2 eps1 y1^2) from (eps1, eps2); error = max over "
        "settings of bound y1/(4 eps1) / measured speed-up, pass when <= 1; also requires the assumptions",
        worst, 1.0, {"settings": rows}, {"assumptions_hold": assumptions_ok})


# --- registry -----------------------------------------------------------------------------------------

_CHECKS = {
    "theorem-1": check_theorem_1,
    "lemma-1": check_lemma_1,
    "eq-18": check_eq_18,
    "eq-21-24": check_eq_21_24,
    "claim-1": check_claim_1,
    "claim-2": check_claim_2,
    "claim-2-at-zero": check_claim_2_at_zero,
    "depth-1-is-gd": check_depth_1_is_gd,
    "theorem-2": check_theorem_2,
    "appendix-b": check_appendix_b,
}


def check_names() -> list[str]:
    """Names of the checks, in the order :func:`run_checks` runs them."""
    return list(_CHECKS)


def run_checks(names=None) -> list[CheckResult]:
    """Run the named checks (all when ``names`` is None), in registry order of the request.

    Raises ValueError naming the unknown names and listing the valid ones.
    """
    if names is None:
        names = list(_CHECKS)
    elif isinstance(names, str):
        names = [names]
    names = list(names)
    unknown = [n for n in names if n not in _CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; valid names: {', '.join(_CHECKS)}")
    return [_CHECKS[n]() for n in dict.fromkeys(names)]
