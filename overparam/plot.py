"""Figures from saved results only (DESIGN principle 9): ``plot_run(run_dir)`` redraws a run's PNGs.

The distance curves follow the paper's style: log-scale y "distance from optimum" (the paper's
convention mean|r|^p − optimum, without the 1/p), x = iterations, one legend entry per model with
its chosen learning rate, the data label in the title.
"""

from __future__ import annotations

import math
from pathlib import Path

__all__ = ["plot_run", "plot_panels", "AXIS_LABEL"]

AXIS_LABEL = "distance from optimum\n(mean |r|^p − optimum; no 1/p)"


def _mpl():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _legend_label(model: dict) -> str:
    label = model["model"]
    if model.get("all_diverged"):
        return f"{label}: every lr diverged"
    lr = model.get("chosen_lr")
    if lr is None:
        return label
    tag = f"{label}, lr {lr:g}"
    if model.get("stalled"):
        tag += " (stalled at every lr)"
    elif model.get("edge"):
        tag += f" (grid {model['edge']} lr!)"
    return tag


def plot_panels(panels, path, title: str, *, ncols: int | None = None, styles=None) -> Path:
    """One subplot per panel; each model's chosen curve, log y. Returns the PNG path.

    ``panels``: dicts with ``title``, ``steps`` and ``models`` (each: ``model``, ``distance`` (list,
    None for missing), ``chosen_lr``, ``edge``, ``all_diverged``, optional ``style`` dict for
    matplotlib). ``styles``: optional callable model → dict of plot kwargs.
    """
    plt = _mpl()
    n = len(panels)
    ncols = ncols or min(n, 2)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.4 * ncols, 4.6 * nrows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        steps = panel.get("steps") or []
        for model in panel["models"]:
            st = model.get("steps") or steps
            ys = model.get("distance")
            kw = dict(model.get("style") or {})
            if styles is not None:
                kw.update(styles(model))
            if ys is None:
                ax.plot([], [], label=_legend_label(model), **kw)  # legend entry only
                continue
            pts = [(s, v) for s, v in zip(st, ys) if v is not None and v > 0 and math.isfinite(v)]
            xs = [a for a, _ in pts]
            vs = [b for _, b in pts]
            ax.plot(xs, vs, label=_legend_label(model), **kw)
        ax.set_yscale("log")
        ax.set_xlabel("iterations")
        ax.set_ylabel(AXIS_LABEL)
        ax.set_title(panel["title"])
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_run(run_dir) -> list[Path]:
    """Redraw the figures of a run directory from its ``config.json`` and ``results.json`` only."""
    from .experiments import get_experiment
    from .experiments.base import read_json

    run_dir = Path(run_dir)
    for f in ("config.json", "results.json"):
        if not (run_dir / f).exists():
            raise FileNotFoundError(f"{str(run_dir / f)!r} not found: not a finished run directory")
    config = read_json(run_dir / "config.json")
    module = get_experiment(config["experiment"])
    return [Path(p) for p in module.figures(read_json(run_dir / "results.json"), run_dir)]
