"""Tests of overparam.theory: balanced factors, balancedness, the appendix checks and `overparam verify`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from overparam import cli, end_to_end, models, theory
from overparam.linalg import gram_power
from overparam.theory import CheckResult, algebra, appendix_b, balanced_factors, balancedness, check_names, run_checks

F64 = torch.float64
REQUIRED_KEYS = {"name", "description", "error", "tolerance", "passed"}


@pytest.fixture(scope="module")
def results():
    return run_checks()


# --- the checks ---------------------------------------------------------------------------------------

def test_every_check_passes(results):
    failed = {r.name: (r.error, r.tolerance, r.details.get("conditions")) for r in results if not r.passed}
    assert not failed


def test_names_unique_and_complete(results):
    names = [r.name for r in results]
    assert len(names) == len(set(names))
    assert names == check_names()
    required = {"theorem-1", "lemma-1", "claim-1", "claim-2", "theorem-2", "appendix-b"}
    assert required <= set(names)


def test_results_json_serialisable(results):
    for r in results:
        assert isinstance(r, CheckResult)
        d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
        assert REQUIRED_KEYS <= set(d)
        assert d["name"] == r.name and d["passed"] is r.passed
        assert r.description and math.isfinite(r.error) and r.tolerance >= 0


def test_passed_means_error_within_tolerance(results):
    for r in results:
        assert r.passed == (r.error <= r.tolerance and all(r.details.get("conditions", {}).values()))


def test_result_is_frozen(results):
    with pytest.raises(Exception):
        results[0].passed = False


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="nope") as exc:
        run_checks(["claim-1", "nope"])
    for name in check_names():
        assert name in str(exc.value)


def test_run_named_subset():
    out = run_checks(["claim-2", "claim-2-at-zero", "claim-2"])
    assert [r.name for r in out] == ["claim-2", "claim-2-at-zero"]
    assert [r.name for r in run_checks("depth-1-is-gd")] == ["depth-1-is-gd"]


def test_deterministic():
    a, b = run_checks(["claim-1", "theorem-2"]), run_checks(["claim-1", "theorem-2"])
    assert [r.to_dict() for r in a] == [r.to_dict() for r in b]


def test_theorem_1_reports_both_gaps(results):
    r = next(r for r in results if r.name == "theorem-1")
    big, small = r.details["large_lr"]["gap"], r.details["small_lr"]["gap"]
    assert small < big and 4 / 1.5 <= big / small <= 4 * 1.5
    assert r.details["large_lr"]["steps"] * 4 == r.details["small_lr"]["steps"]


def test_appendix_b_speedup_beats_bound(results):
    r = next(r for r in results if r.name == "appendix-b")
    for row in r.details["settings"]:
        assert all(row["assumptions"].values())
        assert row["speedup"] >= row["bound_y1_over_4eps1"]


# --- the checks fail when the math is broken ----------------------------------------------------------

def _wrong_order_precondition(W, grad, depth, *, rcond=None):
    """Σ_j [W Wᵀ]^{(j−1)/N} G [Wᵀ W]^{(j−1)/N}: the right-hand exponents run the wrong way."""
    if depth == 1:
        return grad.clone()
    return sum(gram_power(W, (j - 1) / depth, "left") @ grad @ gram_power(W, (j - 1) / depth, "right")
               for j in range(1, depth + 1))


def test_wrong_exponent_order_fails(monkeypatch):
    monkeypatch.setattr(end_to_end, "precondition", _wrong_order_precondition)
    out = {r.name: r for r in run_checks(["claim-1", "theorem-1"])}
    assert not out["claim-1"].passed and out["claim-1"].error > 1e-3
    assert not out["theorem-1"].passed


def test_dropping_n_minus_1_fails(monkeypatch):
    def no_projection(W, G, depth):
        return W.square().sum(dim=(-2, -1), keepdim=True).pow(1 - 1 / depth) * G

    monkeypatch.setattr(end_to_end, "single_output_precondition", no_projection)
    out = {r.name: r for r in run_checks(["claim-2", "theorem-2"])}
    assert not out["claim-2"].passed
    assert not out["theorem-2"].passed and out["theorem-2"].error > 0.1  # Lemma 3 no longer matches


def test_weight_decay_without_depth_factor_fails(monkeypatch):
    original = end_to_end.end_to_end_step

    def step(W, grad, depth, lr, weight_decay=0.0, *, rcond=None):  # (1 − ηλ) instead of (1 − ηλN)
        return original(W, grad, depth, lr, weight_decay / depth, rcond=rcond)

    monkeypatch.setattr(end_to_end, "end_to_end_step", step)
    assert not run_checks(["theorem-1"])[0].passed


def test_plain_gd_instead_of_eq_12_fails_appendix_b(monkeypatch):
    monkeypatch.setattr(end_to_end, "precondition", lambda W, grad, depth, **kw: grad.clone())
    r = run_checks(["appendix-b"])[0]
    assert not r.passed


def test_unbalanced_factors_fail(monkeypatch):
    original = theory.balanced_factors

    def skewed(W_e, depth, widths=None, generator=None):  # same product, Eq 7 broken
        Ws = original(W_e, depth, widths, generator)
        if depth > 1:
            Ws[0], Ws[-1] = 2 * Ws[0], Ws[-1] / 2
        return Ws

    # patch where each check looks the name up: eq-21-24 in theory.algebra, eq-18 (balanced init) in models
    monkeypatch.setattr(algebra, "balanced_factors", skewed)
    monkeypatch.setattr(models, "balanced_factors", skewed)
    out = {r.name: r for r in run_checks(["eq-21-24", "eq-18"])}
    assert not out["eq-21-24"].passed
    assert not out["eq-18"].passed


def test_zero_update_broken_fails(monkeypatch):
    original = end_to_end.precondition
    monkeypatch.setattr(end_to_end, "precondition", lambda W, grad, depth, **kw: original(W, grad, depth) + 1e-300)
    assert not run_checks(["claim-2-at-zero"])[0].passed


# --- the appendix-B iteration counter against brute force --------------------------------------------

@pytest.mark.parametrize("delta0,target,eta", [(-1.0, 0.1, 1e-3), (-3.0, 0.2, 0.05), (-10.0, 1.0, 0.019),
                                               (2.0, 0.05, 0.3), (-5.0, 0.5, 0.0799),
                                               (-1.0, 0.01, 0.5)])
def test_gd_quartic_iterations_brackets_brute_force(delta0, target, eta):
    delta, t = delta0, 0
    while abs(delta) > target:
        delta -= eta * delta ** 3
        t += 1
    lo, hi = appendix_b._gd_quartic_iterations(delta0, target, eta)
    assert lo <= t <= hi and hi - lo <= max(2, 2e-4 * t)


def test_gd_quartic_iterations_divergence():
    assert appendix_b._gd_quartic_iterations(-10.0, 1.0, 0.021) is None  # η δ0² > 2
    assert appendix_b._gd_quartic_iterations(-0.05, 0.1, 1.0) == (0, 0)


# --- balanced_factors / balancedness ------------------------------------------------------------------

def _matrix(k, d, svals, seed):
    g = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(k, k, generator=g, dtype=F64))[0]
    V = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))[0]
    r = len(svals)
    return (U[:, :r] * torch.tensor(svals, dtype=F64)) @ V[:, :r].T if r else torch.zeros(k, d, dtype=F64)


def _product(Ws):
    out = Ws[0]
    for W in Ws[1:]:
        out = W @ out
    return out


def _eq7_violation(Ws):
    return max((float((Ws[j + 1].T @ Ws[j + 1] - Ws[j] @ Ws[j].T).abs().max()) for j in range(len(Ws) - 1)),
               default=0.0)


@pytest.mark.parametrize("k,d,depth,widths,svals", [
    (2, 4, 2, None, (1.5, 0.3)),
    (2, 4, 3, [5, 7], (1.5, 0.3)),          # widths larger than the rank
    (4, 3, 4, 6, (2.0, 1.0, 0.5)),
    (3, 3, 3, [3, 3], (1.0, 1.0, 1.0)),     # repeated singular values
    (3, 5, 4, [1, 2, 1], (0.7,)),           # rank-deficient, width = rank
    (1, 6, 5, 1, (2.5,)),
    (5, 1, 3, [1, 4], (0.4,)),
    (3, 4, 3, [2, 2], ()),                  # W_e = 0
    (2, 2, 8, 2, (3.0, 0.1)),
])
def test_balanced_factors(k, d, depth, widths, svals):
    W = _matrix(k, d, svals, seed=k * 10 + d)
    Ws = balanced_factors(W, depth, widths, generator=torch.Generator().manual_seed(0))
    assert len(Ws) == depth and all(w.dtype == F64 for w in Ws)
    exp_widths = [min(k, d)] * (depth - 1) if widths is None else (
        [widths] * (depth - 1) if isinstance(widths, int) else widths)
    assert [w.shape for w in Ws] == [torch.Size((n_out, n_in)) for n_in, n_out in
                                     zip([d, *exp_widths], [*exp_widths, k])]
    assert torch.allclose(_product(Ws), W, atol=1e-12, rtol=0)
    assert _eq7_violation(Ws) <= 1e-12
    assert balancedness(Ws) <= 1e-12
    # every factor carries the singular values S^{1/N}
    for w in Ws:
        s = torch.linalg.svdvals(w)[: len(svals)]
        assert torch.allclose(s, torch.tensor(svals, dtype=F64) ** (1 / depth), atol=1e-12)


def test_balanced_factors_depth_1_is_copy():
    W = _matrix(2, 3, (1.0, 0.5), seed=1)
    (W1,) = balanced_factors(W, 1)
    assert torch.equal(W1, W) and W1 is not W


def test_balanced_factors_width_too_small_names_widths_and_rank():
    W = _matrix(3, 4, (1.0, 0.5, 0.2), seed=2)
    with pytest.raises(ValueError, match=r"widths \[3, 2\].*rank 3"):
        balanced_factors(W, 3, [3, 2])


def test_balanced_factors_bad_inputs():
    W = _matrix(2, 3, (1.0,), seed=3)
    with pytest.raises(ValueError, match="depth"):
        balanced_factors(W, 0)
    with pytest.raises(ValueError, match="widths"):
        balanced_factors(W, 3, [2])
    with pytest.raises(ValueError, match="W_e"):
        balanced_factors(W.numpy(), 2)


def test_balancedness_of_unbalanced_chain():
    g = torch.Generator().manual_seed(7)
    Ws = [torch.randn(5, 4, generator=g, dtype=F64), torch.randn(3, 5, generator=g, dtype=F64),
          torch.randn(2, 3, generator=g, dtype=F64)]
    assert balancedness(Ws) > 0.1
    assert balancedness(Ws[:1]) == 0.0
    with pytest.raises(ValueError, match="chain"):
        balancedness([Ws[0], Ws[0]])


# --- the CLI ------------------------------------------------------------------------------------------

def test_cli_verify_json_real(capsys):
    rc = cli.main(["verify", "--json", "--only", "claim-1", "claim-2", "claim-2-at-zero", "eq-21-24"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and isinstance(out, list) and len(out) == 4
    assert all(REQUIRED_KEYS <= set(d) and d["passed"] for d in out)


def test_cli_verify_all_uses_results(results, capsys, monkeypatch):
    monkeypatch.setattr(theory, "run_checks", lambda names=None: results)
    assert cli.main(["verify", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in out] == check_names() and all(REQUIRED_KEYS <= set(d) for d in out)
    assert cli.main(["verify"]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in check_names())
    assert f"{len(results)} of {len(results)} checks passed" in table


def test_cli_verify_exit_1_on_failure(results, capsys, monkeypatch):
    bad = CheckResult("broken", "a failing check", 1.0, 0.1, False, {})
    monkeypatch.setattr(theory, "run_checks", lambda names=None: [*results[:2], bad])
    assert cli.main(["verify"]) == 1
    assert "failed: broken" in capsys.readouterr().out
    assert cli.main(["verify", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)[-1]["passed"] is False


def test_cli_verify_unknown_name(capsys):
    assert cli.main(["verify", "--only", "nope"]) == 2
    assert "valid names" in capsys.readouterr().err
