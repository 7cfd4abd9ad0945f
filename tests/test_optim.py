"""overparam.optim.EndToEnd: Eq 10 as a torch.optim.Optimizer."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from cases import DEPTHS, F64, OPTIM_ERROR_CASES, assert_close
from overparam.end_to_end import end_to_end_step, precondition
from overparam.losses import lp_loss
from overparam.models import LinearNetwork
from overparam.optim import EndToEnd, end_to_end
from overparam.theory import balanced_factors


def small_model(dtype=F64, seed=0):
    """A conv kernel (4-D), linear weights (2-D), biases (1-D) and a scalar (0-d) parameter."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5), nn.Tanh(),
                          nn.Linear(5, 1))
    model.register_parameter("scale", nn.Parameter(torch.tensor(1.5)))
    return model.to(dtype)


def batch(dtype=F64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 2, 6, 6, generator=g).to(dtype), torch.randn(8, 1, generator=g).to(dtype)


def loss_of(model, x, y):
    return lp_loss(model.scale * model(x), y, 2)


def train(model, opt, steps, dtype=F64):
    x, y = batch(dtype)
    for _ in range(steps):
        opt.zero_grad()
        loss_of(model, x, y).backward()
        opt.step()


# ------------------------------------------------------------------------------ depth 1 is torch SGD
@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_depth1_is_sgd_bit_for_bit(dtype, wd):
    a, b = small_model(dtype), small_model(dtype)
    train(a, torch.optim.SGD(a.parameters(), lr=0.05, weight_decay=wd), 6, dtype)
    train(b, EndToEnd(b.parameters(), lr=0.05, depth=1, weight_decay=wd), 6, dtype)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name


def test_depth1_is_sgd_with_param_groups():
    a, b = small_model(), small_model()
    groups = lambda m: [{"params": m[0].parameters(), "lr": 0.01, "weight_decay": 0.2},  # noqa: E731
                        {"params": [*m[3].parameters(), *m[5].parameters(), m.scale]}]
    train(a, torch.optim.SGD(groups(a), lr=0.05, weight_decay=0.01), 4)
    train(b, EndToEnd(groups(b), lr=0.05, depth=1, weight_decay=0.01), 4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


# --------------------------------------------------------------------------- depth N is Eq 10 per matrix
@pytest.mark.parametrize("N", DEPTHS)
@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_matches_end_to_end_step(N, wd):
    """Matrices (ndim >= 2, viewed as (shape[0], −1)) take end_to_end_step; biases and scalars SGD."""
    model = small_model()
    x, y = batch()
    loss_of(model, x, y).backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    EndToEnd(model.parameters(), lr=0.05, depth=N, weight_decay=wd).step()
    for n, p in model.named_parameters():
        W, G = before[n], grads[n]
        if W.ndim >= 2:
            expect = end_to_end_step(W.reshape(W.shape[0], -1), G.reshape(W.shape[0], -1), N, 0.05, wd).reshape(W.shape)
        else:
            expect = W - 0.05 * (G + wd * W)
        assert_close(p.detach(), expect, 1e-15, scale=1.0)
        assert torch.equal(p.grad, G)  # gradients never mutated


def test_bias_and_scalar_get_plain_sgd_and_leave_zero():
    """Not Claim 2 on a 1×n 'matrix': a zero bias moves (Claim 2's update at W = 0 is exactly 0)."""
    bias = nn.Parameter(torch.zeros(4, dtype=F64))
    scalar = nn.Parameter(torch.tensor(0.0, dtype=F64))
    bias.grad = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=F64)
    scalar.grad = torch.tensor(3.0, dtype=F64)
    EndToEnd([bias, scalar], lr=0.1, depth=4, weight_decay=0.5).step()
    assert torch.equal(bias.detach(), -0.1 * torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=F64))
    assert torch.equal(scalar.detach(), -0.1 * torch.tensor(3.0, dtype=F64))
    row = nn.Parameter(torch.zeros(1, 4, dtype=F64))  # the same numbers as a 1×4 matrix: Eq 10
    row.grad = bias.grad[None].clone()
    EndToEnd([row], lr=0.1, depth=4).step()
    assert torch.equal(row.detach(), torch.zeros(1, 4, dtype=F64))


def test_conv_kernel_is_out_by_fan_in():
    conv = nn.Conv2d(3, 4, 2).double()
    W0 = conv.weight.detach().clone()
    conv.weight.grad = torch.randn_like(W0)
    EndToEnd([conv.weight], lr=0.1, depth=3).step()
    expect = end_to_end_step(W0.reshape(4, 12), conv.weight.grad.reshape(4, 12), 3, 0.1).reshape(4, 3, 2, 2)
    assert_close(conv.weight.detach(), expect, 1e-15)


def test_non_contiguous_and_empty_parameters():
    W = nn.Parameter(torch.randn(5, 3, dtype=F64).T)  # (3, 5), not contiguous
    W0 = W.detach().clone()
    W.grad = torch.randn(3, 5, dtype=F64)
    empty = nn.Parameter(torch.zeros(0, 3, dtype=F64))
    empty.grad = torch.zeros(0, 3, dtype=F64)
    EndToEnd([W, empty], lr=0.1, depth=3).step()
    assert not W.is_contiguous()
    assert_close(W.detach(), end_to_end_step(W0, W.grad, 3, 0.1), 1e-15)
    assert empty.shape == (0, 3)


def test_functional_form():
    g = torch.Generator().manual_seed(3)
    W, G = torch.randn(3, 4, dtype=F64, generator=g), torch.randn(3, 4, dtype=F64, generator=g)
    p = W.clone()
    end_to_end([p], [G], lr=0.1, depth=5, weight_decay=0.02)
    assert_close(p, end_to_end_step(W, G, 5, 0.1, 0.02), 1e-15)


@pytest.mark.parametrize("rcond", [None, 1e-3])
def test_rcond_group_option(rcond):
    g = torch.Generator().manual_seed(4)
    U, _ = torch.linalg.qr(torch.randn(4, 4, dtype=F64, generator=g))
    W0 = (U * torch.tensor([1.0, 0.5, 1e-5, 0.0], dtype=F64)) @ U.T  # one σ between the two cutoffs
    G = torch.randn(4, 4, dtype=F64, generator=g)
    p = nn.Parameter(W0.clone())
    p.grad = G
    EndToEnd([p], lr=0.1, depth=8, rcond=rcond).step()
    assert_close(p.detach(), end_to_end_step(W0, G, 8, 0.1, rcond=rcond), 1e-15)
    other = end_to_end_step(W0, G, 8, 0.1, rcond=1e-3 if rcond is None else None)
    assert (p.detach() - other).abs().max() > 1e-3  # the option makes a difference here


# ------------------------------------------------------------------------------- against a deep network
def test_tracks_a_real_deep_network_with_weight_decay():
    """EndToEnd(depth=N, weight_decay=λ) on W_e follows SGD(weight_decay=λ) on every factor of a balanced
    depth-N LinearNetwork (Eq 4 → Eq 10): the gap after T steps is O(lr²)·T."""
    N, T, wd = 3, 5, 0.5
    g = torch.Generator().manual_seed(5)
    X, Y = torch.randn(10, 4, dtype=F64, generator=g), torch.randn(10, 2, dtype=F64, generator=g)
    W0 = torch.randn(2, 4, dtype=F64, generator=g)
    gaps = []
    for lr in (1e-3, 1e-4):
        net = LinearNetwork(4, 2, N, hidden=5, dtype=F64)
        with torch.no_grad():
            for P, F in zip(net.factors, balanced_factors(W0, N, 5, generator=torch.Generator().manual_seed(6))):
                P.copy_(F)
        W = nn.Parameter(net.end_to_end().detach().clone())
        sgd, e2e = torch.optim.SGD(net.parameters(), lr=lr, weight_decay=wd), EndToEnd([W], lr=lr, depth=N, weight_decay=wd)
        for _ in range(T):
            sgd.zero_grad()
            lp_loss(net(X), Y, 4).backward()
            sgd.step()
            e2e.zero_grad()
            lp_loss(X @ W.T, Y, 4).backward()
            e2e.step()
        moved = (W.detach() - W0).abs().max().item()
        gaps.append((net.end_to_end().detach() - W.detach()).abs().max().item() / moved)
    assert gaps[0] < 0.05  # small relative to the motion …
    assert gaps[1] < 0.2 * gaps[0]  # … and shrinking with lr


# ------------------------------------------------------------------------------ torch.optim conventions
def test_defaults_and_param_groups():
    a, b = nn.Parameter(torch.randn(3, 3)), nn.Parameter(torch.randn(2, 3))
    opt = EndToEnd([{"params": [a]}, {"params": [b], "depth": 1, "lr": 0.5, "rcond": 1e-4}], lr=0.1, depth=3,
                   weight_decay=0.01)
    assert opt.defaults == dict(lr=0.1, depth=3, weight_decay=0.01, rcond=None, momentum=0.0)
    g0, g1 = opt.param_groups
    assert (g0["lr"], g0["depth"], g0["weight_decay"], g0["rcond"]) == (0.1, 3, 0.01, None)
    assert (g1["lr"], g1["depth"], g1["weight_decay"], g1["rcond"]) == (0.5, 1, 0.01, 1e-4)
    c = nn.Parameter(torch.randn(4))
    opt.add_param_group({"params": c, "depth": 2})  # a bare tensor, as torch allows
    assert opt.param_groups[2]["params"] == [c] and opt.param_groups[2]["depth"] == 2
    with pytest.raises(ValueError, match="^Invalid depth: 0$"):
        opt.add_param_group({"params": [nn.Parameter(torch.randn(2))], "depth": 0})
    assert len(opt.param_groups) == 3  # a rejected group is not added
    with pytest.raises(TypeError):  # torch's own check: sets are unordered
        opt.add_param_group({"params": {nn.Parameter(torch.randn(2))}})


def test_per_group_depth_and_lr_are_used():
    g = torch.Generator().manual_seed(7)
    W0 = [torch.randn(3, 4, dtype=F64, generator=g) for _ in range(2)]
    G = [torch.randn(3, 4, dtype=F64, generator=g) for _ in range(2)]
    ps = [nn.Parameter(W.clone()) for W in W0]
    for p, grad in zip(ps, G):
        p.grad = grad
    EndToEnd([{"params": [ps[0]]}, {"params": [ps[1]], "depth": 5, "lr": 0.02, "weight_decay": 0.3}],
             lr=0.1, depth=2).step()
    assert_close(ps[0].detach(), end_to_end_step(W0[0], G[0], 2, 0.1), 1e-15)
    assert_close(ps[1].detach(), end_to_end_step(W0[1], G[1], 5, 0.02, 0.3), 1e-15)


def test_lr_scheduler_drives_group_lr():
    model = small_model()
    opt = EndToEnd(model.parameters(), lr=0.1, depth=2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    x, y = batch()
    for _ in range(3):
        opt.zero_grad()
        loss_of(model, x, y).backward()
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0125)


def test_state_dict_round_trip():
    """Save mid-training, load into a fresh model and optimizer, continue: identical to not stopping."""
    groups = lambda m: [{"params": [m[0].weight, m[3].weight], "depth": 3},  # noqa: E731
                        {"params": [m[0].bias, m[3].bias, m[5].weight, m[5].bias, m.scale], "lr": 0.02}]
    a = small_model()
    opt_a = EndToEnd(groups(a), lr=0.05, depth=2, weight_decay=0.01)
    train(a, opt_a, 3)
    opt_a.param_groups[1]["lr"] = 0.03  # a changed hyperparameter must travel with the state
    buf = io.BytesIO()
    torch.save({"model": a.state_dict(), "opt": opt_a.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)

    b = small_model(seed=123)  # different weights, replaced by the checkpoint
    b.load_state_dict(saved["model"])
    opt_b = EndToEnd(groups(b), lr=0.05, depth=2, weight_decay=0.01)
    opt_b.load_state_dict(saved["opt"])
    assert opt_b.param_groups[1]["lr"] == 0.03 and opt_b.param_groups[0]["depth"] == 3
    assert [s["step"] for s in opt_b.state.values()] == [3] * len(opt_b.state)
    train(a, opt_a, 3)
    train(b, opt_b, 3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert opt_a.state_dict()["state"] == opt_b.state_dict()["state"]


def test_closure():
    """step(closure) re-evaluates under enable_grad (even inside no_grad), steps, returns the loss."""
    model, ref = small_model(), small_model()
    x, y = batch()
    opt = EndToEnd(model.parameters(), lr=0.05, depth=3)
    calls = []

    def closure():
        calls.append(torch.is_grad_enabled())
        opt.zero_grad()
        loss = loss_of(model, x, y)
        loss.backward()
        return loss

    with torch.no_grad():
        loss = opt.step(closure)
    assert calls == [True]
    ref_opt = EndToEnd(ref.parameters(), lr=0.05, depth=3)
    ref_loss = loss_of(ref, x, y)
    ref_loss.backward()
    ref_opt.step()
    assert torch.equal(loss.detach(), ref_loss.detach())
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), ref.parameters()))


def test_step_returns_none_without_closure_and_builds_no_graph():
    p = nn.Parameter(torch.randn(3, 3))
    p.grad = torch.randn(3, 3)
    assert EndToEnd([p], lr=0.1, depth=2).step() is None
    assert p.grad_fn is None and p.is_leaf and p.requires_grad


def test_params_without_grad_are_skipped():
    a, b = nn.Parameter(torch.randn(3, 3)), nn.Parameter(torch.randn(4))
    a0, b0 = a.detach().clone(), b.detach().clone()
    a.grad = torch.randn(3, 3)
    opt = EndToEnd([a, b], lr=0.1, depth=2, weight_decay=0.5)
    opt.step()
    assert torch.equal(b.detach(), b0) and not torch.equal(a.detach(), a0)
    assert b not in opt.state and opt.state[a]["step"] == 1


def test_gradients_never_mutated():
    model = small_model()
    x, y = batch()
    loss_of(model, x, y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    ptrs = [p.grad.data_ptr() for p in model.parameters()]
    EndToEnd(model.parameters(), lr=0.05, depth=4, weight_decay=0.1).step()
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    assert [p.grad.data_ptr() for p in model.parameters()] == ptrs


def test_sparse_gradients_rejected():
    emb = nn.Embedding(10, 3, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    assert emb.weight.grad.is_sparse
    dense = nn.Parameter(torch.randn(2, 2))
    dense.grad = torch.randn(2, 2)
    dense0, w0 = dense.detach().clone(), emb.weight.detach().clone()
    opt = EndToEnd([{"params": [dense]}, {"params": emb.parameters()}], lr=0.1, depth=2)
    with pytest.raises(RuntimeError, match="does not support sparse gradients"):
        opt.step()
    assert torch.equal(dense.detach(), dense0) and torch.equal(emb.weight.detach(), w0)  # nothing moved
    assert len(opt.state) == 0


@pytest.mark.parametrize("case", OPTIM_ERROR_CASES, ids=[c.id for c in OPTIM_ERROR_CASES])
def test_errors(case):
    with pytest.raises(case.exc, match=case.match):
        case.call()


@pytest.mark.gpu
@pytest.mark.parametrize("N", [1, 3])
def test_cuda_matches_cpu(N):
    a = small_model()
    b = copy.deepcopy(a).cuda()
    x, y = batch()
    for model, xx, yy in ((a, x, y), (b, x.cuda(), y.cuda())):
        opt = EndToEnd(model.parameters(), lr=0.05, depth=N, weight_decay=0.01)
        for _ in range(3):
            opt.zero_grad()
            loss_of(model, xx, yy).backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        assert q.device.type == "cuda"
        assert_close(q.detach().cpu(), p.detach(), 1e-10)


# --- momentum (heavy ball on the preconditioned direction) -------------------------------------

def _momentum_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)).double()


def _train(model, opt, steps=5):
    torch.manual_seed(1)
    x, y = torch.randn(16, 6, dtype=torch.float64), torch.randn(16, 3, dtype=torch.float64)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_momentum_depth1_equals_torch_sgd_momentum(weight_decay):
    a, b = _momentum_model(), _momentum_model()
    ours = _train(a, EndToEnd(a.parameters(), lr=0.05, depth=1, momentum=0.9, weight_decay=weight_decay))
    ref = _train(b, torch.optim.SGD(b.parameters(), lr=0.05, momentum=0.9, weight_decay=weight_decay))
    for p, q in zip(ours, ref):
        assert torch.equal(p, q)


def test_momentum_accumulates_preconditioned_direction():
    W = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    G = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    p = torch.nn.Parameter(W.clone())
    opt = EndToEnd([p], lr=0.1, depth=3, momentum=0.5)
    expected = W.clone()
    buf = None
    for _ in range(3):
        p.grad = G.clone()
        d = precondition(p.detach(), G, 3)
        buf = d if buf is None else 0.5 * buf + d
        expected = p.detach() - 0.1 * buf
        opt.step()
        torch.testing.assert_close(p.detach(), expected, rtol=1e-13, atol=1e-13)
    assert "momentum_buffer" in opt.state[p]
    # the buffer survives a state_dict round trip
    q = torch.nn.Parameter(p.detach().clone())
    opt2 = EndToEnd([q], lr=0.1, depth=3, momentum=0.5)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # as after torch.save/load
    p.grad = G.clone(); q.grad = G.clone()
    opt.step(); opt2.step()
    assert torch.equal(p, q)


def test_invalid_momentum():
    with pytest.raises(ValueError, match="Invalid momentum value: -0.5"):
        EndToEnd([torch.nn.Parameter(torch.zeros(2, 2))], lr=0.1, depth=2, momentum=-0.5)
