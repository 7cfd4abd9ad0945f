"""Figure 2: the end-to-end rule (Eq 12, "emulation") vs real depth-2/3 networks, widths 1 and 100.

ℓ2 and ℓ4, one untuned lr (1e-4; the paper does not state it), 250K GD iterations, near-zero init
N(0, 0.01²). The emulation of a network starts at that network's end-to-end product (the sweep engine
draws the same factors), so each (depth, width) pair is compared from the same W_e(0). The paper: the
curves coincide and the width does not matter. We report the largest gap over the recorded steps,
max |log10 d_emul − log10 d_net|, and the largest relative gap max |d_emul − d_net| / d_net.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .base import (check_objective, Row, atomic_write_text, curves_csv, fmt, panel_notes, spec_name,
                   summarize_sweep, objective_scale)

NAME = "fig2"
SUMMARY = "Fig 2: end-to-end rule (Eq 12) vs depth-2/3 nets, widths 1 and 100, ℓ2 and ℓ4, 250K its"


@dataclass(frozen=True)
class Config:
    steps: int = 250_000
    # The paper does not state Fig 2's lr. With the objective mean |r|^p every ℓ4 curve diverges on the
    # 8/10-batch copy at 1e-3 (within 6K iterations) and at 5e-4, and ℓ2 at depth 3 oscillates at 1e-3;
    # 1e-4 is the largest paper-grid rate at which every curve stays stable (REPRODUCTION.md).
    lr: float = 1e-4
    depths: tuple[int, ...] = (2, 3)
    widths: tuple[int, ...] = (1, 100)
    losses: tuple[float, ...] = (2.0, 4.0)
    init_std: float = 0.01
    seed: int = 0
    record_every: int = 250
    objective: str = "paper"  # "paper" (mean |r|^p, the plotted quantity) | "lp_loss" (mean (1/p)|r|^p: 1/p× the gradient)

    def __post_init__(self):
        check_objective(self.objective)
        if self.steps < 1 or self.record_every < 1:
            raise ValueError(f"steps and record_every must be >= 1, got {self.steps!r}, {self.record_every!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not self.depths or any(n < 2 for n in self.depths):
            raise ValueError(f"depths must be ints >= 2, got {self.depths!r}")
        if not self.widths or any(w < 1 for w in self.widths):
            raise ValueError(f"widths must be positive ints, got {self.widths!r}")
        if not self.losses or any(p < 2 for p in self.losses):
            raise ValueError(f"losses must be exponents p >= 2, got {self.losses!r}")


# Quick: 20K iterations at 1e-3, stable on the stand-in; at 1e-4 the depth-3 nets do not leave the
# plateau near W_e = 0 within 20K.
QUICK = Config(steps=20_000, lr=1e-3, record_every=200)


def _net(N, w):
    return f"depth {N} width {w}"


def _emu(N, w):
    return f"emulation depth {N} (init of width {w})"


def gaps(curve_a, curve_b):
    """(max |log10 a − log10 b|, max |a − b| / b) over steps where both are finite and > 0."""
    la, rel = 0.0, 0.0
    n = 0
    for a, b in zip(curve_a, curve_b):
        if a is None or b is None or not (a > 0 and b > 0) or not (math.isfinite(a) and math.isfinite(b)):
            continue
        la = max(la, abs(math.log10(a) - math.log10(b)))
        rel = max(rel, abs(a - b) / b)
        n += 1
    return (la, rel) if n else (None, None)


def run(config: Config, ctx) -> dict:
    from overparam.sweep import RunSpec

    ctx.seeds["init"] = config.seed
    panels, comparisons = [], []
    for p in config.losses:
        specs = []
        for N in config.depths:
            for w in config.widths:
                kw = dict(depth=N, hidden=w, lr=config.lr, init="normal", init_std=config.init_std, seed=config.seed)
                specs.append(RunSpec(name=spec_name(_net(N, w), config.lr), method="gd", **kw))
                specs.append(RunSpec(name=spec_name(_emu(N, w), config.lr), method="emulation", **kw))
        sweep = ctx.sweep(f"l{p:g}", specs, steps=config.steps, p=p, record_every=config.record_every,
                          grad_scale=objective_scale(config.objective, p))
        panel = summarize_sweep(sweep, ctx.optimum(p), f"ℓ{p:g} loss (lr {config.lr:g})", select=False,
                                zero_distance=ctx.zero_distance(p))
        curves = {m["model"]: m["distance"] for m in panel["models"]}
        for N in config.depths:
            for w in config.widths:
                a, b = curves.get(_emu(N, w)), curves.get(_net(N, w))
                la, rel = gaps(a, b) if (a and b) else (None, None)
                half = len(a) // 2 if a else 0
                late, _ = gaps(a[half:], b[half:]) if (a and b) else (None, None)
                comparisons.append({"p": p, "depth": N, "width": w, "max_abs_log10_gap": la, "max_rel_gap": rel,
                                    "late_max_abs_log10_gap": late,
                                    "final_net": b[-1] if b else None, "final_emulation": a[-1] if a else None})
        panels.append(panel)
    atomic_write_text(ctx.run_dir / "curves.csv", curves_csv(panels))
    return {"panels": panels, "comparisons": comparisons, "steps": config.steps, "lr": config.lr}


_COLORS = ("tab:blue", "tab:orange", "tab:red", "tab:green", "tab:purple", "tab:brown")


def _style_for(results):
    """Net solid, its emulation dashed and thicker, one color per (depth, width) pair."""
    pairs = []
    for c in results.get("comparisons", []):
        if (c["depth"], c["width"]) not in pairs:
            pairs.append((c["depth"], c["width"]))

    def style(model):
        name = model["model"]
        emu = name.startswith("emulation")
        for i, (N, w) in enumerate(pairs):
            if name in (_net(N, w), _emu(N, w)):
                return {"color": _COLORS[i % len(_COLORS)], "linestyle": "--" if emu else "-",
                        "linewidth": 2.6 if emu else 1.3, "alpha": 0.75 if emu else 1.0}
        return {}

    return style


def figures(results, run_dir) -> list[Path]:
    from overparam.plot import plot_panels

    title = (f"Fig 2 — end-to-end rule (dashed) vs real nets (solid), lr {results['lr']:g}, "
             f"{results['steps']:,} its — data: {results['data_label']}")
    return [plot_panels(results["panels"], Path(run_dir) / "fig2.png", title, styles=_style_for(results))]


# Two curves "agree" over the second half when their log10 distances differ by at most this (≈ 5%).
AGREE_LOG10 = 0.02


def headline(results) -> list[str]:
    """How many (loss, depth, width) pairs agree over the second half of the run, and the worst one."""
    cs = results["comparisons"]
    late = [c for c in cs if c.get("late_max_abs_log10_gap") is not None]
    agree = [c for c in late if c["late_max_abs_log10_gap"] <= AGREE_LOG10]
    worst = max(late, key=lambda c: c["late_max_abs_log10_gap"], default=None)
    line = (f"end-to-end rule (Eq 12) vs networks at lr {fmt(results['lr'])}: over the second half of the run "
            f"{len(agree)} of {len(cs)} (loss, depth, width) pairs agree within |Δlog10 d| ≤ {AGREE_LOG10:g}")
    if worst is not None and worst not in agree:
        line += (f"; the worst, ℓ{worst['p']:g} depth {worst['depth']} width {worst['width']}, differs by "
                 f"{fmt(worst['late_max_abs_log10_gap'])}")
    if len(late) < len(cs):
        line += f"; {len(cs) - len(late)} pair(s) diverged before the second half"
    return [line + "; paper: the curves coincide."]


def report_rows(results) -> list[Row]:
    rows = []
    for c in results["comparisons"]:
        rows.append(Row(NAME, f"ℓ{c['p']:g} depth {c['depth']} width {c['width']}: max |Δlog10 d| (emulation vs net)",
                        fmt(c["max_abs_log10_gap"]), "≈ 0 (curves coincide)",
                        f"max relative gap {fmt(c['max_rel_gap'])}; max |Δlog10 d| over the second half "
                        f"{fmt(c.get('late_max_abs_log10_gap'))}; final net {fmt(c['final_net'])}, "
                        f"emulation {fmt(c['final_emulation'])}"))
    return rows


def report_notes(results) -> list[str]:
    return (["one untuned lr for every curve (no grid search); the emulation starts at its network's "
             "W_e(0) (near-zero init is only approximately balanced, Eq 7)",
             "max |Δlog10 d| is taken over every recorded step: where a curve drops steeply off the plateau "
             "near W_e = 0, a small shift in that escape time gives a large vertical gap; the second-half "
             "gap shows the agreement after the escapes"] + panel_notes(results["panels"]))
