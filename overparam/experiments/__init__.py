"""The paper's experiments, one module per figure, and the registry the CLI uses.

To add an experiment: write the module (see ``overparam.experiments.base`` for the protocol) and add
one line to ``_MODULES`` below. ``list_experiments()`` imports nothing heavy; a module that fails to
import (e.g. a missing optional dependency) is listed with the reason.

Public API (what ``overparam.cli`` calls):

- ``list_experiments() -> [(name, summary)]``
- ``get_experiment(name) -> module``
- ``run_experiment(name, overrides=(), quick=False, data_dir=None, out="runs", device=None) -> Path``
  (the run directory)
- ``reproduce(quick=False, data_dir=None, out="runs", device=None) -> Path`` (``<out>/report.md``)
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import time
import traceback
from pathlib import Path

import torch

from . import base
from .base import Context, atomic_write_json, config_hash, config_to_dict, read_json

__all__ = ["list_experiments", "get_experiment", "run_experiment", "reproduce", "register", "resolve_run_dir"]

# CLI name → module. Order = the order of `overparam list` and of `reproduce`.
_MODULES: dict[str, str] = {
    "fig2": "overparam.experiments.fig2",
    "fig3": "overparam.experiments.fig3",
    "fig4": "overparam.experiments.fig4",
    "fig5-left": "overparam.experiments.fig5_left",
    "convnet": "overparam.experiments.convnet",  # Fig 5 right (issue 4); skipped while absent
}


def register(name: str, module: str) -> None:
    """Register an experiment module under a CLI name (for plug-ins outside this package)."""
    _MODULES[name] = module


def _available() -> list[str]:
    names = []
    for name, mod in _MODULES.items():
        if importlib.util.find_spec(mod) is not None:
            names.append(name)
    return names


def get_experiment(name: str):
    if name not in _MODULES or importlib.util.find_spec(_MODULES[name]) is None:
        raise ValueError(f"unknown experiment {name!r}; choose from: {', '.join(_available())}")
    module = importlib.import_module(_MODULES[name])
    for attr in ("NAME", "SUMMARY", "Config", "QUICK", "run", "figures", "report_rows"):
        if not hasattr(module, attr):
            raise TypeError(f"experiment module {module.__name__} lacks {attr!r} (see overparam.experiments.base)")
    return module


def list_experiments() -> list[tuple[str, str]]:
    out = []
    for name in _available():
        try:
            out.append((name, get_experiment(name).SUMMARY))
        except Exception as exc:  # noqa: BLE001 - listed with the reason, not fatal
            out.append((name, f"(unavailable: {type(exc).__name__}: {exc})"))
    return out


def _device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"invalid --device {device!r}") from None


def _data_source(data_dir, data) -> str:
    if data is not None:
        return str(getattr(data, "source", None) or getattr(data, "label", "given"))
    if data_dir is None:
        data_dir = os.environ.get("OVERPARAM_DATA") or None
    return "synthetic" if data_dir is None else os.path.abspath(str(data_dir))


def resolve_run_dir(name: str, config, *, quick: bool, overridden: bool, out) -> Path:
    """``<out>/<name>[-quick][-<hash>]``: the hash only when overrides are given."""
    leaf = name + ("-quick" if quick else "") + (f"-{config_hash(config)}" if overridden else "")
    return Path(out) / leaf


def _check_run_dir(run_dir: Path, record: dict) -> None:
    path = run_dir / "config.json"
    if not path.exists():
        return
    saved = read_json(path)
    diffs = []
    for k in ("experiment", "quick", "data_source"):
        if saved.get(k) != record[k]:
            diffs.append(f"{k}: saved {saved.get(k)!r}, now {record[k]!r}")
    a, b = saved.get("config", {}), record["config"]
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            diffs.append(f"config.{k}: saved {a.get(k)!r}, now {b.get(k)!r}")
    if diffs:
        raise ValueError(f"run directory {str(run_dir)!r} holds a different run ({'; '.join(diffs)}); "
                         "use another --out or delete that directory")


def run_experiment(name: str, overrides=(), quick: bool = False, data_dir=None, out="runs", device=None, *,
                   data=None, progress: bool = True, echo=print) -> Path:
    """Run one experiment into its run directory and return that directory.

    Resumes: finished units are reused, an interrupted unit continues from its checkpoint.
    ``data``: preloaded regression data (tests); otherwise ``data_dir`` / $OVERPARAM_DATA / synthetic.
    """
    module = get_experiment(name)
    overrides = list(overrides or ())
    config = module.QUICK if quick else module.Config()
    if overrides:
        config = base.apply_overrides(config, overrides)
    run_dir = resolve_run_dir(name, config, quick=quick, overridden=bool(overrides), out=out)
    dev = _device(device)
    record = {"experiment": name, "quick": bool(quick), "overrides": overrides,
              "data_source": _data_source(data_dir, data), "config": config_to_dict(config)}
    _check_run_dir(run_dir, record)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "config.json").exists():
        atomic_write_json(run_dir / "config.json", record)

    ctx = Context(run_dir=run_dir, name=name, quick=quick, device=dev, progress=progress,
                  data_dir=None if data_dir is None else str(data_dir), _data=data, echo=echo,
                  dtype=getattr(module, "DTYPE", torch.float64))  # a module may declare its dtype
    env_path = run_dir / "environment.json"
    env = read_json(env_path) if env_path.exists() else {"created": base._now(), "sessions": []}
    env.update(base.environment_info(dev, ctx.dtype))
    session = {"started": base._now()}
    env["sessions"].append(session)
    atomic_write_json(env_path, env)
    ctx.log(f"run directory {run_dir}")
    t0 = time.perf_counter()
    try:
        results = module.run(config, ctx)
    finally:
        session.update(finished=base._now(), seconds=round(time.perf_counter() - t0, 2),
                       units_computed=ctx.computed_units, units_reused=ctx.reused_units,
                       completed=False)
        env.update(data_label=ctx.data_label, seeds=ctx.seeds)
        if ctx._data is not None and hasattr(ctx._data, "X"):
            env["data_shape"] = list(ctx._data.X.shape)
        atomic_write_json(env_path, env)
    results = dict(results)
    results.setdefault("experiment", name)
    results.setdefault("quick", bool(quick))
    results.setdefault("data_label", ctx.data_label)
    atomic_write_json(run_dir / "results.json", results)
    results = read_json(run_dir / "results.json")  # figures see exactly what `overparam plot` sees
    paths = module.figures(results, run_dir)
    from ..report import write_run_report

    report = write_run_report(run_dir, module, results, read_json(run_dir / "config.json"), read_json(env_path))
    session["completed"] = True
    atomic_write_json(env_path, env)
    ctx.log(f"figures: {', '.join(str(p) for p in paths)}")
    ctx.log(f"report: {report}")
    return run_dir


def reproduce(quick: bool = False, data_dir=None, out="runs", device=None, *, data=None, progress: bool = True,
              names=None, echo=print) -> Path:
    """Every registered experiment, then ``<out>/report.md`` combining their reports.

    An experiment that fails (other than by Ctrl-C) is reported as failed and the others still run;
    the combined report lists it. Returns the combined report's path.
    """
    from ..report import write_combined_report

    names = list(names) if names is not None else _available()
    runs, failures = [], {}
    t0 = time.perf_counter()
    for name in names:
        t = time.perf_counter()
        try:
            run_dir = run_experiment(name, (), quick=quick, data_dir=data_dir, out=out, device=device, data=data,
                                     progress=progress, echo=echo)
            runs.append((name, run_dir, time.perf_counter() - t))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one failing experiment must not lose the others
            if isinstance(exc.__context__, KeyboardInterrupt):
                raise KeyboardInterrupt from exc  # Ctrl-C whose cleanup failed: still stop
            failures[name] = f"{type(exc).__name__}: {exc}"
            echo(f"[{name}] FAILED: {failures[name]}")
            echo(traceback.format_exc())
    path = write_combined_report(Path(out), runs, failures, quick=quick, seconds=time.perf_counter() - t0)
    echo(f"combined report: {path}  ({time.perf_counter() - t0:.0f} s)")
    if failures:
        raise RuntimeError(f"experiments failed: {', '.join(failures)} (see {path})")
    return path
