"""overparam.losses.lp_loss against hand computations."""

from __future__ import annotations

import pytest
import torch

from cases import DTYPES, ERROR_CASES, assert_close
from overparam.losses import lp_loss

PRED_1D = [1.0, -2.0, 0.5]
TARGET_1D = [0.0, 1.0, 0.5]  # residuals 1, −3, 0
PRED_2D = [[1.0, 2.0], [0.0, -1.0]]
TARGET_2D = [[0.0, 0.0], [2.0, -1.0]]  # residual rows (1, 2), (−2, 0)

HAND = {  # mean_i (1/p) Σ_out |r|^p, by hand
    ((3,), 1): (1 + 3 + 0) / 1 / 3,
    ((3,), 2): (1 + 9 + 0) / 2 / 3,
    ((3,), 3): (1 + 27 + 0) / 3 / 3,
    ((3,), 4): (1 + 81 + 0) / 4 / 3,
    ((2, 2), 1): ((1 + 2) + (2 + 0)) / 1 / 2,
    ((2, 2), 2): ((1 + 4) + (4 + 0)) / 2 / 2,
    ((2, 2), 3): ((1 + 8) + (8 + 0)) / 3 / 2,
    ((2, 2), 4): ((1 + 16) + (16 + 0)) / 4 / 2,
}


@pytest.mark.parametrize("shape,p", list(HAND), ids=[f"{s}-p{p}" for s, p in HAND])
@pytest.mark.parametrize("dtype", DTYPES)
def test_lp_loss_by_hand(shape, p, dtype):
    pred, target = (PRED_1D, TARGET_1D) if len(shape) == 1 else (PRED_2D, TARGET_2D)
    out = lp_loss(torch.tensor(pred, dtype=dtype), torch.tensor(target, dtype=dtype), p)
    assert out.ndim == 0 and out.dtype == dtype
    assert abs(out.item() - HAND[shape, p]) <= 1e-6 * HAND[shape, p]


def test_column_target_equals_scalar_target():
    """(m, 1) outputs give the same loss as (m,): one output per example."""
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(6, dtype=torch.float64, generator=g), torch.randn(6, dtype=torch.float64, generator=g)
    for p in (1, 2, 3, 4, 2.5):
        assert_close(lp_loss(pred[:, None], target[:, None], p), lp_loss(pred, target, p), 1e-15)


def test_leading_axes_are_averaged():
    g = torch.Generator().manual_seed(1)
    pred, target = torch.randn(3, 5, 2, dtype=torch.float64, generator=g), torch.randn(3, 5, 2, dtype=torch.float64, generator=g)
    each = torch.stack([lp_loss(pred[b], target[b], 4) for b in range(3)])
    assert_close(lp_loss(pred, target, 4), each.mean(), 1e-15)


@pytest.mark.parametrize("p", [2, 4])
def test_gradient_is_the_paper_field(p):
    """∇_W L¹(W) for a linear model: mean_i |r_i|^{p−2} r_i x_iᵀ (r = W x − y), by autograd."""
    g = torch.Generator().manual_seed(2)
    X, Y = torch.randn(7, 4, dtype=torch.float64, generator=g), torch.randn(7, 3, dtype=torch.float64, generator=g)
    W = torch.randn(3, 4, dtype=torch.float64, generator=g).requires_grad_(True)
    (grad,) = torch.autograd.grad(lp_loss(X @ W.T, Y, p), W)
    R = (X @ W.T - Y).detach()
    assert_close(grad, (R.abs().pow(p - 2) * R).T @ X / 7, 1e-13)


def test_inputs_untouched():
    pred, target = torch.tensor(PRED_2D), torch.tensor(TARGET_2D)
    p0, t0 = pred.clone(), target.clone()
    lp_loss(pred, target, 3)
    assert torch.equal(pred, p0) and torch.equal(target, t0)


LOSS_ERRORS = [c for c in ERROR_CASES if c.id.startswith("lp-")]


@pytest.mark.parametrize("case", LOSS_ERRORS, ids=[c.id for c in LOSS_ERRORS])
def test_errors(case):
    with pytest.raises(case.exc, match=case.match):
        case.call()
