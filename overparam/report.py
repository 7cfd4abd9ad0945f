"""Markdown reports: one per run directory, and a combined one for ``overparam reproduce``.

Each table row: experiment, model, our value, the paper's value (read off its figures, ±10%), the
data used, and a note. Values are distances from the optimum in the paper's convention
(mean|r|^p − optimum, without the 1/p) unless the row says otherwise.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from .experiments.base import Row, atomic_write_text, read_json

__all__ = ["write_run_report", "write_combined_report", "rows_table"]

CONVENTION = ("Distances are the paper's axis: mean |r|^p − its minimum over W (no 1/p); the engine "
              "records L¹ = mean (1/p)|r|^p, so distance = p·(L¹ − L¹*). Optimum: ℓ2 by least squares "
              "(lstsq, float64), ℓ4 by BFGS warm-started at the ℓ2 solution, polished by Newton steps.")


def _esc(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def rows_table(rows, data_label: str) -> str:
    head = "| experiment | model | ours | paper | data | note |\n|---|---|---|---|---|---|\n"
    body = ""
    for r in rows:
        if isinstance(r, dict):
            r = Row(**r)
        body += (f"| {_esc(r.experiment)} | {_esc(r.model)} | {_esc(r.ours)} | {_esc(r.paper)} | "
                 f"{_esc(data_label)} | {_esc(r.note)} |\n")
    return head + body


def _section(module, results, config_record, env, level: int = 2) -> tuple[str, list]:
    rows = list(module.report_rows(results))
    notes = list(module.report_notes(results)) if hasattr(module, "report_notes") else []
    label = results.get("data_label") or env.get("data_label") or "n/a"
    synthetic = "synthetic" in str(label)
    sessions = env.get("sessions", [])
    secs = sum(s.get("seconds", 0) or 0 for s in sessions)
    lines = [f"{'#' * level} {module.NAME}{' (quick)' if config_record.get('quick') else ''} — {module.SUMMARY}", ""]
    lines.append(f"- data: **{label}**" + (" — the SYNTHETIC STAND-IN, not the paper's data" if synthetic else ""))
    lines.append(f"- config: `{config_record.get('config')}`"
                 + (f" (overrides: {config_record.get('overrides')})" if config_record.get("overrides") else ""))
    lines.append(f"- device {env.get('device')}, dtype {env.get('dtype')}, torch {env.get('torch')}, "
                 f"git {env.get('git_rev')}, seeds {env.get('seeds')}; wall time {secs:.0f} s over "
                 f"{len(sessions)} session(s)")
    lines += [f"- {n}" for n in notes]
    lines += ["", rows_table(rows, label)]
    return "\n".join(lines), rows


def write_run_report(run_dir, module, results, config_record, env) -> Path:
    run_dir = Path(run_dir)
    text, _ = _section(module, results, config_record, env)
    figs = sorted(p.name for p in run_dir.glob("*.png"))
    out = [f"# {module.NAME}: our reproduction vs the paper", "", CONVENTION, ""]
    if hasattr(module, "headline"):
        out += [f"**{h}**" for h in module.headline(results)] + [""]
    out += [text, ""]
    out += [f"![{f}]({f})" for f in figs]
    return atomic_write_text(run_dir / "report.md", "\n".join(out) + "\n")


def write_combined_report(out, runs, failures, *, quick: bool, seconds: float) -> Path:
    """``runs``: [(name, run_dir, seconds)], ``failures``: {name: message}."""
    from .experiments import get_experiment

    out = Path(out)
    stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    lines = [f"# Reproduction of Arora, Cohen & Hazan (ICML 2018){' — QUICK versions' if quick else ''}", "",
             f"Made {stamp} in {seconds:.0f} s. {CONVENTION}", ""]
    if quick:
        lines += ["**Quick mode**: short runs (fewer iterations, thinned lr grids) through the same code; the "
                  "paper's values are at its full lengths, so the numbers are not comparable one to one.", ""]
    labels = set()
    lines += ["| experiment | run directory | time (s) |", "|---|---|---|"]
    for name, run_dir, t in runs:
        lines.append(f"| {name} | [{Path(run_dir).name}]({Path(run_dir).name}/report.md) | {t:.0f} |")
    for name, msg in failures.items():
        lines.append(f"| {name} | **FAILED**: {_esc(msg)} | |")
    lines.append("")
    loaded = [(name, Path(run_dir), get_experiment(name), read_json(Path(run_dir) / "results.json"))
              for name, run_dir, _ in runs]
    # each experiment's main finding, stated first (module.headline, optional)
    headlines = [f"- **{name}** ({results.get('data_label')}): {h}" for name, _, module, results in loaded
                 if hasattr(module, "headline") for h in module.headline(results)]
    if headlines:
        lines += ["## Headline", ""] + headlines + [""]
    for name, run_dir, module, results in loaded:
        labels.add(str(results.get("data_label")))
        text, _ = _section(module, results, read_json(run_dir / "config.json"),
                           read_json(run_dir / "environment.json"), level=3)
        lines += [text, ""]
        lines += [f"![{p.name}]({run_dir.name}/{p.name})" for p in sorted(run_dir.glob("*.png"))] + [""]
    if any("synthetic" in lab for lab in labels):
        lines.insert(2, "**Data: the synthetic stand-in** (no --data-dir, no $OVERPARAM_DATA) — not the paper's data.\n")
    out.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
