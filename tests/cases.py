"""The declarative case table of the core tests (DESIGN principle 7), and the slow literal oracles.

Everything the core suite varies over is listed here once: shapes, depths, kinds of W, dtypes with their
tolerances, and the error cases with the exception and message fragment they must raise. Each property
in tests/test_*.py is written once and parametrized over these tables.

The oracles are deliberately naive — eigendecompositions of the Gram matrices and Kronecker products,
the formulas as printed (Eq 10, Claim 1, Claim 2) — and share no code with the library beyond ``torch``.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from overparam.end_to_end import end_to_end_step, precondition, preconditioner_matrix
from overparam.linalg import gram_power
from overparam.losses import lp_loss
from overparam.models import LinearNetwork
from overparam.theory import balanced_factors

F64 = torch.float64

# ---------------------------------------------------------------------------------------------- axes
SHAPES = {  # (k, d) = (out, in)
    "k=1": (1, 5),
    "k<d": (3, 6),
    "k>d": (6, 3),
    "square": (4, 4),
    "1x1": (1, 1),
    "d=1": (5, 1),
}
DEPTHS = tuple(range(1, 9))
KINDS = ("random", "rank_deficient", "zero")
DTYPES = (torch.float32, torch.float64)
# Max-abs error allowed, relative to the magnitude of the problem (see assert_close).
RTOL = {torch.float64: 1e-12, torch.float32: 2e-5}


def kinds_for(shape) -> tuple[str, ...]:
    """A rank-deficient non-zero W needs min(k, d) >= 2."""
    return KINDS if min(shape) >= 2 else ("random", "zero")


def _seed(*parts) -> int:
    return zlib.crc32(repr(parts).encode())


@dataclass(frozen=True)
class Case:
    shape_name: str
    kind: str
    depth: int
    dtype: torch.dtype

    @property
    def shape(self):
        return SHAPES[self.shape_name]

    @property
    def id(self) -> str:
        return f"{self.shape_name}-{self.kind}-N{self.depth}-{str(self.dtype).removeprefix('torch.')}"

    @property
    def rtol(self) -> float:
        return RTOL[self.dtype]

    def problem(self):
        """(W, G, svd) in float64; svd = (U, s, V) with W = U[:, :r] diag(s) V[:, :r]ᵀ exactly known,
        or None for the "random" kind (a plain Gaussian W)."""
        return make_problem(self.shape_name, self.kind)

    def inputs(self):
        """(W, G) in the case's dtype."""
        W, G, _ = self.problem()
        return W.to(self.dtype), G.to(self.dtype)


def orthogonal(n: int, generator: torch.Generator) -> torch.Tensor:
    """A random n×n orthogonal matrix (QR of a Gaussian), float64."""
    q, r = torch.linalg.qr(torch.randn(n, n, dtype=F64, generator=generator))
    return q * torch.sign(torch.diagonal(r))


@functools.lru_cache(maxsize=None)
def make_problem(shape_name: str, kind: str):
    k, d = SHAPES[shape_name]
    g = torch.Generator().manual_seed(_seed(shape_name, kind))
    G = torch.randn(k, d, dtype=F64, generator=g)
    U, V = orthogonal(k, g), orthogonal(d, g)
    r = min(k, d)
    if kind == "random":
        W = torch.randn(k, d, dtype=F64, generator=g)
        return W, G, None
    s = torch.zeros(r, dtype=F64)
    if kind == "rank_deficient":  # rank r // 2 >= 1, singular values 2 … 0.5, the rest exactly 0
        s[: r // 2] = torch.linspace(2.0, 0.5, r // 2, dtype=F64)
    elif kind != "zero":
        raise ValueError(kind)
    W = (U[:, :r] * s) @ V[:, :r].T
    if kind == "zero":
        W = torch.zeros(k, d, dtype=F64)
    return W, G, (U, s, V)


MATRIX_CASES = [
    Case(name, kind, N, dtype)
    for name in SHAPES
    for kind in kinds_for(SHAPES[name])
    for N in DEPTHS
    for dtype in DTYPES
]
EXACT_CASES = [c for c in MATRIX_CASES if c.kind != "random"]  # an exactly known SVD
F64_CASES = [c for c in MATRIX_CASES if c.dtype == F64]
VECTOR_CASES = [c for c in MATRIX_CASES if 1 in c.shape]  # Claim 2's closed form applies
SHAPE_DEPTH = [(name, N) for name in SHAPES for N in DEPTHS]


def case_params(cases):
    """pytest.mark.parametrize arguments: ``("case", cases, ids=...)``."""
    return dict(argnames="case", argvalues=cases, ids=[c.id for c in cases])


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float, scale: float | None = None):
    """max |actual − expected| <= rtol · scale, scale = max(|expected|, 1) by default (the magnitude)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    err = (actual.to(F64) - expected.to(F64)).abs().max().item() if actual.numel() else 0.0
    if scale is None:
        scale = max(expected.abs().max().item() if expected.numel() else 0.0, 1.0)
    assert err <= rtol * scale, f"max error {err:.3e} > {rtol:.1e} · {scale:.3e}"


# ------------------------------------------------------------------------------------- slow oracles
def literal_gram_power(gram: torch.Tensor, a: float, cutoff: float = 1e-10) -> torch.Tensor:
    """[gram]^a by eigh of the (PSD) Gram matrix, eigenvalues <= cutoff·λ_max set to 0; [·]^0 = I.

    The cutoff is what makes this usable: without it, eigh of a rank-deficient Gram returns ±1e-16
    instead of 0, and (1e-16)^{1/8} = 1e-2 at depth 8 (see test_naive_eigh_reference_is_not_an_oracle).
    """
    n = gram.shape[-1]
    if a == 0:
        return torch.eye(n, dtype=gram.dtype)
    lam, Q = torch.linalg.eigh(gram)
    top = lam.max().clamp_min(0)
    lam = torch.where(lam > cutoff * top, lam, torch.zeros_like(lam))
    return Q @ torch.diag(lam.pow(a)) @ Q.T


def vec_cm(M: torch.Tensor) -> torch.Tensor:
    """Column-major vec, written out: the columns of M stacked."""
    return torch.cat([M[:, c] for c in range(M.shape[1])])


def literal_preconditioner(W: torch.Tensor, N: int, cutoff: float = 1e-10) -> torch.Tensor:
    """Claim 1 / Eq 31: P = Σ_j [WᵀW]^{(N−j)/N} ⊗ [WWᵀ]^{(j−1)/N}, float64, from eigh + kron."""
    W = W.to(F64)
    left, right = W @ W.T, W.T @ W
    return sum(
        torch.kron(literal_gram_power(right, (N - j) / N, cutoff), literal_gram_power(left, (j - 1) / N, cutoff))
        for j in range(1, N + 1)
    )


def literal_precondition(W: torch.Tensor, G: torch.Tensor, N: int, cutoff: float = 1e-10) -> torch.Tensor:
    """Eq 11: unvec(P_W vec(G)), in float64."""
    k, d = W.shape
    v = literal_preconditioner(W, N, cutoff) @ vec_cm(G.to(F64))
    return torch.stack([v[c * k:(c + 1) * k] for c in range(d)], dim=1)


def exact_precondition(U, s, V, G, N: int) -> torch.Tensor:
    """Eq 10 from an exactly known SVD W = U diag(s) Vᵀ (U: k×k, V: d×d, s: min(k, d), zeros allowed):
    [WWᵀ]^a = U diag(s_k^{2a}) Uᵀ with 0^0 = 1 and s padded with zeros to length k (likewise d)."""
    k, d = U.shape[0], V.shape[0]
    sk = torch.zeros(k, dtype=F64)
    sk[: len(s)] = s
    sd = torch.zeros(d, dtype=F64)
    sd[: len(s)] = s

    def power(Q, sv, a):
        return torch.eye(Q.shape[0], dtype=F64) if a == 0 else (Q * sv.pow(2 * a)) @ Q.T

    G = G.to(F64)
    return sum(power(U, sk, (j - 1) / N) @ G @ power(V, sd, (N - j) / N) for j in range(1, N + 1))


def claim1_eigenvalues(W: torch.Tensor, N: int) -> torch.Tensor:
    """Claim 1's eigenvalues Σ_j σ_r^{2(N−j)/N} σ_{r'}^{2(j−1)/N}, r <= k, r' <= d (σ = 0 beyond
    min(k, d), 0^0 = 1), sorted."""
    k, d = W.shape
    s = torch.linalg.svdvals(W.to(F64))
    s = torch.where(s > 1e-10 * s.max().clamp_min(1e-300), s, torch.zeros_like(s))
    sk = torch.zeros(k, dtype=F64)
    sk[: len(s)] = s
    sd = torch.zeros(d, dtype=F64)
    sd[: len(s)] = s

    def pw(x, e):
        return torch.ones_like(x) if e == 0 else x.pow(e)

    lam = sum(pw(sk, 2 * (N - j) / N)[:, None] * pw(sd, 2 * (j - 1) / N)[None, :] for j in range(1, N + 1))
    return lam.flatten().sort().values


# --------------------------------------------------------------------------------------- error cases
@dataclass(frozen=True)
class ErrorCase:
    id: str
    call: Callable[[], Any]  # builds its inputs and calls the function under test
    exc: type
    match: str  # regex fragment of the message (pytest.raises(match=...))


def _z(*shape, dtype=F64):
    return torch.zeros(shape, dtype=dtype)


ERROR_CASES = [
    # precondition / end_to_end_step: tensors
    ErrorCase("W-1d", lambda: precondition(_z(3), _z(3), 2), ValueError, r"W must be 2-D.*shape \(3,\)"),
    ErrorCase("W-4d", lambda: precondition(_z(1, 2, 3, 4), _z(1, 2, 3, 4), 2), ValueError, r"W must be 2-D.*\(1, 2, 3, 4\)"),
    ErrorCase("W-0d", lambda: precondition(_z(), _z(), 2), ValueError, r"W must be 2-D.*shape \(\)"),
    ErrorCase("grad-1d", lambda: precondition(_z(2, 3), _z(6), 2), ValueError, r"grad must be 2-D.*\(6,\)"),
    ErrorCase("shapes-differ", lambda: precondition(_z(2, 3), _z(3, 2), 2), ValueError, r"same shape.*\(2, 3\) and \(3, 2\)"),
    ErrorCase("batch-differ", lambda: precondition(_z(2, 2, 3), _z(3, 2, 3), 2), ValueError, r"same shape"),
    ErrorCase("W-list", lambda: precondition([[1.0, 2.0]], _z(1, 2), 2), TypeError, r"W must be a torch.Tensor, got list"),
    ErrorCase("grad-ndarray", lambda: precondition(_z(1, 2), _z(1, 2).numpy(), 2), TypeError, r"grad must be a torch.Tensor, got ndarray"),
    ErrorCase("W-int", lambda: precondition(torch.zeros(2, 2, dtype=torch.int64), _z(2, 2), 2), TypeError, r"floating dtype, got torch.int64"),
    ErrorCase("W-complex", lambda: precondition(torch.zeros(2, 2, dtype=torch.complex128), _z(2, 2), 2), TypeError, r"floating dtype, got torch.complex128"),
    ErrorCase("dtypes-differ", lambda: precondition(_z(2, 2), _z(2, 2, dtype=torch.float32), 2), TypeError, r"share a dtype"),
    *[
        ErrorCase(f"depth-{depth!r}", (lambda depth=depth: precondition(_z(2, 2), _z(2, 2), depth)), ValueError,
                  rf"depth must be a positive int, got {depth!r}")
        for depth in (0, -1, 2.5, True, "3", None)
    ],
    ErrorCase("step-depth-0", lambda: end_to_end_step(_z(2, 2), _z(2, 2), 0, 0.1), ValueError, r"got 0"),
    ErrorCase("step-lr-neg", lambda: end_to_end_step(_z(2, 2), _z(2, 2), 2, -1.0), ValueError, r"lr.*-1\.0"),
    ErrorCase("step-lr-nan", lambda: end_to_end_step(_z(2, 2), _z(2, 2), 2, float("nan")), ValueError, r"lr.*nan"),
    ErrorCase("step-lr-str", lambda: end_to_end_step(_z(2, 2), _z(2, 2), 2, "0.1"), TypeError, r"lr.*'0\.1'"),
    ErrorCase("step-wd-neg", lambda: end_to_end_step(_z(2, 2), _z(2, 2), 2, 0.1, -0.1), ValueError, r"weight_decay.*-0\.1"),
    ErrorCase("step-W-1d", lambda: end_to_end_step(_z(3), _z(3), 2, 0.1), ValueError, r"W must be 2-D"),
    ErrorCase("P-3d", lambda: preconditioner_matrix(_z(2, 2, 2), 2), ValueError, r"W must be a 2-D.*\(2, 2, 2\)"),
    ErrorCase("P-depth", lambda: preconditioner_matrix(_z(2, 2), 0), ValueError, r"depth.*got 0"),
    ErrorCase("gram-side", lambda: gram_power(_z(2, 2), 0.5, side="middle"), ValueError, r"'middle'"),
    # lp_loss
    ErrorCase("lp-p<1", lambda: lp_loss(_z(3), _z(3), 0.5), ValueError, r"p must be.*>= 1, got 0\.5"),
    ErrorCase("lp-p0", lambda: lp_loss(_z(3), _z(3), 0), ValueError, r"got 0"),
    ErrorCase("lp-p-inf", lambda: lp_loss(_z(3), _z(3), float("inf")), ValueError, r"got inf"),
    ErrorCase("lp-p-str", lambda: lp_loss(_z(3), _z(3), "2"), TypeError, r"got '2'"),
    ErrorCase("lp-p-bool", lambda: lp_loss(_z(3), _z(3), True), TypeError, r"got True"),
    ErrorCase("lp-shapes", lambda: lp_loss(_z(3), _z(4), 2), ValueError, r"same shape.*\(3,\) and \(4,\)"),
    ErrorCase("lp-0d", lambda: lp_loss(_z(), _z(), 2), ValueError, r"0-d"),
    ErrorCase("lp-list", lambda: lp_loss([1.0], _z(1), 2), TypeError, r"got list"),
    # balanced_factors
    ErrorCase("bf-rank", lambda: balanced_factors(torch.eye(3, dtype=F64), 3, [2, 3]), ValueError, r"cannot hold the rank 3"),
    ErrorCase("bf-widths-len", lambda: balanced_factors(torch.eye(3, dtype=F64), 3, [3]), ValueError, r"2 positive ints for depth 3, got \[3\]"),
    ErrorCase("bf-1d", lambda: balanced_factors(_z(3), 2), ValueError, r"W_e must be a 2-D"),
    ErrorCase("bf-depth", lambda: balanced_factors(_z(2, 2), 0), ValueError, r"depth.*got 0"),
    # LinearNetwork
    ErrorCase("net-init", lambda: LinearNetwork(3, 1, 2, init="orthogonal"), ValueError, r"init must be one of.*'orthogonal'"),
    ErrorCase("net-hidden-len", lambda: LinearNetwork(3, 1, 3, hidden=[4]), ValueError, r"2 positive ints for depth 3, got \[4\]"),
    ErrorCase("net-hidden-zero", lambda: LinearNetwork(3, 1, 3, hidden=[4, 0]), ValueError, r"got \[4, 0\]"),
    ErrorCase("net-hidden-float", lambda: LinearNetwork(3, 1, 3, hidden=2.5), TypeError, r"got 2\.5"),
    ErrorCase("net-depth", lambda: LinearNetwork(3, 1, 0), ValueError, r"depth.*got 0"),
    ErrorCase("net-in", lambda: LinearNetwork(0, 1, 2), ValueError, r"in_features.*got 0"),
    ErrorCase("net-out", lambda: LinearNetwork(3, 1.5, 2), ValueError, r"out_features.*got 1\.5"),
    ErrorCase("net-std", lambda: LinearNetwork(3, 1, 2, std=-1.0), ValueError, r"std.*-1\.0"),
    ErrorCase("net-forward", lambda: LinearNetwork(3, 1, 2)(torch.zeros(4, 2)), ValueError, r"last dimension 3.*\(4, 2\)"),
]


def _opt(params=None, **kw):
    from overparam.optim import EndToEnd

    params = [torch.nn.Parameter(torch.zeros(2, 2))] if params is None else params
    return EndToEnd(params, **{"lr": 0.1, "depth": 2, **kw})


def _opt_group(**kw):
    from overparam.optim import EndToEnd

    a, b = torch.nn.Parameter(torch.zeros(2, 2)), torch.nn.Parameter(torch.zeros(2, 2))
    return EndToEnd([{"params": [a]}, {"params": [b], **kw}], lr=0.1, depth=2)


OPTIM_ERROR_CASES = [
    ErrorCase("lr-neg", lambda: _opt(lr=-1.0), ValueError, r"^Invalid learning rate: -1\.0$"),
    ErrorCase("lr-nan", lambda: _opt(lr=float("nan")), ValueError, r"Invalid learning rate: nan"),
    ErrorCase("lr-str", lambda: _opt(lr="0.1"), ValueError, r"Invalid learning rate: '0\.1'"),
    *[
        ErrorCase(f"depth-{depth!r}", (lambda depth=depth: _opt(depth=depth)), ValueError, rf"^Invalid depth: {depth!r}$")
        for depth in (0, -1, 2.5, True, "3")
    ],
    ErrorCase("wd-neg", lambda: _opt(weight_decay=-0.1), ValueError, r"^Invalid weight_decay value: -0\.1$"),
    ErrorCase("rcond-neg", lambda: _opt(rcond=-1e-3), ValueError, r"^Invalid rcond: -0\.001$"),
    ErrorCase("group-lr-neg", lambda: _opt_group(lr=-1.0), ValueError, r"^Invalid learning rate: -1\.0$"),
    ErrorCase("group-depth-0", lambda: _opt_group(depth=0), ValueError, r"^Invalid depth: 0$"),
    ErrorCase("group-wd-neg", lambda: _opt_group(weight_decay=-0.1), ValueError, r"^Invalid weight_decay value: -0\.1$"),
    ErrorCase("complex", lambda: _opt([torch.nn.Parameter(torch.zeros(2, 2, dtype=torch.complex64))]), TypeError,
              r"does not support complex parameters, got torch.complex64"),
]


# --- an independent ℓ4 optimum (the data tests' oracle) -------------------------------------
def l4_optimum(X, y, iters=50):
    """min_w mean((Xw − y)⁴)/4 by damped Newton from the least-squares solution (convex; exact
    Hessian 3·Xᵀdiag(r²)X/m). Independent of overparam.experiments.optimum (BFGS + Newton)."""
    m = len(y)
    w, *_ = np.linalg.lstsq(X, y, rcond=None)
    f = lambda w: np.mean((X @ w - y) ** 4) / 4  # noqa: E731
    for _ in range(iters):
        r = X @ w - y
        g = X.T @ r**3 / m
        if np.linalg.norm(g) < 1e-12:
            break
        p = np.linalg.solve(3 * (X * (r**2)[:, None]).T @ X / m, g)
        t = 1.0
        while f(w - t * p) > f(w) - 0.25 * t * (g @ p) and t > 1e-8:
            t /= 2
        w = w - t * p
    r = X @ w - y
    return np.mean(r**4) / 4, np.linalg.norm(X.T @ r**3 / m)

