"""overparam.models: LinearNetwork (Eq 2) and chain_product."""

from __future__ import annotations

import pytest
import torch

from cases import ERROR_CASES, F64, assert_close
from overparam.models import LinearNetwork, chain_product
from overparam.theory import balancedness

# (in, out, depth, hidden) → expected factor shapes W_1 … W_N
SHAPE_CASES = {
    "depth1": ((5, 2, 1, None), [(2, 5)]),
    "default-narrowest": ((5, 2, 3, None), [(2, 5), (2, 2), (2, 2)]),
    "single-output": ((128, 1, 3, None), [(1, 128), (1, 1), (1, 1)]),
    "int": ((5, 2, 3, 7), [(7, 5), (7, 7), (2, 7)]),
    "list": ((5, 2, 4, [3, 8, 1]), [(3, 5), (8, 3), (1, 8), (2, 1)]),
    "tuple": ((4, 4, 2, (6,)), [(6, 4), (4, 6)]),
}


@pytest.mark.parametrize("args,shapes", SHAPE_CASES.values(), ids=list(SHAPE_CASES))
@pytest.mark.parametrize("init", ["normal", "identity", "balanced"])
def test_factor_shapes(args, shapes, init):
    d, k, N, hidden = args
    net = LinearNetwork(d, k, N, hidden=hidden, init=init)
    assert [tuple(W.shape) for W in net.factors] == shapes
    assert len(list(net.parameters())) == N
    assert net.end_to_end().shape == (k, d)


def _explicit_product(factors):
    out = factors[0]
    for W in factors[1:]:
        out = W @ out
    return out


@pytest.mark.parametrize("args", [a for a, _ in SHAPE_CASES.values()], ids=list(SHAPE_CASES))
def test_end_to_end_and_forward(args):
    d, k, N, hidden = args
    net = LinearNetwork(d, k, N, hidden=hidden, std=0.5, dtype=F64, generator=torch.Generator().manual_seed(0))
    We = _explicit_product(list(net.factors))
    assert_close(net.end_to_end(), We, 1e-13)
    x = torch.randn(9, d, dtype=F64, generator=torch.Generator().manual_seed(1))
    assert_close(net(x), x @ We.T, 1e-13)
    layerwise = x
    for W in net.factors:  # x ↦ W_N ⋯ W_1 x, one layer at a time
        layerwise = layerwise @ W.T
    assert_close(net(x), layerwise, 1e-13)
    assert net(x[0]).shape == (k,)


@pytest.mark.parametrize("shapes", [[(3, 5), (3, 3), (1, 3)], [(6, 2), (5, 6), (4, 5)], [(4, 4)]])
def test_chain_product_both_associations_and_batched(shapes):
    g = torch.Generator().manual_seed(2)
    factors = [torch.randn(*s, dtype=F64, generator=g) for s in shapes]
    assert_close(chain_product(factors), _explicit_product(factors), 1e-13)
    batched = [torch.stack([W, 2 * W]) for W in factors]
    out = chain_product(batched)
    assert_close(out[0], _explicit_product(factors), 1e-13)
    assert_close(out[1], 2 ** len(factors) * _explicit_product(factors), 1e-12)


def test_normal_init_std():
    net = LinearNetwork(200, 100, 2, hidden=150, generator=torch.Generator().manual_seed(3))
    values = torch.cat([W.detach().flatten() for W in net.factors])
    assert abs(values.std().item() - 0.01) < 5e-4 and abs(values.mean().item()) < 5e-4
    net = LinearNetwork(200, 100, 2, hidden=150, std=0.1, generator=torch.Generator().manual_seed(3))
    assert abs(torch.cat([W.detach().flatten() for W in net.factors]).std().item() - 0.1) < 5e-3


@pytest.mark.parametrize("hidden", [None, 7, [3, 9]])
def test_identity_init(hidden):
    """Normal plus 1 on the diagonal of every factor, square or not (Fig 5 left)."""
    g = torch.Generator().manual_seed(4)
    net = LinearNetwork(5, 2, 3, hidden=hidden, init="identity", std=0.01, generator=g)
    ref = LinearNetwork(5, 2, 3, hidden=hidden, init="normal", std=0.01, generator=torch.Generator().manual_seed(4))
    for W, R in zip(net.factors, ref.factors):
        assert torch.equal(W.detach(), R.detach() + torch.eye(*W.shape))
    zero = LinearNetwork(5, 2, 3, hidden=hidden, init="identity", std=0.0)
    for W in zero.factors:
        assert torch.equal(W.detach(), torch.eye(*W.shape))


@pytest.mark.parametrize("d,k,N,hidden", [(5, 1, 3, None), (5, 3, 4, None), (4, 6, 3, 8), (3, 3, 8, [3] * 7)])
def test_balanced_init(d, k, N, hidden):
    """Eq 7 holds to rounding in float64, and W_e is the normal draw's product (same scale)."""
    net = LinearNetwork(d, k, N, hidden=hidden, init="balanced", std=0.5, dtype=F64,
                        generator=torch.Generator().manual_seed(5))
    assert balancedness(net.factors) < 1e-12
    ref = LinearNetwork(d, k, N, hidden=hidden, init="normal", std=0.5, dtype=F64,
                        generator=torch.Generator().manual_seed(5))
    assert_close(net.end_to_end(), ref.end_to_end(), 1e-12, scale=ref.end_to_end().abs().max().item())


@pytest.mark.parametrize("init", ["normal", "identity", "balanced"])
def test_generator_reproducibility_and_dtype(init):
    a = LinearNetwork(6, 2, 3, hidden=4, init=init, dtype=F64, generator=torch.Generator().manual_seed(6))
    b = LinearNetwork(6, 2, 3, hidden=4, init=init, dtype=F64, generator=torch.Generator().manual_seed(6))
    c = LinearNetwork(6, 2, 3, hidden=4, init=init, dtype=F64, generator=torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.end_to_end(), c.end_to_end())
    assert all(W.dtype == F64 for W in a.factors)
    assert LinearNetwork(6, 2, 3, init=init, dtype=torch.float32).end_to_end().dtype == torch.float32


def test_gradients_flow_to_every_factor():
    net = LinearNetwork(4, 2, 3, std=0.5, generator=torch.Generator().manual_seed(8))
    net(torch.randn(5, 4)).square().sum().backward()
    assert all(W.grad is not None and W.grad.abs().sum() > 0 for W in net.factors)


MODEL_ERRORS = [c for c in ERROR_CASES if c.id.startswith(("net-", "bf-"))]


@pytest.mark.parametrize("case", MODEL_ERRORS, ids=[c.id for c in MODEL_ERRORS])
def test_errors(case):
    with pytest.raises(case.exc, match=case.match):
        case.call()
