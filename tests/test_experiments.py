"""The experiments framework: typed overrides, lr selection, the optimum, tiny end-to-end runs, resume."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import overparam.sweep as engine
from overparam.data import synthetic_gas_sensor
from overparam.experiments import get_experiment, list_experiments, run_experiment
from overparam.experiments.base import (apply_overrides, parse_overrides, select_lr, summarize_sweep)
from overparam.experiments.optimum import lp_objective, optimum

# Tiny configs: every experiment's code path in well under a second each.
TINY = {
    "fig2": ["steps=120", "widths=1,3", "record_every=40"],
    "fig3": ["steps=120", "lrs=1e-3,1e-2,0.1", "record_every=40"],
    "fig4": ["steps=120", "adam_steps=80", "gd_lrs=1e-2", "adagrad_lrs=0.1,0.5", "adadelta_lrs=0.5",
             "adam_lrs=1e-2", "record_every=40"],
    "fig5-left": ["steps=120", "lrs=1e-2,0.1", "record_every=40", "depths=4", "identity_depths=1,4"],
}
LINEAR = list(TINY)



@pytest.fixture(scope="module")
def tiny_data():
    return synthetic_gas_sensor(m=48, d=5, seed=3)


def tiny_run(name, tmp_path, data, extra=(), **kw):
    return run_experiment(name, TINY[name] + list(extra), out=tmp_path, data=data, progress=False,
                          echo=lambda s: None, **kw)


# ---------------------------------------------------------------------------------------------- overrides


@dataclass(frozen=True)
class _Cfg:
    steps: int = 10
    lr: float = 1e-3
    flag: bool = False
    name: str = "x"
    lrs: tuple[float, ...] = (1e-3,)
    depths: tuple[int, ...] = (1, 2)
    maybe: int | None = None


def test_overrides_are_typed():
    got = parse_overrides(_Cfg, ["steps=1e6", "lr=5e-2", "flag=true", "name=abc", "lrs=1e-3,1e-2",
                                 "depths=(1,2,3)", "maybe=none", "record-every=3"][:-1])
    assert got == {"steps": 1_000_000, "lr": 0.05, "flag": True, "name": "abc", "lrs": (1e-3, 1e-2),
                   "depths": (1, 2, 3), "maybe": None}
    assert type(got["steps"]) is int and type(got["lr"]) is float
    assert parse_overrides(_Cfg, ["lrs=0.1"]) == {"lrs": (0.1,)}
    assert parse_overrides(_Cfg, ["maybe=7", "flag=0", "steps=1_000"]) == {"maybe": 7, "flag": False, "steps": 1000}


@pytest.mark.parametrize("item, words", [
    ("nope=1", ["unknown config key 'nope'", "valid keys: steps, lr, flag, name, lrs, depths, maybe"]),
    ("steps=abc", ["steps", "'abc'", "int"]),
    ("steps=1.5", ["steps", "'1.5'"]),
    ("lr=fast", ["lr", "'fast'", "float"]),
    ("lr=nan", ["lr", "finite"]),
    ("flag=maybe", ["flag", "'maybe'", "bool"]),
    ("lrs=1e-3,x", ["lrs", "float"]),
    ("depths=1,2.5", ["depths", "int"]),
    ("steps", ["KEY=VALUE", "'steps'"]),
])
def test_bad_overrides_name_key_and_value(item, words):
    with pytest.raises(ValueError) as exc:
        parse_overrides(_Cfg, [item])
    for w in words:
        assert w in str(exc.value)


def test_overrides_never_evaluate_code():
    with pytest.raises(ValueError):
        parse_overrides(_Cfg, ["steps=__import__('os').getpid()"])
    assert parse_overrides(_Cfg, ["name=__import__('os')"]) == {"name": "__import__('os')"}


def test_apply_overrides_validates_through_the_config():
    cfg = get_experiment("fig3").Config()
    assert apply_overrides(cfg, ["steps=5"]).steps == 5
    with pytest.raises(ValueError, match="steps"):
        apply_overrides(cfg, ["steps=0"])
    with pytest.raises(ValueError, match="lrs"):
        apply_overrides(cfg, ["lrs=-1"])


def test_configs_default_to_the_paper_and_quick_is_a_config():
    for name in LINEAR:
        mod = get_experiment(name)
        assert isinstance(mod.QUICK, mod.Config)
    assert get_experiment("fig3").Config().steps == 1_000_000
    assert get_experiment("fig3").Config().lrs == (1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 1e-1, 5e-1)
    # Fig 2's lr is not stated by the paper: 1e-4 is the largest grid rate stable on every curve (8/10 copy)
    assert get_experiment("fig2").Config().steps == 250_000 and get_experiment("fig2").Config().lr == 1e-4
    assert get_experiment("fig4").Config().adam_steps == 200_000
    assert get_experiment("fig5-left").Config().steps == 100_000
    names = [n for n, _ in list_experiments()]
    assert names[:4] == ["fig2", "fig3", "fig4", "fig5-left"]


# ---------------------------------------------------------------------------------------------- selection


def test_selection_lowest_final_among_non_diverged():
    s = select_lr([1e-3, 1e-2, 1e-1], [0.5, 0.1, 0.01], [False, False, True])
    assert (s.lr, s.index, s.edge, s.all_diverged) == (1e-2, 1, None, False)


def test_selection_ties_go_to_the_smaller_lr_and_edges_are_flagged():
    s = select_lr([1e-1, 1e-3, 1e-2], [0.2, 0.2 * (1 + 1e-12), 0.3], [False] * 3)
    assert s.lr == 1e-3 and s.edge == "smallest"
    s = select_lr([1e-3, 1e-2, 1e-1], [0.3, 0.2, 0.1], [False] * 3)
    assert s.lr == 1e-1 and s.edge == "largest"
    assert select_lr([1e-3], [0.3], [False]).edge is None  # a one-point grid has no edge to flag


def test_selection_all_diverged_and_nan():
    s = select_lr([1e-3, 1e-2], [None, float("nan")], [True, False])
    assert s.all_diverged and s.lr is None and s.index is None
    with pytest.raises(ValueError, match="same length"):
        select_lr([1e-3], [0.1, 0.2], [False])


def test_summarize_flags_edge_all_diverged_and_below_optimum():
    sweep = {"p": 2.0, "steps": [0, 10], "seconds": 1.0, "diverged_at": [None, None, 10, 10],
             "specs": [{"name": "a|lr=0.001", "lr": 1e-3}, {"name": "a|lr=0.01", "lr": 1e-2},
                       {"name": "b|lr=0.001", "lr": 1e-3}, {"name": "b|lr=0.01", "lr": 1e-2}],
             "losses": [[1.0, 0.5], [1.0, 0.099], [1.0, None], [1.0, None]]}
    opt = {"loss": 0.1, "loss_paper": 0.2, "grad_norm": 1e-14, "method": "lstsq", "newton_steps": 0}
    panel = summarize_sweep(sweep, opt, "t")
    a, b = panel["models"]
    assert a["chosen_lr"] == 1e-2 and a["edge"] == "largest"
    assert a["distance"] == pytest.approx([1.8, -0.002])
    assert a["below_optimum"] == pytest.approx(0.01)
    assert b["all_diverged"] and b["distance"] is None
    from overparam.experiments.base import panel_notes

    notes = " ".join(panel_notes([panel]))
    assert "every learning rate diverged" in notes and "grid's largest" in notes and "below the computed optimum" in notes


# ---------------------------------------------------------------------------------------------- optimum


def _problem(m=200, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, d)) @ np.diag(np.logspace(0, -2, d))
    y = X @ rng.standard_normal(d) + 0.5 * rng.standard_t(5, size=m)
    return X, y


def test_l2_optimum_is_least_squares():
    X, y = _problem()
    o = optimum(X, y, 2)
    assert o.grad_norm < 1e-12
    w, *_ = np.linalg.lstsq(X, y, rcond=None)
    np.testing.assert_allclose(o.w, w, rtol=1e-9, atol=1e-12)
    assert o.loss_paper == pytest.approx(np.mean((X @ w - y) ** 2), rel=1e-12)


def test_l4_optimum_gradient_is_tiny_and_no_point_is_lower():
    X, y = _problem()
    o = optimum(X, y, 4)
    assert o.grad_norm < 1e-12
    w = np.array(o.w)
    rng = np.random.default_rng(1)
    for scale in (1e-2, 1e-4, 1e-6):
        for _ in range(20):
            assert lp_objective(w + scale * rng.standard_normal(w.size), X, y, 4)[0] >= o.loss - 1e-15


def test_l4_optimum_matches_a_brute_force_grid():
    X, y = _problem(m=60, d=2, seed=2)
    o = optimum(X, y, 4)
    w = np.array(o.w)
    # Grid of ±1e-3 around w* at 2e-5 spacing: its minimum is never below L*, and lies next to w*.
    t = np.linspace(-1e-3, 1e-3, 101)
    A, B = np.meshgrid(w[0] + t, w[1] + t, indexing="ij")
    R = X[:, 0][None, None, :] * A[..., None] + X[:, 1][None, None, :] * B[..., None] - y
    L = (R**4).mean(-1) / 4
    assert L.min() >= o.loss - 1e-15
    i, j = np.unravel_index(L.argmin(), L.shape)
    assert abs(t[i]) <= 2.1e-5 and abs(t[j]) <= 2.1e-5


def test_optimum_accepts_tensors_and_checks_shapes():
    X, y = _problem(m=30, d=3)
    o = optimum(torch.from_numpy(X), torch.from_numpy(y).reshape(-1, 1), 2)
    assert len(o.w) == 3
    with pytest.raises(ValueError, match="rows"):
        optimum(X, y[:-1], 2)
    with pytest.raises(ValueError, match="p must be"):
        optimum(X, y, 1.5)


# ---------------------------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("name", LINEAR)
def test_tiny_end_to_end_run(name, tmp_path, tiny_data):
    run_dir = tiny_run(name, tmp_path, tiny_data)
    assert run_dir.parent == tmp_path and run_dir.name.startswith(name + "-")  # overrides → hashed dir
    for f in ("config.json", "environment.json", "results.json", "report.md", "curves.csv"):
        assert (run_dir / f).is_file(), f
    assert list(run_dir.glob("*.png"))
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["experiment"] == name and cfg["overrides"] == TINY[name]
    env = json.loads((run_dir / "environment.json").read_text())
    for k in ("python", "torch", "numpy", "device", "dtype", "git_rev", "seeds", "data_label", "sessions"):
        assert k in env, k
    assert env["sessions"][-1]["completed"] is True and env["dtype"] == "float64"
    results = json.loads((run_dir / "results.json").read_text())
    assert "synthetic" in results["data_label"]
    report = (run_dir / "report.md").read_text()
    assert "| experiment | model | ours | paper | data | note |" in report
    assert "SYNTHETIC STAND-IN" in report
    rows = get_experiment(name).report_rows(results)
    assert rows and all(r.experiment == name for r in rows)
    for panel in results["panels"]:
        assert panel["optimum"]["grad_norm"] < 1e-9
        for m in panel["models"]:
            assert m["all_diverged"] or len(m["distance"]) == len(m.get("steps") or panel["steps"])


def test_same_seed_same_numbers(tmp_path, tiny_data):
    a = tiny_run("fig3", tmp_path / "a", tiny_data)
    b = tiny_run("fig3", tmp_path / "b", tiny_data)
    assert _numbers(a) == _numbers(b)
    ra = json.loads((a / "results.json").read_text())
    c = tiny_run("fig3", tmp_path / "c", tiny_data, extra=["seed=1"])
    rc = json.loads((c / "results.json").read_text())
    assert rc["panels"][0]["models"][0]["distance"] != ra["panels"][0]["models"][0]["distance"]


def _numbers(run_dir):
    panels = json.loads((run_dir / "results.json").read_text())["panels"]
    return [{k: v for k, v in p.items() if k != "seconds"} for p in panels]  # wall time differs


class _Counter:
    def __init__(self, real, interrupt_on=None):
        self.real, self.calls, self.interrupt_on = real, 0, interrupt_on

    def __call__(self, *args, **kw):
        self.calls += 1
        if self.calls == self.interrupt_on:
            raise KeyboardInterrupt
        return self.real(*args, **kw)


def test_rerun_reuses_finished_units(tmp_path, tiny_data, monkeypatch):
    counter = _Counter(engine.run_sweep)
    monkeypatch.setattr(engine, "run_sweep", counter)
    first = tiny_run("fig3", tmp_path, tiny_data)
    assert counter.calls == 2  # one unit per loss
    before = (first / "results.json").read_text()
    again = tiny_run("fig3", tmp_path, tiny_data)
    assert again == first and counter.calls == 2  # nothing recomputed
    assert (first / "results.json").read_text() == before
    env = json.loads((first / "environment.json").read_text())
    assert len(env["sessions"]) == 2 and sorted(env["sessions"][1]["units_reused"]) == ["l2", "l4", "optimum-l2", "optimum-l4"]


def test_interrupt_keeps_finished_units_and_resume_completes(tmp_path, tiny_data, monkeypatch):
    counter = _Counter(engine.run_sweep, interrupt_on=2)
    monkeypatch.setattr(engine, "run_sweep", counter)
    with pytest.raises(KeyboardInterrupt):
        tiny_run("fig3", tmp_path / "x", tiny_data)
    run_dir = next((tmp_path / "x").iterdir())
    assert (run_dir / "units" / "l2.json").is_file() and not (run_dir / "units" / "l4.json").exists()
    assert not (run_dir / "results.json").exists()
    counter.interrupt_on = None
    tiny_run("fig3", tmp_path / "x", tiny_data)
    assert counter.calls == 3  # only the unfinished unit ran again
    fresh = tiny_run("fig3", tmp_path / "y", tiny_data)
    assert _numbers(run_dir) == _numbers(fresh)


def test_a_run_dir_with_another_config_is_never_mixed(tmp_path, tiny_data):
    run_dir = tiny_run("fig3", tmp_path, tiny_data)
    rec = json.loads((run_dir / "config.json").read_text())
    rec["config"]["steps"] = 999
    (run_dir / "config.json").write_text(json.dumps(rec))
    with pytest.raises(ValueError, match=r"holds a different run.*config.steps: saved 999, now 120"):
        tiny_run("fig3", tmp_path, tiny_data)
    other = tiny_run("fig3", tmp_path, tiny_data, extra=["steps=100"])
    assert other != run_dir  # different overrides → different directory


def test_unknown_experiment_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown experiment 'fig9'; choose from: fig2, fig3, fig4, fig5-left"):
        get_experiment("fig9")


def test_fig2_gap_metric():
    from overparam.experiments.fig2 import gaps

    la, rel = gaps([1.0, 0.1, None, 0.01], [1.0, 0.2, 0.5, 0.01])
    assert la == pytest.approx(math.log10(2)) and rel == pytest.approx(0.5)
    assert gaps([None], [1.0]) == (None, None)


def test_a_model_stalled_at_every_lr_is_not_an_edge_choice():
    sweep = {"p": 4.0, "steps": [0, 10], "seconds": 1.0, "diverged_at": [None, None, 10],
             "specs": [{"name": "deep|lr=0.001", "lr": 1e-3}, {"name": "deep|lr=0.01", "lr": 1e-2},
                       {"name": "deep|lr=0.1", "lr": 1e-1}],
             "losses": [[2.0, 2.0], [2.0, 2.0 - 1e-6], [2.0, None]]}
    opt = {"loss": 0.5, "loss_paper": 2.0, "grad_norm": 1e-14, "method": "x", "newton_steps": 0}
    (m,) = summarize_sweep(sweep, opt, "t")["models"]
    assert m["stalled"] and m["edge"] is None and m["chosen_lr"] == 1e-2
    from overparam.experiments.base import panel_notes

    assert "stalled at every learning rate" in " ".join(panel_notes([summarize_sweep(sweep, opt, "t")]))


def test_a_module_declared_dtype_is_recorded(tmp_path, tiny_data, monkeypatch):
    assert get_experiment("convnet").DTYPE is torch.float32  # the convnet trains in float32
    monkeypatch.setattr(get_experiment("fig5-left"), "DTYPE", torch.float32, raising=False)
    run_dir = tiny_run("fig5-left", tmp_path, tiny_data)
    assert json.loads((run_dir / "environment.json").read_text())["dtype"] == "float32"


def test_paper_objective_is_p_times_the_gradient(tmp_path, tiny_data):
    """objective=paper (mean |r|^p) on GD without weight decay = the lp_loss run with the lrs × p."""
    a = json.loads((tiny_run("fig3", tmp_path / "a", tiny_data, ["losses=4.0", "objective=paper"])
                    / "results.json").read_text())
    b = json.loads((run_experiment("fig3", ["steps=120", "lrs=4e-3,4e-2,0.4", "record_every=40", "losses=4.0",
                                            "objective=lp_loss"],
                                   out=tmp_path / "b", data=tiny_data, progress=False, echo=lambda s: None)
                    / "results.json").read_text())
    da = {m["model"]: (m["chosen_lr"], m["distance"]) for m in a["panels"][0]["models"] if not m["all_diverged"]}
    db = {m["model"]: (m["chosen_lr"], m["distance"]) for m in b["panels"][0]["models"] if not m["all_diverged"]}
    assert da and da.keys() == db.keys()
    for name in da:
        assert 4 * da[name][0] == pytest.approx(db[name][0])  # the same rate, in the other scale
        assert da[name][1] == pytest.approx(db[name][1], rel=1e-10)


def test_linear_experiments_default_to_the_paper_objective():
    for name in ("fig2", "fig3", "fig4", "fig5-left"):
        assert get_experiment(name).Config().objective == "paper"
        assert get_experiment(name).QUICK.objective == "paper"


def test_unknown_objective_is_rejected():
    with pytest.raises(ValueError, match="objective must be one of"):
        get_experiment("fig3").Config(objective="mean")


def _fig3_results(finals):
    """A minimal fig3 results dict: finals = {p: {depth: final distance}}."""
    panels = []
    for p, per_depth in finals.items():
        models = [{"model": "linear (depth 1)" if N == 1 else f"depth {N}", "distance": [1.0, d]}
                  for N, d in per_depth.items()]
        panels.append({"p": p, "steps": [0, 100], "models": models})
    return {"panels": panels, "steps": 100, "depths": [1, 2, 3], "losses": list(finals)}


def test_fig3_headline_states_the_verdict_per_loss():
    fig3 = get_experiment("fig3")
    lines = fig3.headline(_fig3_results({2.0: {1: 1.0, 2: 1.02, 3: 0.97}, 4.0: {1: 1.0, 2: 0.5, 3: 0.8}}))
    assert lines[0].startswith("ℓ2: depth does not accelerate") and "0.98 (N=2)" in lines[0]
    assert lines[1].startswith("ℓ4: depth accelerates") and "2 (N=2), 1.25 (N=3)" in lines[1]
    mixed = fig3.headline(_fig3_results({4.0: {1: 1.0, 2: 0.5, 3: 1.0}}))
    assert mixed[0].startswith("ℓ4: mixed: depth accelerates at depth 2 —")


def test_combined_report_opens_with_the_headline(tmp_path, tiny_data):
    from overparam.report import write_combined_report

    run_dir = tiny_run("fig3", tmp_path, tiny_data)
    assert "**ℓ2: depth" in (run_dir / "report.md").read_text()  # the run's own report states it too
    text = write_combined_report(tmp_path, [("fig3", run_dir, 1.0)], {}, quick=False, seconds=1.0).read_text()
    assert "## Headline" in text and "- **fig3**" in text
    assert text.index("## Headline") < text.index("### fig3")


@pytest.mark.slow
def test_quick_fig3_on_the_stand_in_shows_depth_accelerating_l4_but_not_l2(tmp_path):
    """The issue's done-when, pinned: `overparam reproduce --quick`'s fig3 (the QUICK config, ~70 s)."""
    run_dir = run_experiment("fig3", quick=True, out=tmp_path, progress=False, echo=lambda s: None)
    results = json.loads((run_dir / "results.json").read_text())
    assert "synthetic" in results["data_label"]
    acc = get_experiment("fig3").acceleration(results)
    assert acc[4.0, 2]["accelerates"] and acc[4.0, 3]["accelerates"], acc
    assert not acc[2.0, 2]["accelerates"] and not acc[2.0, 3]["accelerates"], acc
    report = (run_dir / "report.md").read_text()
    assert "**ℓ4: depth accelerates" in report and "**ℓ2: depth does not accelerate" in report


def test_fig2_headline_counts_the_pairs_that_agree():
    fig2 = get_experiment("fig2")
    c = lambda p, N, w, late: {"p": p, "depth": N, "width": w, "late_max_abs_log10_gap": late,  # noqa: E731
                               "max_abs_log10_gap": 0.3}
    res = {"lr": 1e-4, "comparisons": [c(2.0, 2, 1, 0.001), c(2.0, 3, 1, 0.5), c(4.0, 3, 100, None)]}
    (line,) = fig2.headline(res)
    assert "1 of 3 (loss, depth, width) pairs agree within |Δlog10 d| ≤ 0.02" in line
    assert "the worst, ℓ2 depth 3 width 1, differs by 0.5" in line and "1 pair(s) diverged" in line


@pytest.mark.parametrize("name", ["fig2", "fig4", "fig5-left"])
def test_headlines_of_tiny_runs(name, tmp_path, tiny_data):
    run_dir = tiny_run(name, tmp_path, tiny_data)
    lines = get_experiment(name).headline(json.loads((run_dir / "results.json").read_text()))
    assert lines and all(isinstance(s, str) and "paper" in s for s in lines)
    report = (run_dir / "report.md").read_text()
    assert all(f"**{s}**" in report for s in lines)
