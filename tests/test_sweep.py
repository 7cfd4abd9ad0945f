"""The batched sweep engine against independent per-configuration loops (autograd, torch.optim, Eq 10)."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from overparam.end_to_end import end_to_end_step
from overparam.losses import lp_loss
from overparam.models import LinearNetwork
from overparam.sweep import RunSpec, SweepResult, run_sweep

F64 = torch.float64
RTOL = 1e-10



@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(40, 6, generator=g, dtype=F64)
    y = X @ torch.randn(6, 1, generator=g, dtype=F64) + 0.3 * torch.randn(40, 1, generator=g, dtype=F64)
    return X, y


def _net(spec: RunSpec, d: int, k: int) -> LinearNetwork:
    return LinearNetwork(d, k, spec.depth, list(spec.widths) if spec.depth > 1 else None, spec.init,
                         std=spec.init_std, generator=torch.Generator().manual_seed(spec.seed), dtype=F64)


def _torch_loop(spec: RunSpec, X, y, steps: int, p: float, scale: float = 1.0):
    """The plain per-configuration loop: LinearNetwork + autograd + torch.optim (on scale · L¹)."""
    net = _net(spec, X.shape[1], y.shape[1])
    opts = spec.optimizer_options()
    cls = {"gd": torch.optim.SGD, "adagrad": torch.optim.Adagrad, "adadelta": torch.optim.Adadelta,
           "adam": torch.optim.Adam}[spec.method]
    opt = cls(net.parameters(), lr=spec.lr, weight_decay=spec.weight_decay, **opts)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = lp_loss(net(X), y, p)
        losses.append(loss.item())
        (scale * loss).backward()
        opt.step()
    with torch.no_grad():
        losses.append(lp_loss(net(X), y, p).item())
        return torch.tensor(losses, dtype=F64), net.end_to_end().detach()


def _close(a, b, rtol=RTOL):
    torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * float(b.abs().max()))


def _check_against_loops(res: SweepResult, X, y, steps, p, scale=1.0):
    for i, spec in enumerate(res.specs):
        ref_losses, ref_W = _torch_loop(spec, X, y, steps, p, scale)
        _close(res.losses[i], ref_losses)
        _close(res.final_W[i], ref_W)


GD_SPECS = [
    RunSpec("d1", depth=1, lr=0.02, weight_decay=0.01, seed=1),
    RunSpec("d2-h1", depth=2, hidden=1, lr=0.02, init_std=0.5, seed=2),
    RunSpec("d2-h5-wd", depth=2, hidden=5, lr=0.02, weight_decay=0.05, init_std=0.5, seed=3),
    RunSpec("d3-h1-wd", depth=3, hidden=1, lr=0.01, weight_decay=0.02, init_std=0.7, seed=4),
    RunSpec("d3-h(4,3)", depth=3, hidden=(4, 3), lr=0.01, init_std=0.5, seed=5),
    RunSpec("d3-identity", depth=3, hidden=6, lr=0.005, init="identity", seed=6),
]


@pytest.mark.parametrize("p", [2, 4, 3])
def test_gd_equals_autograd_loop(data, p):
    X, y = data
    specs = GD_SPECS if p != 4 else [dataclasses.replace(s, lr=s.lr / 10) for s in GD_SPECS]
    res = run_sweep(X, y, specs, steps=30, p=p, record_every=1, progress=False)
    assert res.diverged_at == [None] * len(specs)
    assert res.steps.tolist() == list(range(31))
    _check_against_loops(res, X, y, 30, p)


def test_sufficient_statistics_equal_direct_path(data):
    X, y = data
    a = run_sweep(X, y, GD_SPECS, steps=40, p=2, record_every=5, progress=False, sufficient_stats=True)
    b = run_sweep(X, y, GD_SPECS, steps=40, p=2, record_every=5, progress=False, sufficient_stats=False)
    _close(a.losses, b.losses, 1e-11)
    _close(a.final_W, b.final_W, 1e-11)
    with pytest.raises(ValueError, match="sufficient_stats"):
        run_sweep(X, y, GD_SPECS[:1], steps=1, p=4, sufficient_stats=True, progress=False)


OPT_SPECS = [
    RunSpec("adagrad-d1", method="adagrad", lr=0.05, seed=1),
    RunSpec("adagrad-d2-opts", method="adagrad", depth=2, hidden=3, lr=0.05, weight_decay=0.01, init_std=0.3,
            options=(("lr_decay", 0.01), ("initial_accumulator_value", 0.1), ("eps", 1e-8)), seed=2),
    RunSpec("adadelta-d1", method="adadelta", lr=1.0, seed=3),
    RunSpec("adadelta-d3", method="adadelta", depth=3, hidden=1, lr=0.5, weight_decay=0.01, init_std=0.5,
            options=(("rho", 0.8),), seed=4),
    RunSpec("adam-d1", method="adam", lr=0.01, seed=5),
    RunSpec("adam-d2", method="adam", depth=2, hidden=4, lr=0.01, weight_decay=0.02, init_std=0.3, seed=6),
    RunSpec("adam-d3-opts", method="adam", depth=3, hidden=1, lr=0.003, init_std=0.5,
            options=(("betas", (0.8, 0.99)), ("eps", 1e-6)), seed=7),
]


@pytest.mark.parametrize("p", [2, 4])
def test_adaptive_methods_equal_torch_optim(data, p):
    X, y = data
    res = run_sweep(X, y, OPT_SPECS, steps=50, p=p, record_every=1, progress=False)
    assert res.diverged_at == [None] * len(OPT_SPECS)
    _check_against_loops(res, X, y, 50, p)


@pytest.mark.parametrize("k", [1, 2])
def test_emulation_equals_end_to_end_step_loop(data, k):
    X, y = data
    if k == 2:
        y = torch.cat([y, -0.5 * y + X[:, :1]], dim=1)
    specs = [RunSpec("e2", depth=2, hidden=3, method="emulation", lr=0.01, init_std=0.5, seed=1),
             RunSpec("e3-wd", depth=3, hidden=1, method="emulation", lr=0.01, weight_decay=0.03, init_std=0.7, seed=2),
             RunSpec("e1", depth=1, method="emulation", lr=0.02, seed=3)]
    steps, p = 25, 4 if k == 1 else 2
    res = run_sweep(X, y, specs, steps=steps, p=p, record_every=1, progress=False)
    for i, s in enumerate(specs):
        W = _net(s, X.shape[1], k).end_to_end().detach()  # the same start as "gd" with this spec
        ref = []
        for _ in range(steps + 1):
            Wg = W.clone().requires_grad_(True)
            loss = lp_loss(X @ Wg.T, y, p)
            ref.append(loss.item())
            (G,) = torch.autograd.grad(loss, Wg)
            W = end_to_end_step(W, G, s.depth, s.lr, s.weight_decay)
        _close(res.losses[i], torch.tensor(ref, dtype=F64))


def test_emulation_starts_at_the_networks_end_to_end_matrix(data):
    X, y = data
    specs = [RunSpec("gd", depth=3, hidden=1, init_std=0.5, seed=9),
             RunSpec("emu", depth=3, hidden=1, method="emulation", init_std=0.5, seed=9)]
    res = run_sweep(X, y, specs, steps=0, p=2, progress=False)
    torch.testing.assert_close(res.final_W[0], res.final_W[1], rtol=0, atol=0)


def test_divergence_frozen_and_recorded_without_stopping_others(data):
    X, y = data
    good = RunSpec("good", depth=2, lr=0.01, init_std=0.5)
    specs = [RunSpec("bad", depth=1, lr=5.0), good, RunSpec("bad-adam", method="adam", lr=1e3, depth=2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = run_sweep(X, y, specs, steps=60, p=4, record_every=10, progress=False, divergence_factor=1e3)
    assert res.diverged_at[1] is None
    assert res.diverged_at[0] == 10
    for i in (0, 2):
        at = res.diverged_at[i]
        assert at is not None
        j = res.steps.tolist().index(at)
        assert not (res.losses[i, j] <= 1e3 * res.losses[i, 0])  # the offending value is kept
        assert torch.isnan(res.losses[i, j + 1:]).all()
    solo = run_sweep(X, y, [good], steps=60, p=4, record_every=10, progress=False)
    _close(res.loss("good"), solo.loss("good"), 1e-12)
    assert torch.isfinite(res.losses[1]).all()


def test_determinism_and_independence_of_the_rest_of_the_sweep(data):
    X, y = data
    s = RunSpec("x", depth=3, hidden=2, lr=0.01, init_std=0.5, seed=11)
    others = [RunSpec(f"o{i}", depth=1 + i % 3, lr=0.01, seed=i, method=("gd", "adam")[i % 2]) for i in range(5)]
    a = run_sweep(X, y, [s], steps=20, p=4, progress=False)
    b = run_sweep(X, y, [s], steps=20, p=4, progress=False)
    assert torch.equal(a.losses, b.losses) and torch.equal(a.final_W, b.final_W)
    c = run_sweep(X, y, others[:3] + [s] + others[3:], steps=20, p=4, progress=False)
    _close(c.loss("x"), a.loss("x"), 1e-12)
    _close(c.final_W[3], a.final_W[0], 1e-12)
    assert c.index("x") == 3


def test_checkpoint_resume_is_bitwise_equal(data, tmp_path):
    X, y = data
    specs = GD_SPECS[:3] + OPT_SPECS[4:6] + [RunSpec("emu", method="emulation", depth=2, lr=0.01, init_std=0.5),
                                             RunSpec("bad", lr=5.0)]
    kw = dict(steps=100, p=4, record_every=7, progress=False)
    full = run_sweep(X, y, specs, **kw)
    ck = tmp_path / "sweep.ckpt"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(X, y, specs, checkpoint=ck, _stop_after=37, **kw)
    assert ck.exists()
    seen = []

    def cb(step, losses):
        seen.append(step)
        if step == 70:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(X, y, specs, checkpoint=ck, callback=cb, **kw)
    assert seen[0] == 42 and seen[-1] == 70  # resumed after 37: first record step 42
    resumed = run_sweep(X, y, specs, checkpoint=ck, **kw)
    assert torch.equal(resumed.losses.nan_to_num(-1.0), full.losses.nan_to_num(-1.0))
    assert torch.equal(resumed.final_W.nan_to_num(-1.0), full.final_W.nan_to_num(-1.0))
    assert resumed.diverged_at == full.diverged_at
    again = run_sweep(X, y, specs, checkpoint=ck, **kw)  # finished checkpoint: nothing left to run
    assert torch.equal(again.final_W.nan_to_num(-1.0), full.final_W.nan_to_num(-1.0))
    with pytest.raises(ValueError, match="steps"):
        run_sweep(X, y, specs, checkpoint=ck, **{**kw, "steps": 101})
    with pytest.raises(ValueError, match="X"):
        run_sweep(X + 1, y, specs, checkpoint=ck, **kw)
    with pytest.raises(ValueError, match="specs"):
        run_sweep(X, y, specs[:-1], checkpoint=ck, **kw)


def test_recording_and_float32(data):
    X, y = data
    res = run_sweep(X.float(), y.float(), [RunSpec("a", depth=2, lr=0.01)], steps=2500, p=2, progress=False,
                    dtype=torch.float32)
    assert res.steps[0] == 0 and res.steps[-1] == 2500 and int(res.steps[1]) == 2
    assert res.losses.dtype == F64 and res.final_W.dtype == torch.float32
    assert res.losses.shape == (1, len(res.steps))
    r2 = run_sweep(X, y, [RunSpec("a", depth=2, lr=0.01)], steps=10, p=2, record_every=4, progress=False)
    assert r2.steps.tolist() == [0, 4, 8, 10]
    W0 = _net(RunSpec("a", depth=2), 6, 1).end_to_end().detach()
    _close(r2.losses[0, 0], lp_loss(X @ W0.T, y, 2))


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="sgd"), "method"),
    (dict(depth=0), "depth"),
    (dict(depth=2.0), "depth"),
    (dict(lr=-1.0), "lr"),
    (dict(lr=float("nan")), "lr"),
    (dict(weight_decay=-0.1), "weight_decay"),
    (dict(init="zeros"), "init"),
    (dict(depth=3, hidden=(2,)), "hidden"),
    (dict(method="adam", options=(("rho", 0.9),)), "rho"),
    (dict(method="adam", options=(("betas", (0.9, 1.5)),)), "betas"),
    (dict(method="gd", options=(("eps", 1e-8),)), "eps"),
    (dict(name=""), "name"),
])
def test_bad_specs(kwargs, match):
    kw = {"name": "s", **kwargs}
    with pytest.raises(ValueError, match=match):
        RunSpec(**kw)


def test_bad_arguments(data):
    X, y = data
    s = [RunSpec("a")]
    cases = [
        (dict(X=X[:-1]), "rows"),
        (dict(X=X[0]), "X"),
        (dict(y=y.long()), "y"),
        (dict(steps=-1), "steps"),
        (dict(record_every=0), "record_every"),
        (dict(p=0.5), "p"),
        (dict(specs=[]), "specs"),
        (dict(specs=[RunSpec("a"), RunSpec("a", lr=0.1)]), "unique"),
        (dict(specs=["a"]), "RunSpec"),
        (dict(dtype=torch.float16), "dtype"),
    ]
    for over, match in cases:
        kw = dict(X=X, y=y, specs=s, steps=3, p=2, progress=False)
        kw.update(over)
        with pytest.raises(ValueError, match=match):
            run_sweep(kw.pop("X"), kw.pop("y"), kw.pop("specs"), **kw)


def test_user_tensors_untouched_and_1d_targets(data):
    X, y = data
    X0, y0 = X.clone(), y.clone()
    a = run_sweep(X, y[:, 0], [RunSpec("a", depth=1, lr=0.01)], steps=5, p=4, progress=False)
    b = run_sweep(X, y, [RunSpec("a", depth=1, lr=0.01)], steps=5, p=4, progress=False)
    assert torch.equal(X, X0) and torch.equal(y, y0)
    assert torch.equal(a.losses, b.losses)


def test_multi_output_targets(data):
    X, y = data
    Y = torch.cat([y, X[:, :1] - 0.5 * y], dim=1)  # k = 2
    specs = [RunSpec("gd-d2", depth=2, hidden=3, lr=0.02, init_std=0.5, seed=1),
             RunSpec("gd-d1-wd", lr=0.02, weight_decay=0.1, seed=2),
             RunSpec("adam-d3", method="adam", depth=3, hidden=(2, 4), lr=0.01, init_std=0.5, seed=3)]
    for p in (2, 4):
        res = run_sweep(X, Y, specs, steps=20, p=p, record_every=1, progress=False)
        assert res.final_W.shape == (3, 2, 6)
        _check_against_loops(res, X, Y, 20, p)


def test_all_diverged_and_progress_bar(data):
    X, y = data
    specs = [RunSpec("a", lr=50.0), RunSpec("b", method="adam", lr=1e4, depth=2, hidden=2)]
    seen = []
    res = run_sweep(X, y, specs, steps=200, p=4, record_every=10, progress=True, poll_every=50,
                    callback=lambda step, losses: seen.append(step), divergence_factor=1e3)
    assert all(s is not None for s in res.diverged_at)
    assert seen == res.steps.tolist()
    assert torch.isnan(res.losses[:, -1]).all() and res.final_W.shape == (2, 1, 6)


def test_ctrl_c_writes_a_consistent_checkpoint(data, tmp_path):
    import os
    import signal
    X, y = data
    specs = [RunSpec("gd", depth=2, lr=0.01, init_std=0.5), RunSpec("adam", method="adam", lr=0.01)]
    kw = dict(steps=60, p=4, record_every=4, progress=False, poll_every=3)
    full = run_sweep(X, y, specs, **kw)
    ck = tmp_path / "c.ckpt"

    def cb(step, losses):
        if step == 20:
            os.kill(os.getpid(), signal.SIGINT)  # deferred to the next poll point

    with pytest.raises(KeyboardInterrupt):
        run_sweep(X, y, specs, checkpoint=ck, callback=cb, **kw)
    assert torch.load(ck, weights_only=True)["step"] == 21  # the first poll point after step 20
    resumed = run_sweep(X, y, specs, checkpoint=ck, **kw)
    assert torch.equal(resumed.losses, full.losses) and torch.equal(resumed.final_W, full.final_W)


@pytest.mark.parametrize("p", [2, 4])
def test_grad_scale_follows_the_scaled_objective(data, p):
    """grad_scale = p: the gradient of mean |r|^p (no 1/p) for every method; losses stay L¹."""
    X, y = data
    specs = [dataclasses.replace(s, lr=s.lr / p) for s in GD_SPECS[:3] + OPT_SPECS]  # stable steps
    res = run_sweep(X, y, specs, steps=30, p=p, record_every=1, progress=False, grad_scale=float(p))
    assert res.diverged_at == [None] * len(specs)
    _check_against_loops(res, X, y, 30, p, scale=float(p))
    # for GD without weight decay, scaling the objective is scaling the learning rate
    gd = specs[1]
    assert gd.method == "gd" and gd.weight_decay == 0
    b = run_sweep(X, y, [dataclasses.replace(gd, lr=p * gd.lr)], steps=30, p=p, record_every=1, progress=False)
    _close(res.losses[1], b.losses[0], rtol=1e-12)


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), True, "2"])
def test_grad_scale_validated(data, bad):
    X, y = data
    with pytest.raises(ValueError, match="grad_scale must be a positive finite number"):
        run_sweep(X, y, GD_SPECS[:1], steps=1, p=2, progress=False, grad_scale=bad)
