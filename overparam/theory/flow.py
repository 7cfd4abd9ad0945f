"""App A.1 numerically: Theorem 1 (from a balanced start the factors' flow moves W_e by Eq 10),
Lemma 1 / Eq 17 (the Gram differences decay as e^{−2λt} from any start) and Eq 18 (balancedness is
kept), each with GD as the discretisation and the O(lr) test :func:`_at_two_lrs`."""

from __future__ import annotations

import math

import torch

from .. import end_to_end, losses
from ._common import _F64, CheckResult, _loss_grad, _network_gd, _regression, _result
from .balanced import balancedness


# --- Theorem 1 --------------------------------------------------------------------------------------

_T1 = dict(m=16, d=4, k=2, depth=3, hidden=[3, 5], p=4, scale=0.5, noise=0.1, std=0.3, weight_decay=0.1,
           lr=0.01, horizon=1.0, ratio=4, ratio_slack=1.5, small_gap_tol=0.03)


def _balanced_problem(c):
    """The small regression problem and the balanced-init network that Theorem 1 and Eq 18 both use."""
    from .. import models

    X, Y = _regression(c["m"], c["d"], c["k"], c["scale"], c["noise"], seed=0)
    net = models.LinearNetwork(c["d"], c["k"], c["depth"], hidden=c["hidden"], init="balanced", std=c["std"],
                               generator=torch.Generator().manual_seed(1), dtype=_F64)
    return X, Y, net


def _theorem1_gap(lr, steps, c=_T1):
    X, Y, net = _balanced_problem(c)
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
    from .. import models

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
    X, Y, net = _balanced_problem(c)
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
