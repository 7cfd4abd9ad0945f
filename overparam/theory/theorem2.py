"""App A.4 numerically: Theorem 2 (the end-to-end update F of Eq 14 is not a gradient field: its
integral over a closed curve need not vanish) through Lemmas 2 and 3, by Gauss–Legendre line integrals
over the closed curve Γ_{r,R} (Eq 38)."""

from __future__ import annotations

import numpy as np
import torch

from .. import end_to_end
from ._common import _F64, CheckResult, _result


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
