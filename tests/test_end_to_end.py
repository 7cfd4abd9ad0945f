"""Eq 10 / Claim 1 / Claim 2 (overparam.end_to_end) against slow literal oracles and real deep networks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cases import (
    ERROR_CASES,
    EXACT_CASES,
    F64,
    F64_CASES,
    MATRIX_CASES,
    SHAPE_DEPTH,
    SHAPES,
    VECTOR_CASES,
    assert_close,
    case_params,
    claim1_eigenvalues,
    exact_precondition,
    literal_precondition,
    literal_preconditioner,
    make_problem,
    orthogonal,
    vec_cm,
)
from overparam.end_to_end import (
    _svd_precondition,
    end_to_end_step,
    precondition,
    preconditioner_matrix,
    single_output_precondition,
)
from overparam.linalg import unvec, vec
from overparam.losses import lp_loss
from overparam.models import LinearNetwork
from overparam.theory import balanced_factors


# ------------------------------------------------------------------------------------ against oracles
@pytest.mark.parametrize(**case_params(MATRIX_CASES))
def test_matches_literal_reference(case):
    """precondition == Σ_j eigh-powers ⊗ Kronecker products (Eq 11), tight in float64, looser in float32."""
    W64, G64, _ = case.problem()
    W, G = case.inputs()
    out = precondition(W, G, case.depth)
    assert out.dtype == case.dtype
    assert_close(out, literal_precondition(W64, G64, case.depth), case.rtol)


@pytest.mark.parametrize(**case_params(EXACT_CASES))
def test_matches_exact_svd(case):
    """Rank-deficient and zero W built from a known SVD (exact zeros): no 1e-2 errors from rounded
    singular values raised to 1/N, even at depth 8 and in float32."""
    W64, G64, (U, s, V) = case.problem()
    W, G = case.inputs()
    assert_close(precondition(W, G, case.depth), exact_precondition(U, s, V, G64, case.depth), case.rtol)


def test_naive_eigh_reference_is_not_an_oracle():
    """Why the oracles use a cutoff: without one, eigh of a rank-deficient Gram gives ±1e-16 for 0, and
    (1e-16)^{1/8} ≈ 1e-2. The same inputs go through precondition with errors ~1e-14."""
    worst_naive, worst_lib = 0.0, 0.0
    for name in ("k<d", "k>d", "square"):
        W, G, (U, s, V) = make_problem(name, "rank_deficient")
        exact = exact_precondition(U, s, V, G, 8)
        naive = 0
        for j in range(1, 9):
            lamL, QL = torch.linalg.eigh(W @ W.T)
            lamR, QR = torch.linalg.eigh(W.T @ W)
            L = (QL * lamL.clamp_min(0).pow((j - 1) / 8)) @ QL.T
            R = (QR * lamR.clamp_min(0).pow((8 - j) / 8)) @ QR.T
            naive = naive + L @ G @ R
        worst_naive = max(worst_naive, (naive - exact).abs().max().item())
        worst_lib = max(worst_lib, (precondition(W, G, 8) - exact).abs().max().item())
    assert worst_naive > 1e-4
    assert worst_lib < 1e-12


@pytest.mark.parametrize(**case_params(MATRIX_CASES))
def test_preconditioner_matrix_acts_as_precondition(case):
    """Claim 1: precondition(W, G) = unvec(P_W vec(G)), column-major vec."""
    W, G = case.inputs()
    k, d = case.shape
    P = preconditioner_matrix(W, case.depth)
    assert P.shape == (k * d, k * d) and P.dtype == case.dtype
    assert_close(unvec(P @ vec(G), k, d), precondition(W, G, case.depth), case.rtol)
    assert torch.equal(vec(G), vec_cm(G))


@pytest.mark.parametrize(**case_params(F64_CASES))
def test_preconditioner_matrix_is_claim1(case):
    """P_W is symmetric PSD, with Claim 1's eigenvalues, and equals the literal Kronecker sum."""
    W, _, _ = case.problem()
    P = preconditioner_matrix(W, case.depth)
    assert_close(P, P.T, 1e-14)
    lam = torch.linalg.eigvalsh(P)
    scale = max(lam.abs().max().item(), 1.0)
    assert lam.min().item() >= -1e-12 * scale
    assert_close(lam, claim1_eigenvalues(W, case.depth), 1e-11)
    assert_close(P, literal_preconditioner(W, case.depth), 1e-12)


@pytest.mark.parametrize(**case_params(VECTOR_CASES))
def test_single_output_closed_form(case):
    """Claim 2 (k = 1 or d = 1): closed form == the SVD sum form == the literal reference."""
    W64, G64, _ = case.problem()
    W, G = case.inputs()
    closed = single_output_precondition(W, G, case.depth)
    ref = literal_precondition(W64, G64, case.depth)
    assert_close(closed, ref, case.rtol)
    if case.depth > 1:
        assert_close(_svd_precondition(W, G, case.depth, None), ref, case.rtol)
    # Claim 2's reading: N·‖W‖^{2−2/N} along W, ‖W‖^{2−2/N} across it
    if case.kind == "random" and case.depth > 1:
        w, g = W64.flatten(), G64.flatten()
        n2 = w @ w
        along = (g @ w) / n2 * w
        expect = n2 ** (1 - 1 / case.depth) * (case.depth * along + (g - along))
        assert_close(closed.to(F64).flatten(), expect, case.rtol)


@pytest.mark.parametrize("name,N", SHAPE_DEPTH)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_W(name, N, dtype):
    """W = 0: the update is exactly zero for N >= 2 (Claim 2, Eq 10), and G itself at N = 1."""
    k, d = SHAPES[name]
    G = torch.randn(k, d, dtype=dtype, generator=torch.Generator().manual_seed(1))
    out = precondition(torch.zeros(k, d, dtype=dtype), G, N)
    assert torch.equal(out, G if N == 1 else torch.zeros_like(G))


@pytest.mark.parametrize(**case_params(MATRIX_CASES))
def test_transposition_symmetry(case):
    """precondition(Wᵀ, Gᵀ)ᵀ == precondition(W, G): Eq 10 is symmetric under j → N + 1 − j."""
    W, G = case.inputs()
    assert_close(precondition(W.T, G.T, case.depth).T, precondition(W, G, case.depth), case.rtol)


# ----------------------------------------------------------------------------- against real networks
def _end_to_end_change(W, X, Y, N, widths, lr, p):
    """One GD step on a balanced depth-N factorization of W, by autograd; returns (W_e' − W_e) / lr and
    ∇L¹(W_e)."""
    k, d = W.shape
    net = LinearNetwork(d, k, N, hidden=widths, dtype=F64)
    with torch.no_grad():
        for P, F in zip(net.factors, balanced_factors(W, N, widths, generator=torch.Generator().manual_seed(3))):
            P.copy_(F)
    W0 = net.end_to_end().detach().clone()
    assert (W0 - W).abs().max() < 1e-12
    lp_loss(net(X), Y, p).backward()
    with torch.no_grad():
        for P in net.factors:
            P -= lr * P.grad
    We = W.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(lp_loss(X @ We.T, Y, p), We)
    return (net.end_to_end().detach() - W0) / lr, grad


AUTOGRAD = [  # every shape and kind at depths 1..4 and 8 with the narrowest widths; wide ones at 2 and 8
    (name, kind, N, widths)
    for name in SHAPES
    for kind in ("random", "rank_deficient", "zero")
    if kind != "rank_deficient" or min(SHAPES[name]) >= 2
    for N in (1, 2, 3, 4, 8)
    for widths in ("narrow", "wide")
    if widths == "narrow" or (N in (2, 8) and kind != "zero")
]


@pytest.mark.parametrize("name,kind,N,widths", AUTOGRAD)
def test_matches_autograd_on_a_deep_network(name, kind, N, widths):
    """Theorem 1 / Eq 10: GD on the factors of a balanced depth-N network moves the end-to-end matrix by
    −lr · precondition(W, ∇L¹(W), N) + O(lr²), for any hidden widths (float64, ℓ4 loss)."""
    W, _, _ = make_problem(name, kind)
    k, d = W.shape
    g = torch.Generator().manual_seed(11)
    X = torch.randn(7, d, dtype=F64, generator=g)
    Y = torch.randn(7, k, dtype=F64, generator=g)
    widths = None if widths == "narrow" else 6  # min(k, d) or wider than every shape here
    _, grad = _end_to_end_change(W, X, Y, N, widths, 0.0, p=4)
    target = -precondition(W, grad, N)
    scale = max(target.abs().max().item(), 1e-300)
    errs = []
    for lr in (1e-4, 1e-5):  # relative step sizes: lr · |update| = 1e-4 and 1e-5
        change, _ = _end_to_end_change(W, X, Y, N, widths, lr / scale, p=4)
        errs.append((change - target).abs().max().item() / scale)
    if N == 1 or kind == "zero":  # exactly linear in lr (N = 1), or no motion at all (W = 0, N >= 2)
        assert errs[0] < 1e-10 and errs[1] < 1e-10
        return
    assert errs[0] <= 1e-3  # an O(lr) gap ...
    assert errs[1] <= 0.15 * errs[0] + 1e-10  # ... that shrinks in proportion to lr


# ------------------------------------------------------------------------------ batching, dtype, purity
def _batch(name, dtype):
    Ws, Gs = [], []
    for kind in ("random", "rank_deficient", "zero"):
        if kind == "rank_deficient" and min(SHAPES[name]) < 2:
            continue
        W, G, _ = make_problem(name, kind)
        Ws.append(W)
        Gs.append(G)
    Ws.append(1e3 * Ws[0])  # per-matrix cutoff: a large matrix beside a zero one
    Gs.append(Gs[0])
    return torch.stack(Ws).to(dtype), torch.stack(Gs).to(dtype)


@pytest.mark.parametrize("name,N", SHAPE_DEPTH)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batched_equals_loop(name, N, dtype):
    W, G = _batch(name, dtype)
    out = precondition(W, G, N)
    assert out.shape == W.shape and out.dtype == dtype
    for b in range(W.shape[0]):
        one = precondition(W[b], G[b], N)
        assert_close(out[b], one, 10 * torch.finfo(dtype).eps, scale=max(one.abs().max().item(), 1e-30))
    step = end_to_end_step(W, G, N, 0.1, 0.01)
    for b in range(W.shape[0]):
        assert_close(step[b], end_to_end_step(W[b], G[b], N, 0.1, 0.01), 10 * torch.finfo(dtype).eps)


FUNCTIONS = {
    "precondition": lambda W, G, N: precondition(W, G, N),
    "end_to_end_step": lambda W, G, N: end_to_end_step(W, G, N, 0.1, 0.01),
    "single_output": lambda W, G, N: single_output_precondition(W[:1], G[:1], N),
    "svd_path": lambda W, G, N: _svd_precondition(W, G, N, None),
    "preconditioner_matrix": lambda W, G, N: preconditioner_matrix(W, N),
}


@pytest.mark.parametrize("fn", FUNCTIONS, ids=list(FUNCTIONS))
@pytest.mark.parametrize("name", ["k<d", "k>d", "k=1"])
@pytest.mark.parametrize("N", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inputs_untouched_and_dtype_device_follow(fn, name, N, dtype):
    W, G, _ = make_problem(name, "random")
    W, G = W.to(dtype), G.to(dtype)
    W0, G0 = W.clone(), G.clone()
    out = FUNCTIONS[fn](W, G, N)
    assert torch.equal(W, W0) and torch.equal(G, G0)
    assert out.dtype == dtype and out.device == W.device
    assert out.data_ptr() not in (W.data_ptr(), G.data_ptr())  # a new tensor, even at depth 1


@pytest.mark.parametrize(**case_params(F64_CASES))
def test_end_to_end_step_formula(case):
    """Eq 10: (1 − ηλN) W − η precondition(W, G, N); depth 1 is a plain (weight-decayed) GD step."""
    W, G = case.inputs()
    N, lr, wd = case.depth, 0.05, 0.3
    out = end_to_end_step(W, G, N, lr, wd)
    assert_close(out, (1 - lr * wd * N) * W - lr * precondition(W, G, N), 1e-15)
    assert_close(end_to_end_step(W, G, N, lr), W - lr * precondition(W, G, N), 1e-15)
    if N == 1:
        assert_close(out, W - lr * (G + wd * W), 1e-15)
    assert torch.equal(end_to_end_step(W, G, N, 0.0, wd), W)


def test_rcond_is_honoured():
    """A singular value just above the default cutoff survives; rcond above it removes it."""
    k, d = 4, 4
    U, V = orthogonal(k, torch.Generator().manual_seed(5)), orthogonal(d, torch.Generator().manual_seed(6))
    s = torch.tensor([1.0, 0.5, 1e-9, 0.0], dtype=F64)
    W = (U * s) @ V.T
    G = torch.randn(k, d, dtype=F64, generator=torch.Generator().manual_seed(7))
    keep = exact_precondition(U, s, V, G, 8)
    drop = exact_precondition(U, torch.tensor([1.0, 0.5, 0.0, 0.0], dtype=F64), V, G, 8)
    assert (keep - drop).abs().max() > 1e-3  # (1e-9)^{2/8} ≈ 6e-3 is visible: the test can tell
    assert_close(precondition(W, G, 8), keep, 1e-9)
    assert_close(precondition(W, G, 8, rcond=1e-6), drop, 1e-12)
    assert_close(end_to_end_step(W, G, 8, 1.0, rcond=1e-6), W - drop, 1e-12)


# -------------------------------------------------------------------------------------- hypothesis
@st.composite
def problems(draw):
    k = draw(st.integers(1, 5))
    d = draw(st.integers(1, 5))
    N = draw(st.integers(1, 8))
    rank = draw(st.integers(0, min(k, d)))
    seed = draw(st.integers(0, 2**31 - 1))
    log_scale = draw(st.floats(-3, 3))
    g = torch.Generator().manual_seed(seed)
    U, V = orthogonal(k, g), orthogonal(d, g)
    s = torch.zeros(min(k, d), dtype=F64)
    s[:rank] = torch.rand(rank, dtype=F64, generator=g).add(0.2).mul(10.0**log_scale).sort(descending=True).values
    W = (U[:, : min(k, d)] * s) @ V[:, : min(k, d)].T
    G = torch.randn(k, d, dtype=F64, generator=g)
    return W, G, (U, s, V), N


@settings(max_examples=40, derandomize=True, deadline=None)
@given(problems())
def test_property_exact_and_symmetric(problem):
    W, G, (U, s, V), N = problem
    out = precondition(W, G, N)
    exact = exact_precondition(U, s, V, G, N)
    assert_close(out, exact, 1e-11, scale=max(exact.abs().max().item(), G.abs().max().item()))
    assert_close(precondition(W.T, G.T, N).T, out, 1e-11, scale=max(exact.abs().max().item(), 1e-300))
    # linear in G, positively homogeneous of degree 2 − 2/N in W
    assert_close(precondition(W, 3 * G, N), 3 * out, 1e-11, scale=max(exact.abs().max().item(), 1e-300))
    assert_close(precondition(2 * W, G, N), 2 ** (2 - 2 / N) * out, 1e-11,
                 scale=max(exact.abs().max().item(), 1e-300))


@settings(max_examples=25, derandomize=True, deadline=None)
@given(problems())
def test_property_batched_and_claim1(problem):
    W, G, _, N = problem
    k, d = W.shape
    out = precondition(W, G, N)
    batched = precondition(torch.stack([W, torch.zeros_like(W), W]), torch.stack([G, G, G]), N)
    assert_close(batched[0], out, 1e-12)
    assert_close(batched[2], out, 1e-12)
    assert torch.equal(batched[1], G if N == 1 else torch.zeros_like(G))
    assert_close(unvec(preconditioner_matrix(W, N) @ vec(G), k, d), out, 1e-11,
                 scale=max(out.abs().max().item(), 1e-300))


# ------------------------------------------------------------------------------------------- errors
CORE_ERRORS = [c for c in ERROR_CASES if not c.id.startswith(("lp-", "bf-", "net-", "gram-"))]


@pytest.mark.parametrize("case", CORE_ERRORS, ids=[c.id for c in CORE_ERRORS])
def test_errors(case):
    with pytest.raises(case.exc, match=case.match):
        case.call()


# ---------------------------------------------------------------------------------------------- GPU
@pytest.mark.gpu
@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("N", [1, 2, 3, 8])
@pytest.mark.parametrize("kind", ["random", "rank_deficient", "zero"])
def test_cuda_matches_cpu(name, N, kind):
    if kind == "rank_deficient" and min(SHAPES[name]) < 2:
        pytest.skip("no rank-deficient non-zero W of this shape")
    W, G, _ = make_problem(name, kind)
    cpu = precondition(W, G, N)
    out = precondition(W.cuda(), G.cuda(), N)
    assert out.device.type == "cuda" and out.dtype == F64
    assert_close(out.cpu(), cpu, 1e-12)
    Wb, Gb = _batch(name, torch.float32)
    assert_close(precondition(Wb.cuda(), Gb.cuda(), N).cpu(), precondition(Wb, Gb, N), 1e-4)
