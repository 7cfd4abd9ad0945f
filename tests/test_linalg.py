"""overparam.linalg: fractional Gram powers from one SVD, the cutoff, vec/unvec, boundary checks."""

from __future__ import annotations

import pytest
import torch

from cases import (
    ERROR_CASES,
    F64,
    MATRIX_CASES,
    SHAPES,
    assert_close,
    case_params,
    literal_gram_power,
    make_problem,
    orthogonal,
)
from overparam.linalg import (
    check_depth,
    check_nonneg,
    gram_power,
    singular_cutoff,
    svd_powers,
    thin_svd,
    unvec,
    vec,
)

EXPONENTS = (0.0, 1 / 8, 1 / 3, 0.5, 7 / 8, 1.0)
POWER_CASES = [c for c in MATRIX_CASES if c.depth == 1]  # the depth axis is irrelevant here


@pytest.mark.parametrize(**case_params(POWER_CASES))
@pytest.mark.parametrize("a", EXPONENTS)
def test_gram_power_matches_eigh(case, a):
    """[W Wᵀ]^a and [Wᵀ W]^a from the SVD == eigh of the Gram matrix with a cutoff; [·]^0 = I."""
    W64, _, _ = case.problem()
    W, _ = case.inputs()
    left, right = gram_power(W, a, "left"), gram_power(W, a, "right")
    assert left.dtype == case.dtype and left.shape == (W.shape[0],) * 2 and right.shape == (W.shape[1],) * 2
    assert_close(left, literal_gram_power(W64 @ W64.T, a), case.rtol)
    assert_close(right, literal_gram_power(W64.T @ W64, a), case.rtol)


@pytest.mark.parametrize("name", ["k<d", "k>d", "square"])
def test_power_zero_is_identity_not_projector(name):
    """A thin SVD gives U Uᵀ (the projector onto the range) for [W Wᵀ]^0; the paper's [·]^0 is I."""
    W, _, _ = make_problem(name, "rank_deficient")
    k, d = W.shape
    assert_close(gram_power(W, 0, "left"), torch.eye(k, dtype=F64), 1e-14)
    assert_close(gram_power(W, 0, "right"), torch.eye(d, dtype=F64), 1e-14)
    U, Vh, [s0] = svd_powers(W, [0.0])
    assert torch.equal(s0, torch.ones_like(s0))


def test_cutoff_zeroes_rounded_singular_values():
    """σ <= max(k, d)·eps·σ_max counts as 0: at depth 8, (1e-16)^{1/8} would otherwise be 1e-2."""
    g = torch.Generator().manual_seed(0)
    U, V = orthogonal(4, g), orthogonal(4, g)
    s = torch.tensor([1.0, 0.3, 1e-17, 0.0], dtype=F64)
    W = (U * s) @ V.T
    _, _, [p] = svd_powers(W, [1 / 16])  # s^{1/8}
    assert p[2:].abs().max() == 0
    assert_close(p[:2], s[:2].pow(1 / 8), 1e-12)
    # the default cutoff, and an explicit rcond
    S = torch.linalg.svdvals(W)
    assert_close(singular_cutoff(S, W.shape), torch.tensor([4 * torch.finfo(F64).eps]), 1e-16)
    assert_close(singular_cutoff(S, W.shape, rcond=0.5), torch.tensor([0.5]), 1e-15)
    _, _, [p] = svd_powers(W, [0.5], rcond=0.5)  # σ = 0.3 <= 0.5·1: cut
    assert torch.equal(p[1:], torch.zeros(3, dtype=F64))


def test_cutoff_is_per_matrix_in_a_batch():
    W, _, _ = make_problem("square", "rank_deficient")
    batch = torch.stack([W, 1e-6 * W, 1e6 * W])
    _, _, [p] = svd_powers(batch, [0.5])  # σ itself
    for b, c in enumerate((1.0, 1e-6, 1e6)):
        assert_close(p[b], c * torch.tensor([2.0, 0.5, 0.0, 0.0], dtype=F64), 1e-12, scale=c)


@pytest.mark.parametrize("name", list(SHAPES))
def test_svd_powers_full(name):
    """full=True pads with zeros (a > 0) or ones (a = 0) to lengths k and d."""
    W, _, _ = make_problem(name, "random")
    k, d = W.shape
    U, Vh, [(sk0, sd0), (sk, sd)] = svd_powers(W, [0.0, 0.5], full=True)
    assert U.shape == (k, k) and Vh.shape == (d, d)
    assert torch.equal(sk0, torch.ones(k, dtype=F64)) and torch.equal(sd0, torch.ones(d, dtype=F64))
    r = min(k, d)
    S = torch.linalg.svdvals(W)
    assert_close(sk[:r], S, 1e-13) and assert_close(sd[:r], S, 1e-13)
    assert torch.equal(sk[r:], torch.zeros(k - r, dtype=F64)) and torch.equal(sd[r:], torch.zeros(d - r, dtype=F64))


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (5, 3), (2, 4, 3)])
def test_vec_is_column_major_and_unvec_inverts(shape):
    M = torch.arange(float(torch.Size(shape).numel())).reshape(shape)
    v = vec(M)
    k, d = shape[-2:]
    cols = torch.cat([M[..., :, c] for c in range(d)], dim=-1)
    assert torch.equal(v, cols)
    assert torch.equal(unvec(v, k, d), M)


def test_vec_kronecker_identity():
    """vec(A X B) = (Bᵀ ⊗ A) vec(X) — the identity Claim 1 rests on."""
    g = torch.Generator().manual_seed(2)
    A, X, B = (torch.randn(*s, dtype=F64, generator=g) for s in ((3, 3), (3, 4), (4, 4)))
    # .contiguous(): torch.kron raises on a transposed view in torch 2.13 (a torch quirk)
    assert_close(vec(A @ X @ B), torch.kron(B.T.contiguous(), A) @ vec(X), 1e-13)


@pytest.mark.parametrize("depth", [1, 2, 8, torch.tensor(3).item()])
def test_check_depth_accepts_positive_ints(depth):
    assert check_depth(depth) == depth and type(check_depth(depth)) is int


@pytest.mark.parametrize("value,ok", [(0, True), (0.5, True), (3, True), (-0.1, False), (float("nan"), False),
                                      (float("inf"), False), ("1", False), (True, False), (None, False)])
def test_check_nonneg(value, ok):
    if ok:
        assert check_nonneg(value, "x") == float(value)
    else:
        with pytest.raises((ValueError, TypeError), match=rf"^x must be .*got {value!r}"):
            check_nonneg(value, "x")


LINALG_ERRORS = [c for c in ERROR_CASES if c.id.startswith(("depth-", "gram-"))]


@pytest.mark.parametrize("case", LINALG_ERRORS, ids=[c.id for c in LINALG_ERRORS])
def test_errors(case):
    with pytest.raises(case.exc, match=case.match):
        case.call()


@pytest.mark.parametrize("shape", [(3, 6), (6, 3), (4, 4), (2, 9), (9, 2), (1, 5), (5, 1), (2, 4, 8)])
@pytest.mark.parametrize("rank", ["full", "deficient"])
def test_thin_svd(shape, rank):
    """thin_svd (QR first for long matrices, direct SVD otherwise) is a thin SVD of W."""
    g = torch.Generator().manual_seed(9)
    W = torch.randn(*shape, dtype=F64, generator=g)
    if rank == "deficient":
        W = W[..., :, :1] @ W[..., :1, :]  # rank 1
    U, S, Vh = thin_svd(W)
    r = min(shape[-2:])
    assert U.shape == (*shape[:-1], r) and S.shape == (*shape[:-2], r) and Vh.shape == (*shape[:-2], r, shape[-1])
    assert_close(U @ torch.diag_embed(S) @ Vh, W, 1e-13)
    eye = torch.eye(r, dtype=F64).expand(*shape[:-2], r, r)
    assert_close(U.transpose(-1, -2) @ U, eye, 1e-13)
    assert_close(Vh @ Vh.transpose(-1, -2), eye, 1e-13)
    assert_close(S, torch.linalg.svdvals(W), 1e-13)
