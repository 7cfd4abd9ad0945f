"""overparam.nn: overparameterize / collapse any model (App C.2), exactly and purely."""

from __future__ import annotations

import copy
import socket
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from overparam import nn as onn
from overparam.nn import (
    OverparamConv2d,
    OverparamLinear,
    collapse,
    overparam_report,
    overparameterize,
)

# ---------------------------------------------------------------------------------------------------
# architectures


class PaperConvNet(nn.Module):
    """The TF MNIST tutorial convnet of App C.2."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)  # SAME
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc1 = nn.Linear(3136, 512)
        self.dropout = nn.Dropout(0.5)
        self.fc2 = nn.Linear(512, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(self.dropout(F.relu(self.fc1(x.flatten(1)))))


class Block(nn.Module):
    def __init__(self, shared: nn.Linear):
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(6, 6), nn.Tanh())
        self.shared = shared

    def forward(self, x):
        return self.shared(self.inner(x))


class Nested(nn.Module):
    """Sequential inside custom Modules, a ModuleList, a ModuleDict, one Linear shared at three places."""

    def __init__(self):
        super().__init__()
        shared = nn.Linear(6, 6)
        self.blocks = nn.ModuleList([Block(shared), Block(shared)])
        self.heads = nn.ModuleDict({"a": nn.Linear(6, 3, bias=False), "b": nn.Sequential(nn.Linear(6, 2))})
        self.tail = shared

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        x = self.tail(x)
        return torch.cat([self.heads["a"](x), self.heads["b"](x)], dim=-1)


def mlp():
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 4), nn.ReLU(), nn.Linear(4, 1))


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=2, padding="valid", bias=False), nn.ReLU(),
        nn.Conv2d(6, 5, (3, 2), dilation=2, padding="same", padding_mode="reflect"), nn.ReLU(),
        nn.Flatten(), nn.LazyLinear(3),
    )


def _built_cnn():
    m = small_cnn()
    m(torch.zeros(1, 3, 9, 9))  # materialize the LazyLinear
    return m


ARCHS = {  # name -> (factory, input shape, overparameterize kwargs)
    "mlp": (mlp, (9, 5), {}),
    "mlp-1d-input": (mlp, (5,), {}),
    "mlp-3d-input": (mlp, (2, 3, 5), {}),
    "convnet": (PaperConvNet, (2, 1, 28, 28), {}),
    "convnet+conv": (PaperConvNet, (2, 1, 28, 28), {"conv": True}),
    "nested-shared": (Nested, (4, 6), {}),
    "cnn+conv": (_built_cnn, (2, 3, 9, 9), {"conv": True}),
    "bare-linear": (lambda: nn.Linear(5, 3), (4, 5), {}),
    "bare-conv": (lambda: nn.Conv2d(2, 3, 3), (2, 2, 6, 6), {"layers": [""]}),
}

INITS = ["normal", "preserve", "balanced"]
DEPTHS = [1, 2, 3]
DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: dict(rtol=1e-4, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-12)}


def build(arch, dtype, seed=0):
    torch.manual_seed(seed)
    factory, shape, kw = ARCHS[arch]
    model = factory().to(dtype).eval()
    x = torch.randn(shape, dtype=dtype)
    return model, x, kw


def params_snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------------
# the paper's convnet: counts and repr (App C.2: "≈ 250K parameters added to 1.6M")


def test_paper_convnet_counts_and_repr():
    net = PaperConvNet()
    op = overparameterize(net, init_std=0.1, generator=torch.Generator().manual_seed(0))
    assert repr(op.fc1) == (
        "OverparamLinear(in_features=3136, out_features=512, depth=2, factors=[512×3136, 512×512], bias=True)"
    )
    assert [tuple(W.shape) for W in op.fc2.factors] == [(10, 512), (10, 10)]
    assert isinstance(op.conv1, nn.Conv2d) and not isinstance(op.conv1, OverparamConv2d)
    r = overparam_report(net, op)
    # conv1 832 + conv2 51,264 + fc1 1,606,144 + fc2 5,130 = 1,663,370 ≈ the paper's "1.6M"
    assert r.params_before == 1_663_370
    assert r.params_added == 512 * 512 + 10 * 10 == 262_244
    assert r.params_after == 1_925_614
    rows = {L.name: L for L in r.layers}
    assert set(rows) == {"fc1", "fc2"}
    assert rows["fc1"].params_added == 262_144 and rows["fc2"].params_added == 100
    assert rows["fc1"].extra_flops == 2 * 512 * 512  # multiply-add = 2 FLOPs, one example
    assert r.extra_flops == 2 * (512 * 512 + 10 * 10)
    text = str(r)
    for s in ("fc1", "fc2", "1,663,370", "1,925,614", "262,244", "262,144", "512×3136, 512×512"):
        assert s in text


def test_report_with_input_shape_counts_conv_positions_and_restores_flags():
    net = PaperConvNet().train()
    op = overparameterize(net, conv=True).train()
    op.conv2.eval()
    flags = [m.training for m in op.modules()]
    state = params_snapshot(op)
    r = overparam_report(net, op, input_shape=(1, 28, 28))
    assert [m.training for m in op.modules()] == flags
    assert all(torch.equal(v, op.state_dict()[k]) for k, v in state.items())
    rows = {L.name: L for L in r.layers}
    # conv1 sees 28·28 output positions; its extra 1×1 conv is 32×32 per position
    assert rows["conv1"].extra_flops == 2 * 28 * 28 * 32 * 32
    assert rows["conv2"].extra_flops == 2 * 14 * 14 * 64 * 64
    assert rows["conv1"].flops_collapsed == 2 * 28 * 28 * 32 * 25
    assert overparam_report(net, op).layers[0].extra_flops is None  # conv without input_shape
    assert "n/a" in str(overparam_report(net, op))


def test_report_rejects_mismatched_pair():
    op = overparameterize(mlp())
    with pytest.raises(ValueError, match="does not match"):
        overparam_report(nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 4), nn.ReLU(),
                                       nn.Linear(4, 1)), op)


# ---------------------------------------------------------------------------------------------------
# collapse ∘ overparameterize reproduces outputs; preserve/balanced reproduce the original


# every (architecture, init, dtype), except that the balanced convnet (one SVD of 512×3136 per depth)
# runs once: with the convs, in float64, at depth 3
CASES = [
    (arch, init, dtype) for arch in ARCHS for init in INITS for dtype in DTYPES
    if not (arch.startswith("convnet") and init == "balanced")
] + [("convnet+conv", "balanced", torch.float64)]


@pytest.mark.parametrize("arch,init,dtype", CASES, ids=lambda v: str(v).replace("torch.", ""))
def test_collapse_matches_overparameterized(arch, init, dtype):
    depths = [3] if arch.startswith("convnet") and init == "balanced" else DEPTHS
    model, x, kw = build(arch, dtype)
    y0 = model(x)
    for depth in depths:
        op = overparameterize(model, depth, init=init, **kw)
        col = collapse(op)
        assert not any(isinstance(m, onn._OVERPARAM_TYPES) for m in col.modules())
        assert any(isinstance(m, onn._OVERPARAM_TYPES) for m in op.modules())
        y_op, y_col = op(x), col(x)
        assert y_col.dtype == dtype and y_col.shape == y0.shape
        torch.testing.assert_close(y_col, y_op, **TOL[dtype])
        if init != "normal" or depth == 1:  # the function of the original is kept
            torch.testing.assert_close(y_op, y0, **TOL[dtype])
        if init == "normal" and depth > 1:
            assert not torch.allclose(y_op, y0)


@pytest.mark.parametrize("hidden", [3, [9, 2], [1, 1]])
def test_collapse_with_hidden_widths(hidden):
    model, x, _ = build("mlp", torch.float64)
    op = overparameterize(model, 3, hidden=hidden)
    for m in op.modules():
        if isinstance(m, OverparamLinear):
            h = [hidden] * 2 if isinstance(hidden, int) else hidden
            assert m.widths == [m.in_features, *h, m.out_features]
    torch.testing.assert_close(collapse(op)(x), op(x), **TOL[torch.float64])


def test_preserve_default_widths_is_bitwise_identity_factors():
    model, x, _ = build("convnet", torch.float32)
    op = overparameterize(model, 3, init="preserve", conv=True)
    for name in ("fc1", "fc2"):
        W1, W2, W3 = op.get_submodule(name).factors
        assert torch.equal(W1, model.get_submodule(name).weight)
        assert torch.equal(W2, torch.eye(W2.shape[0])) and torch.equal(W3, torch.eye(W3.shape[0]))
        assert torch.equal(op.get_submodule(name).weight, model.get_submodule(name).weight)
    assert torch.equal(op.conv1.weight, model.conv1.weight)
    torch.testing.assert_close(op(x), model(x), rtol=1e-6, atol=1e-6)


def test_preserve_keeps_a_trained_function_and_fine_tunes():
    torch.manual_seed(1)
    model = mlp()
    X, Y = torch.randn(64, 5), torch.randn(64, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(20):
        opt.zero_grad()
        F.mse_loss(model(X), Y).backward()
        opt.step()
    op = overparameterize(model, 2, init="preserve")
    torch.testing.assert_close(op(X), model(X))
    loss0 = F.mse_loss(op(X), Y)
    opt = torch.optim.SGD(op.parameters(), lr=0.05)
    for _ in range(5):
        opt.zero_grad()
        F.mse_loss(op(X), Y).backward()
        opt.step()
    assert F.mse_loss(op(X), Y) < loss0


@pytest.mark.parametrize("hidden", [None, 4, [6, 2, 5]])
def test_balanced_is_exact_and_balanced(hidden):
    torch.manual_seed(0)
    U, V = torch.randn(5, 2, dtype=torch.float64), torch.randn(2, 7, dtype=torch.float64)
    lin = nn.Linear(7, 5).double()
    with torch.no_grad():
        lin.weight.copy_(U @ V)  # rank 2
    op = overparameterize(lin, 4, hidden=hidden, init="balanced")
    torch.testing.assert_close(op.weight, lin.weight, rtol=1e-10, atol=1e-12)
    Ws = list(op.factors)
    for j in range(len(Ws) - 1):  # Eq 7
        torch.testing.assert_close(Ws[j + 1].T @ Ws[j + 1], Ws[j] @ Ws[j].T, rtol=1e-9, atol=1e-10)
    # "preserve" with non-default widths is the same factorization
    op2 = overparameterize(lin, 4, hidden=[6, 2, 5], init="preserve")
    torch.testing.assert_close(op2.weight, lin.weight, rtol=1e-10, atol=1e-12)


def test_balanced_zero_weight_and_float32():
    lin = nn.Linear(4, 3)
    with torch.no_grad():
        lin.weight.zero_()
    op = overparameterize(lin, 3, hidden=1, init="balanced")
    assert torch.equal(op.weight, torch.zeros(3, 4)) and op.factors[0].dtype == torch.float32


def test_preserve_width_below_rank_raises():
    lin = nn.Linear(6, 5)  # full rank 5
    with pytest.raises(ValueError, match=r"rank 5.*>= 5"):
        overparameterize(lin, 3, hidden=[5, 4], init="preserve")


# ---------------------------------------------------------------------------------------------------
# init="normal"


def test_normal_init_copies_w1_and_draws_the_rest():
    net = PaperConvNet()
    g = torch.Generator().manual_seed(3)
    op = overparameterize(net, 3, init_std=0.1, generator=g)
    W1, W2, W3 = op.fc1.factors
    assert torch.equal(W1, net.fc1.weight) and W1 is not net.fc1.weight
    W2 = W2.detach()
    assert abs(float(W2.std()) - 0.1) < 0.003 and abs(float(W2.mean())) < 0.003
    assert not torch.equal(W2, W3)
    assert torch.equal(op.fc1.bias, net.fc1.bias) and op.fc1.bias is not net.fc1.bias
    # reproducible from the generator; the global RNG is not used
    state = torch.get_rng_state()
    again = overparameterize(net, 3, init_std=0.1, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(op.parameters(), again.parameters()))


def test_normal_default_std_is_the_replaced_weights_std():
    torch.manual_seed(0)
    lin = nn.Linear(300, 400)
    op = overparameterize(lin)
    expected = float(lin.weight.detach().std(correction=0))
    assert abs(float(op.factors[1].detach().std()) - expected) / expected < 0.02


def test_normal_with_other_widths_draws_all_factors():
    lin = nn.Linear(8, 6)
    op = overparameterize(lin, 2, hidden=5, init_std=0.5, generator=torch.Generator().manual_seed(0))
    assert [tuple(W.shape) for W in op.factors] == [(5, 8), (6, 5)]
    op2 = overparameterize(lin, 3, hidden=[6, 2], init_std=0.5)  # n_1 = out: W_1 is the original
    assert torch.equal(op2.factors[0], lin.weight)


def test_normal_cannot_infer_std_of_constant_weight():
    lin = nn.Linear(1, 1)
    with pytest.raises(ValueError, match="init_std"):
        overparameterize(lin, 2)
    overparameterize(lin, 2, init_std=0.1)
    assert torch.equal(overparameterize(lin, 1).weight, lin.weight)  # nothing drawn at depth 1


# ---------------------------------------------------------------------------------------------------
# purity, sharing, selection


@pytest.mark.parametrize("arch", ["convnet+conv", "nested-shared", "cnn+conv"])
def test_input_model_untouched(arch):
    model, x, kw = build(arch, torch.float32)
    before = params_snapshot(model)
    types = [type(m) for m in model.modules()]
    y = model(x)
    op = overparameterize(model, 2, **kw)
    col = collapse(op)
    assert [type(m) for m in model.modules()] == types
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    torch.testing.assert_close(model(x), y)
    own = {p.data_ptr() for p in model.parameters()}
    assert not own & {p.data_ptr() for p in op.parameters()}
    assert not {p.data_ptr() for p in op.parameters()} & {p.data_ptr() for p in col.parameters()}


def test_shared_layer_stays_shared():
    model = Nested()
    op = overparameterize(model)
    shared = op.tail
    assert isinstance(shared, OverparamLinear)
    assert op.blocks[0].shared is shared and op.blocks[1].shared is shared
    assert isinstance(op.blocks[0].inner[0], OverparamLinear)
    assert op.blocks[0].inner[0] is not op.blocks[1].inner[0]
    assert isinstance(op.heads["a"], OverparamLinear) and op.heads["a"].bias is None
    assert isinstance(op.heads["b"][0], OverparamLinear)
    # shared parameters counted once: 4 distinct Linears of widths 6→6 plus the heads
    r = overparam_report(model, op)
    assert r.params_added == 3 * 36 + 9 + 4
    assert len(r.layers) == 5
    col = collapse(op)
    assert col.blocks[0].shared is col.tail and col.blocks[1].shared is col.tail
    assert type(col.tail) is nn.Linear


def test_select_by_names_alias_and_predicate():
    model = Nested()
    op = overparameterize(model, layers=["tail", "heads.b.0"])  # "tail" is an alias of blocks.0.shared
    assert isinstance(op.blocks[0].shared, OverparamLinear) and op.blocks[1].shared is op.tail
    assert isinstance(op.heads["b"][0], OverparamLinear)
    assert type(op.heads["a"]) is nn.Linear and type(op.blocks[0].inner[0]) is nn.Linear
    seen = []

    def pred(name, m):
        seen.append(name)
        return name.startswith("heads")

    op = overparameterize(model, layers=pred)
    assert isinstance(op.heads["a"], OverparamLinear) and type(op.tail) is nn.Linear
    assert "tail" in seen and "blocks.1.shared" in seen  # called under each alias
    net = PaperConvNet()
    op = overparameterize(net, layers=["conv2"])  # a conv may be named without conv=True
    assert isinstance(op.conv2, OverparamConv2d) and type(op.fc1) is nn.Linear
    op = overparameterize(net, layers=lambda n, m: isinstance(m, nn.Conv2d), conv=True)
    assert isinstance(op.conv1, OverparamConv2d) and type(op.fc2) is nn.Linear


def test_training_flags_and_requires_grad_preserved():
    net = PaperConvNet().train()
    net.fc2.eval()
    net.fc1.weight.requires_grad_(False)
    net.fc2.bias.requires_grad_(False)
    op = overparameterize(net)
    assert op.training and op.fc1.training and not op.fc2.training
    assert [W.requires_grad for W in op.fc1.factors] == [False, False]
    assert op.fc1.bias.requires_grad and not op.fc2.bias.requires_grad
    col = collapse(op)
    assert not col.fc1.weight.requires_grad and col.fc1.bias.requires_grad
    assert col.fc2.weight.requires_grad and not col.fc2.bias.requires_grad
    assert col.fc1.training and not col.fc2.training


def test_eval_and_train_never_rewrite_weights():
    op = overparameterize(PaperConvNet(), 3, conv=True)
    ptrs = [p.data_ptr() for p in op.parameters()]
    state = params_snapshot(op)
    n_params = len(list(op.parameters()))
    for _ in range(2):
        op.eval()
        op.train()
    op.train(False)
    assert [p.data_ptr() for p in op.parameters()] == ptrs and len(list(op.parameters())) == n_params
    assert all(torch.equal(v, op.state_dict()[k]) for k, v in state.items())
    assert isinstance(op.fc1, OverparamLinear) and isinstance(op.conv1, OverparamConv2d)
    with pytest.raises(AttributeError):
        op.fc1.weight = torch.zeros(512, 3136)


def test_collapse_is_pure_and_idempotent_and_keeps_dtype():
    model, x, _ = build("nested-shared", torch.float64)
    op = overparameterize(model, 3)
    state = params_snapshot(op)
    rng = torch.get_rng_state()
    col = collapse(op)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, op.state_dict()[k]) for k, v in state.items())
    assert all(p.dtype == torch.float64 for p in col.parameters())
    col2 = collapse(col)
    assert col2 is not col
    torch.testing.assert_close(col2(x), op(x))
    lin = collapse(op.tail)  # a bare layer collapses to a bare nn.Linear
    assert type(lin) is nn.Linear and torch.equal(lin.weight, op.tail.weight.detach())


def test_tied_weights_warn():
    emb = nn.Embedding(10, 4)
    head = nn.Linear(4, 10, bias=False)
    head.weight = emb.weight
    model = nn.ModuleDict({"emb": emb, "head": head})
    with pytest.warns(UserWarning, match="tied"):
        overparameterize(model, layers=["head"])


# ---------------------------------------------------------------------------------------------------
# depth 1, conv specifics, forward association


def test_depth_one_single_factor():
    model, x, _ = build("mlp", torch.float64)
    op = overparameterize(model, 1)
    assert isinstance(op[0], OverparamLinear) and op[0].depth == 1 and len(op[0].factors) == 1
    assert torch.equal(op[0].factors[0], model[0].weight)
    torch.testing.assert_close(op(x), model(x), rtol=0, atol=0)
    assert torch.equal(collapse(op)[0].weight, model[0].weight)


@pytest.mark.parametrize("kw", [
    dict(padding=2), dict(stride=2, padding=1, bias=False), dict(dilation=2, padding="same"),
    dict(padding=(1, 2), padding_mode="circular"), dict(padding="valid", kernel_size=(2, 3)),
])
def test_conv_collapse_exact(kw):
    torch.manual_seed(0)
    kw = {"kernel_size": 3, **kw}
    conv = nn.Conv2d(3, 5, **kw).double()
    x = torch.randn(2, 3, 11, 10, dtype=torch.float64)
    for init in INITS:
        op = overparameterize(conv, 3, layers=[""], init=init, hidden=[5, 6] if init == "balanced" else None)
        assert isinstance(op, OverparamConv2d)
        y = op(x)
        for forced in (True, False):  # both associations agree
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(onn, "_prefer_sequence", lambda rows, widths, f=forced: f)
                torch.testing.assert_close(op(x), y)
                torch.testing.assert_close(op(x[0]), y[0])  # unbatched input
        col = collapse(op)
        assert type(col) is nn.Conv2d and col.padding_mode == conv.padding_mode
        torch.testing.assert_close(col(x), y)
        if init != "normal":
            torch.testing.assert_close(y, conv(x))


def test_conv_repr_and_factor_shapes():
    op = overparameterize(nn.Conv2d(1, 32, 5, padding=2), 2, layers=[""])
    assert [tuple(W.shape) for W in op.factors] == [(32, 1, 5, 5), (32, 32)]
    assert "depth=2, factors=[32×1×5×5, 32×32], bias=True" in repr(op)
    assert op.weight.shape == (32, 1, 5, 5)


def test_grouped_conv_named_raises_and_blanket_skips():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="groups=2"):
        overparameterize(model, layers=["0"])
    with pytest.warns(UserWarning, match=r"groups != 1.*'0'"):
        op = overparameterize(model, conv=True)
    assert type(op[0]) is nn.Conv2d and isinstance(op[2], OverparamLinear)


def test_association_rule():
    widths = [3136, 512, 512]
    assert onn._prefer_sequence(1, widths)  # 1·(3136·512 + 512²) < 512²·3136 + 3136·512
    assert not onn._prefer_sequence(10_000, widths)
    assert not onn._prefer_sequence(64, [1, 100, 100, 1])  # thin end-to-end: product first
    assert onn._chain_cost([4, 3, 2, 5]) == min(2 * 3 * 4 + 5 * 2 * 4, 5 * 2 * 3 + 5 * 3 * 4)
    lin = OverparamLinear(6, 4, 3, hidden=[5, 7]).double()
    for rows in (1, 1000):
        x = torch.randn(rows, 6, dtype=torch.float64)
        torch.testing.assert_close(lin(x), F.linear(x, lin.weight, lin.bias))


def test_fresh_layer_constructors():
    torch.manual_seed(0)
    lin = OverparamLinear(3, 2, 3, hidden=4, bias=False, dtype=torch.float64)
    assert lin.widths == [3, 4, 4, 2] and lin.bias is None and lin.factors[0].dtype == torch.float64
    assert lin(torch.randn(5, 3, dtype=torch.float64)).shape == (5, 2)
    conv = OverparamConv2d(2, 3, 3, depth=2, padding=1)
    assert conv(torch.randn(1, 2, 5, 5)).shape == (1, 3, 5, 5)
    torch.testing.assert_close(collapse(conv)(torch.ones(1, 2, 5, 5)), conv(torch.ones(1, 2, 5, 5)))


# ---------------------------------------------------------------------------------------------------
# training machinery: gradients, state_dict, compile, DDP, CUDA


def test_gradients_reach_every_factor():
    model, x, _ = build("convnet", torch.float32)
    op = overparameterize(model, 3, conv=True).train()
    op(x).square().sum().backward()
    for name, p in op.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # product-first and sequence paths give the same gradients
    lin = overparameterize(nn.Linear(5, 4).double(), 3)
    x = torch.randn(3, 5, dtype=torch.float64)
    grads = []
    for forced in (True, False):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(onn, "_prefer_sequence", lambda rows, widths, f=forced: f)
            lin.zero_grad()
            lin(x).pow(3).sum().backward()
            grads.append([p.grad.clone() for p in lin.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_state_dict_round_trip():
    model, x, _ = build("convnet", torch.float32)
    op = overparameterize(model, 3, conv=True, init_std=0.1)
    sd = op.state_dict()
    assert "fc1.factors.0" in sd and "fc1.factors.2" in sd and "fc1.bias" in sd and "fc1.weight" not in sd
    fresh = overparameterize(PaperConvNet().eval(), 3, conv=True)
    fresh.load_state_dict(sd)
    torch.testing.assert_close(fresh(x), op(x), rtol=0, atol=0)


def test_torch_compile_eager_and_aot():
    model, x, _ = build("mlp", torch.float32)
    op = overparameterize(model, 3).train()
    for backend in ("eager", "aot_eager"):
        compiled = torch.compile(op, backend=backend)
        y = compiled(x)
        torch.testing.assert_close(y, op(x))
        y.sum().backward()
        assert all(p.grad is not None for p in op.parameters())
        op.zero_grad()
    torch._dynamo.reset()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_gloo_single_process():
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    model, x, _ = build("mlp", torch.float32)
    op = overparameterize(model, 2).train()
    ref = copy.deepcopy(op)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        ddp = DDP(op)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        opt.zero_grad()
        ddp(x).square().mean().backward()
        opt.step()
    finally:
        dist.destroy_process_group()
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    ref(x).square().mean().backward()
    ref_opt.step()
    for a, b in zip(op.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_device_follows_the_model():
    model, x, _ = build("convnet", torch.float32)
    model, x = model.cuda(), x.cuda()
    g = torch.Generator(device="cpu").manual_seed(0)
    op = overparameterize(model, 3, conv=True, generator=g)
    assert all(p.is_cuda for p in op.parameters())
    col = collapse(op)
    assert all(p.is_cuda for p in col.parameters())
    torch.testing.assert_close(col(x), op(x), rtol=1e-4, atol=1e-4)
    op(x).sum().backward()
    pres = overparameterize(model, 2, init="balanced", hidden=600)
    torch.testing.assert_close(pres(x), model(x), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------------
# validation at the boundary (expected exception, message fragment)

ERRORS = [
    (lambda: overparameterize([nn.Linear(2, 2)]), TypeError, "torch.nn.Module, got list"),
    (lambda: collapse("model"), TypeError, "torch.nn.Module, got str"),
    (lambda: overparameterize(mlp(), 0), ValueError, "depth must be a positive int, got 0"),
    (lambda: overparameterize(mlp(), 2.0), ValueError, "got 2.0"),
    (lambda: overparameterize(mlp(), True), ValueError, "got True"),
    (lambda: overparameterize(mlp(), layers=["0", "9", "x.y"]), ValueError, r"unknown layer names \['9', 'x.y'\]"),
    (lambda: overparameterize(mlp(), layers=["1"]), ValueError, "'1' is a ReLU"),
    (lambda: overparameterize(mlp(), layers="0"), TypeError, "wrap a single name in a list"),
    (lambda: overparameterize(mlp(), layers=[0]), TypeError, "names"),
    (lambda: overparameterize(mlp(), layers=[]), ValueError, "no nn.Linear layers selected in model of type Sequential"),
    (lambda: overparameterize(nn.Sequential(nn.Conv2d(1, 1, 1), nn.ReLU())), ValueError,
     "no nn.Linear layers selected in model of type Sequential"),
    (lambda: overparameterize(nn.ReLU(), conv=True), ValueError,
     "no nn.Linear or nn.Conv2d layers selected in model of type ReLU"),
    (lambda: overparameterize(mlp(), layers=lambda n, m: False), ValueError, "no nn.Linear layers selected"),
    (lambda: overparameterize(mlp(), init="identity"), ValueError,
     "init must be one of 'normal', 'preserve', 'balanced', got 'identity'"),
    (lambda: overparameterize(mlp(), init_std=-1.0), ValueError, "init_std must be a finite number >= 0, got -1.0"),
    (lambda: overparameterize(mlp(), init_std="0.1"), TypeError, "init_std must be a real number"),
    (lambda: overparameterize(mlp(), init="preserve", init_std=0.1), ValueError,
     "init_std applies to init='normal' only"),
    (lambda: overparameterize(mlp(), generator=0), TypeError, "generator must be a torch.Generator"),
    (lambda: overparameterize(mlp(), conv=1), TypeError, "conv must be a bool"),
    (lambda: overparameterize(mlp(), 3, hidden=[4]), ValueError, r"depth - 1 = 2 widths, got 1: \[4\]"),
    (lambda: overparameterize(mlp(), 3, hidden=[4, 0]), ValueError, r"hidden\[1\] must be a positive int, got 0"),
    (lambda: overparameterize(mlp(), 2, hidden=-3), ValueError, "hidden must be a positive int, got -3"),
    (lambda: overparameterize(mlp(), 2, hidden=2.5), TypeError, "hidden must be None, an int or a list"),
    (lambda: overparameterize(nn.Sequential(nn.LazyLinear(3))), ValueError, "lazy and uninitialized"),
    (lambda: OverparamLinear(0, 3), ValueError, "in_features must be a positive int, got 0"),
    (lambda: OverparamConv2d.from_conv(nn.Conv2d(2, 2, 1, groups=2)), ValueError, "groups=2"),
]


@pytest.mark.parametrize("call,exc,match", ERRORS, ids=[e[2][:40] for e in ERRORS])
def test_errors(call, exc, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LazyLinear's own warning
        with pytest.raises(exc, match=match):
            call()


def test_transformer_layer_uses_the_product_as_weight():
    # nn.MultiheadAttention reads out_proj.weight directly: the read-only product property serves it
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True).double().eval()
    x = torch.randn(2, 3, 8, dtype=torch.float64)
    op = overparameterize(layer, 3, init="preserve")
    assert isinstance(op.self_attn.out_proj, OverparamLinear) and isinstance(op.linear2, OverparamLinear)
    torch.testing.assert_close(op(x), layer(x))
    torch.testing.assert_close(collapse(op)(x), layer(x))
