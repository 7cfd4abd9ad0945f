"""App A's algebraic claims, checked against independent numpy oracles: Claim 1
(the eigendecomposition of P_W, Eq 11), Claim 2 (the single-output closed form, Eq 12), the zero update
at W_e = 0, depth 1 being plain GD, and the balanced factors' identities Eq 7 and 21–24."""

from __future__ import annotations

import numpy as np
import torch

from .. import end_to_end
from ._common import (_F64, CheckResult, _loss_grad, _network_gd, _np_gram_power, _orthogonal_np, _pow0, _regression,
                      _rel, _result)
from .balanced import balanced_factors, balancedness


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
    from .. import models

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
