"""Figure 4: ℓ4 — depth-3 GD vs AdaGrad and AdaDelta on the linear model (1M its), and Adam on
depth 1/2/3 (200K its); every learning rate grid-searched per model (Section 8).

The paper: AdaGrad 5.8e-2 (slower than plain GD), AdaDelta 2.1e-2, depth-3 GD 6.4e-3 at 1M; Adam
1.2e-2 / 3.9e-3 / 3.0e-3 for depth 1/2/3 at 200K — depth helps Adam too. Optimizers use torch.optim's
default hyperparameters (AdaDelta: rho 0.9, eps 1e-6; Adam: betas (0.9, 0.999), eps 1e-8).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .base import (check_objective, SELECTION_RULE, Row, atomic_write_text, curves_csv, fmt, panel_notes,
                   spec_name, summarize_sweep, objective_scale)
from .fig3 import PAPER_GRID

NAME = "fig4"
SUMMARY = "Fig 4: ℓ4 — depth-3 GD vs AdaGrad/AdaDelta (1M its); Adam on depth 1/2/3 (200K its)"

PAPER_LEFT = {"GD depth 3": 6.4e-3, "AdaGrad (linear)": 5.8e-2, "AdaDelta (linear)": 2.1e-2}
PAPER_RIGHT = {1: 1.2e-2, 2: 3.9e-3, 3: 3.0e-3}


@dataclass(frozen=True)
class Config:
    steps: int = 1_000_000
    adam_steps: int = 200_000
    p: float = 4.0
    gd_depth: int = 3
    gd_lrs: tuple[float, ...] = PAPER_GRID
    adagrad_lrs: tuple[float, ...] = PAPER_GRID
    adadelta_lrs: tuple[float, ...] = PAPER_GRID
    adam_lrs: tuple[float, ...] = PAPER_GRID
    adam_depths: tuple[int, ...] = (1, 2, 3)
    hidden: int = 1
    init_std: float = 0.01
    seed: int = 0
    record_every: int = 1000
    objective: str = "paper"  # "paper" (mean |r|^p, the plotted quantity) | "lp_loss" (mean (1/p)|r|^p: 1/p× the gradient)

    def __post_init__(self):
        check_objective(self.objective)
        if self.steps < 1 or self.adam_steps < 1 or self.record_every < 1:
            raise ValueError(f"steps, adam_steps and record_every must be >= 1, got "
                             f"{self.steps!r}, {self.adam_steps!r}, {self.record_every!r}")
        for name in ("gd_lrs", "adagrad_lrs", "adadelta_lrs", "adam_lrs"):
            v = getattr(self, name)
            if not v or any(not a > 0 for a in v):
                raise ValueError(f"{name} must be a non-empty tuple of positive floats, got {v!r}")
        if self.gd_depth < 1 or not self.adam_depths or any(n < 1 for n in self.adam_depths):
            raise ValueError(f"depths must be positive ints, got {self.gd_depth!r}, {self.adam_depths!r}")
        if self.p < 2:
            raise ValueError(f"p must be >= 2, got {self.p!r}")


# Quick: 10K its; each grid thinned to the paper-grid rate that wins at this length on the synthetic
# stand-in (objective "paper": GD 1e-3, AdaGrad 1e-2, AdaDelta 1e-2, Adam 5e-3) and one either side.
QUICK = Config(steps=10_000, adam_steps=10_000, record_every=100,
               gd_lrs=(5e-4, 1e-3, 5e-3), adagrad_lrs=(5e-3, 1e-2, 5e-2), adadelta_lrs=(5e-3, 1e-2, 5e-2),
               adam_lrs=(1e-3, 5e-3, 1e-2))


def run(config: Config, ctx) -> dict:
    from overparam.sweep import RunSpec

    ctx.seeds["init"] = config.seed
    p = config.p
    kw = dict(hidden=config.hidden, init="normal", init_std=config.init_std, seed=config.seed)
    left = ([RunSpec(name=spec_name(f"GD depth {config.gd_depth}", a), depth=config.gd_depth, method="gd", lr=a, **kw)
             for a in config.gd_lrs]
            + [RunSpec(name=spec_name("AdaGrad (linear)", a), depth=1, method="adagrad", lr=a, **kw)
               for a in config.adagrad_lrs]
            + [RunSpec(name=spec_name("AdaDelta (linear)", a), depth=1, method="adadelta", lr=a, **kw)
               for a in config.adadelta_lrs])
    right = [RunSpec(name=spec_name("Adam " + ("(linear)" if N == 1 else f"depth {N}"), a), depth=N, method="adam",
                     lr=a, **kw) for N in config.adam_depths for a in config.adam_lrs]
    opt = ctx.optimum(p)
    zero = ctx.zero_distance(p)
    panels = [
        summarize_sweep(ctx.sweep("left", left, steps=config.steps, p=p, record_every=config.record_every,
                          grad_scale=objective_scale(config.objective, p)), opt,
                        f"ℓ{p:g}: GD depth {config.gd_depth} vs AdaGrad / AdaDelta", zero_distance=zero),
        summarize_sweep(ctx.sweep("adam", right, steps=config.adam_steps, p=p, record_every=config.record_every,
                          grad_scale=objective_scale(config.objective, p)),
                        opt, f"ℓ{p:g}: Adam on depth {'/'.join(map(str, config.adam_depths))}", zero_distance=zero),
    ]
    atomic_write_text(ctx.run_dir / "curves.csv", curves_csv(panels))
    return {"panels": panels, "steps": config.steps, "adam_steps": config.adam_steps, "p": p}


def figures(results, run_dir) -> list[Path]:
    from overparam.plot import plot_panels

    title = (f"Fig 4 — left {results['steps']:,} its, right {results['adam_steps']:,} its — "
             f"data: {results['data_label']}")
    return [plot_panels(results["panels"], Path(run_dir) / "fig4.png", title)]


def headline(results) -> list[str]:
    """Depth-N GD against AdaGrad and AdaDelta (their final / its final), and Adam's depth-1 / depth-N."""
    left, right = results["panels"]
    finals = {m["model"]: (m["distance"][-1] if m["distance"] else None) for m in left["models"]}
    gd = next((k for k in finals if k.startswith("GD")), None)
    out = []
    if gd and finals[gd]:
        vs = [f"{k.split()[0]} {fmt(finals[k] / finals[gd])}×" for k in finals if k != gd and finals[k]]
        ref = [f"{k.split()[0]} {fmt(v / PAPER_LEFT[gd])}×" for k, v in PAPER_LEFT.items() if k != gd and gd in PAPER_LEFT]
        out.append(f"{gd} at {results['steps']:,} its vs the adaptive methods on the linear model "
                   f"(their final distance / GD's; > 1: GD ahead): {', '.join(vs)}"
                   + (f"; paper: {', '.join(ref)}." if ref else "."))
    af = {m["model"]: (m["distance"][-1] if m["distance"] else None) for m in right["models"]}
    base = af.get("Adam (linear)")
    if base:
        deep = [f"{k.split()[-1]} {fmt(base / v)}×" for k, v in af.items() if k != "Adam (linear)" and v]
        ref = ", ".join(f"depth {N} {fmt(PAPER_RIGHT[1] / v)}×" for N, v in PAPER_RIGHT.items() if N != 1)
        out.append(f"Adam at {results['adam_steps']:,} its, linear / depth N final distance: depth {', depth '.join(deep)}"
                   f" (> 1: depth helps Adam); paper: {ref}.")
    return out


def report_rows(results) -> list[Row]:
    rows = []
    for panel, steps, full in ((results["panels"][0], results["steps"], 1_000_000),
                               (results["panels"][1], results["adam_steps"], 200_000)):
        at = f"at {steps:,} its" + ("" if steps == full else f" (paper: at {full:,})")
        for m in panel["models"]:
            name = m["model"]
            if name.startswith("Adam"):
                N = 1 if "linear" in name else int(name.split()[-1])
                paper = PAPER_RIGHT.get(N)
            else:
                paper = PAPER_LEFT.get(name)
            ours = fmt(m["distance"][-1]) if m["distance"] else "all diverged"
            rows.append(Row(NAME, f"{name} (lr {fmt(m['chosen_lr'])})", ours, fmt(paper),
                            at + (f"; lr at grid {m['edge']}" if m["edge"] else "")))
    return rows


def report_notes(results) -> list[str]:
    return [f"lr selection: {SELECTION_RULE}."] + panel_notes(results["panels"])
