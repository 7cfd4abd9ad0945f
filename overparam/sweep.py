"""The batched sweep engine: many (model, optimizer, lr) configurations as one tensor program.

A sweep is a list of :class:`RunSpec` configurations trained on the same data (X, y) with the same
ℓp loss for the same number of full-batch steps. :func:`run_sweep` stacks every configuration along a
leading axis, so that each step reads the data once for all G of them:

    R = W_all · Xᵀ − yᵀ         (G·k × d) · (d × m)        = (X W_allᵀ − y)ᵀ, one matmul for all
    D = |R|^{p−2} ∘ R           ∂(m · L¹)/∂prediction      (R³ for p = 4)
    ∇L¹(W_e) = D · X / m        (G·k × m) · (m × d)        = (Xᵀ Dᵀ)ᵀ / m, one matmul for all

where W_all holds the end-to-end matrices W_e = W_N ⋯ W_1 (Eq 5) of all configurations, formed from
the small factors first (the cheap association: a k-row vector times each factor; X never meets a
hidden layer). For p = 2 the gradient uses the sufficient statistics instead,
∇L¹(W_e) = W_e · (XᵀX/m) − (Xᵀy/m)ᵀ, which is ≈ 2m/d times fewer flops; losses are still measured on
the residuals. Everything after the data pass is small and batched per *group* of configurations
sharing (method, depth, widths, options); lr and weight decay are per-configuration tensors.

Methods (``RunSpec.method``):

- ``"gd"``: full-batch gradient descent on the factors with weight decay λ on every factor (Eq 4):
  W_j ← (1 − ηλ) W_j − η ∂L^N/∂W_j, ∂L^N/∂W_j = (W_N⋯W_{j+1})ᵀ ∇L¹(W_e) (W_{j−1}⋯W_1)ᵀ, computed
  in closed form (batched; faster than autograd over the small products). Depth 1 = the linear model.
- ``"emulation"``: the end-to-end rule Eq 10 applied to W_e directly (Claim 2's closed form, Eq 12,
  for a single output; one batched SVD per step otherwise):
  W_e ← (1 − ηλN) W_e − η precondition(W_e, ∇L¹(W_e), N). Its initial W_e is the end-to-end product
  of the factors that ``"gd"`` with the same (depth, hidden, init, init_std, seed) draws, so the
  emulation and the real network start at the same point (Fig 2). ``hidden`` matters for that only.
- ``"adagrad"``, ``"adadelta"``, ``"adam"``: torch.optim.Adagrad / Adadelta / Adam semantics
  (L2 weight decay added to the gradient, torch's defaults; ``options`` overrides them), applied to
  every factor. Equal to torch.optim configuration by configuration up to rounding.

Initialisation: configuration g draws its factors exactly like
``LinearNetwork(d, k, depth, hidden, init, std=init_std, generator=torch.Generator().manual_seed(seed),
dtype=dtype)`` — the engine builds that network and copies its factors — so the initial numbers
depend on the spec only, never on what else is in the sweep. The same sweep run twice gives bitwise
the same results; the same spec in a differently composed sweep agrees to rounding (≈ 1e-15
relative per step: the BLAS blocking depends on the number of configurations).

Recording: L¹(W_e) = mean_i (1/p)‖W_e x_i − y_i‖_p^p (:func:`overparam.losses.lp_loss`) at step 0,
every ``record_every`` steps and at the final step; the loss at step t is that of the parameters after
t updates. Divergence is checked at record steps only (no per-step host sync): a configuration whose
loss is non-finite or exceeds ``divergence_factor`` × its initial loss is frozen there. Its recorded
loss at that step is the offending value, every later recorded loss is NaN, ``diverged_at`` holds
the step (a multiple of ``record_every``: the instability may have started up to ``record_every``
steps earlier), and ``final_W`` holds its W_e at that step (possibly inf/NaN). Frozen
configurations are dropped from the batch, so they cost nothing afterwards and never stop, slow or
spam the others (no warnings).

Checkpoints: with ``checkpoint=path`` the whole batched state is written atomically (temporary
file + os.replace) every ``checkpoint_every_s`` seconds, at the end, and on KeyboardInterrupt
(which is then re-raised; Ctrl-C is honoured at the next poll point, within ``poll_every`` steps, so
that the state written is consistent — press twice to abort at once without a checkpoint). A later
call with the same arguments resumes from it and gives bitwise the same result as an uninterrupted
run. The file carries a fingerprint of the arguments (specs, steps, p, record_every, dtype,
divergence_factor, sufficient_stats, hashes of X and y); a mismatch raises ValueError naming the
differing fields — a checkpoint is never silently mixed with other arguments.

Interface (the contract the experiments code depends on)::

    RunSpec(name, depth=1, hidden=1, method="gd", lr=1e-3, weight_decay=0.0, init="normal",
            init_std=0.01, seed=0, options=())
    SweepResult(specs, steps, losses, diverged_at, final_W, seconds, p)
        steps: (T,) int64 record steps; losses: (G, T) float64; diverged_at: list[int | None];
        final_W: (G, k, d); seconds: wall time (summed over resumed runs); p: the loss exponent.
    run_sweep(X, y, specs, *, steps, p, record_every=None, dtype=torch.float64, device=None,
              progress=True, checkpoint=None, checkpoint_every_s=60.0, divergence_factor=1e6,
              sufficient_stats=None, callback=None, poll_every=500, num_threads=None) -> SweepResult

X: (m, d), y: (m, k) or (m,) (k = 1 in the paper). Devices follow X (or ``device``); dtype float64
by default, float32 allowed. User tensors are never modified.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
import signal
import threading
import time
import warnings
from dataclasses import dataclass

import torch

from .end_to_end import precondition, single_output_precondition
from .losses import check_p
from .models import INITS, LinearNetwork
from .theory.balanced import _check_widths

__all__ = ["RunSpec", "SweepResult", "run_sweep", "METHODS"]

METHODS = ("gd", "emulation", "adagrad", "adadelta", "adam")

# torch.optim defaults (torch 2.x) for the options each method accepts.
_DEFAULT_OPTIONS = {
    "gd": {},
    "emulation": {},
    "adagrad": {"lr_decay": 0.0, "initial_accumulator_value": 0.0, "eps": 1e-10},
    "adadelta": {"rho": 0.9, "eps": 1e-6},
    "adam": {"betas": (0.9, 0.999), "eps": 1e-8},
}

_CHECKPOINT_VERSION = 1


def _check_real(value, name: str, *, low: float = 0.0, high: float = math.inf, high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v >= low and (v < high if high_open else v <= high)):
        rng = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise ValueError(f"{name} must be a finite number in {rng}, got {value!r}")
    return v


@dataclass(frozen=True)
class RunSpec:
    """One configuration of a sweep. Validated on construction (ValueError naming the value).

    Attributes:
        name: unique within a sweep, e.g. ``"depth3-lr1e-3"``.
        depth: N ≥ 1; 1 is the linear model.
        hidden: hidden width(s) of the factored network, an int or ``depth − 1`` ints (ignored for
            depth 1; for ``"emulation"`` it only shapes the init draw).
        method: one of :data:`METHODS` (see the module docstring).
        lr: η ≥ 0 (for Adadelta the multiplier, torch's ``lr``; torch's default there is 1.0).
        weight_decay: λ ≥ 0.
        init: ``"normal"`` (N(0, init_std²) i.i.d., App C.1), ``"identity"`` (plus 1 on every
            factor's diagonal) or ``"balanced"`` — :class:`overparam.LinearNetwork`'s inits.
        init_std: standard deviation of the normal draw.
        seed: the init depends on (seed, depth, hidden, init, init_std) only.
        options: extra optimizer hyperparameters as (key, value) pairs, e.g.
            ``(("betas", (0.9, 0.999)), ("eps", 1e-8))`` for Adam, ``(("rho", 0.9),)`` for Adadelta,
            ``(("lr_decay", 0.0), ("initial_accumulator_value", 0.0), ("eps", 1e-10))`` for Adagrad.
    """

    name: str
    depth: int = 1
    hidden: int | tuple = 1
    method: str = "gd"
    lr: float = 1e-3
    weight_decay: float = 0.0
    init: str = "normal"
    init_std: float = 0.01
    seed: int = 0
    options: tuple = ()

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty str, got {self.name!r}")
        if isinstance(self.depth, bool) or not isinstance(self.depth, numbers.Integral) or self.depth < 1:
            raise ValueError(f"depth must be a positive int, got {self.depth!r} (spec {self.name!r})")
        try:
            _check_widths(self.hidden, int(self.depth), default=1)
        except (TypeError, ValueError) as e:
            raise ValueError(f"hidden={self.hidden!r} is invalid for depth {self.depth} "
                             f"(spec {self.name!r}): {e}") from None
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r} (spec {self.name!r})")
        for field in ("lr", "weight_decay", "init_std"):
            _check_real(getattr(self, field), f"{field} (spec {self.name!r})")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r} (spec {self.name!r})")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise ValueError(f"seed must be an int, got {self.seed!r} (spec {self.name!r})")
        self.optimizer_options()  # validates

    @property
    def widths(self) -> tuple:
        """The hidden widths n_1..n_{N−1} as a tuple (empty for depth 1)."""
        return tuple(_check_widths(self.hidden, int(self.depth), default=1))

    def optimizer_options(self) -> dict:
        """The method's hyperparameters: torch.optim's defaults updated by ``options`` (validated)."""
        defaults = _DEFAULT_OPTIONS[self.method]
        try:
            pairs = dict(self.options)
        except (TypeError, ValueError):
            raise ValueError(f"options must be a tuple of (key, value) pairs, got {self.options!r} "
                             f"(spec {self.name!r})") from None
        unknown = sorted(set(pairs) - set(defaults))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for method {self.method!r}; allowed: "
                             f"{sorted(defaults)} (spec {self.name!r})")
        out = {**defaults, **pairs}
        where = f" (spec {self.name!r})"
        for key, v in out.items():
            if key == "betas":
                if not (isinstance(v, (tuple, list)) and len(v) == 2):
                    raise ValueError(f"betas must be a pair, got {v!r}{where}")
                out[key] = tuple(_check_real(b, f"betas[{i}]{where}", high=1.0, high_open=True)
                                 for i, b in enumerate(v))
            elif key == "rho":
                out[key] = _check_real(v, f"rho{where}", high=1.0)
            else:
                out[key] = _check_real(v, f"{key}{where}")
        return out


@dataclass
class SweepResult:
    """What :func:`run_sweep` returns; rows follow ``specs`` order.

    Attributes:
        specs: the configurations.
        steps: (T,) int64, the iterations at which losses were recorded (0 and the last included).
        losses: (G, T) float64, L¹(W_e) per configuration (NaN after divergence).
        diverged_at: per configuration the record step at which divergence was detected, else None.
        final_W: (G, k, d) end-to-end matrices at the end (the value at detection if diverged).
        seconds: wall time of the sweep (summed over resumed runs).
        p: the loss exponent.
    """

    specs: list
    steps: torch.Tensor
    losses: torch.Tensor
    diverged_at: list
    final_W: torch.Tensor
    seconds: float
    p: float = 2.0

    def index(self, name: str) -> int:
        """Row of the configuration called ``name``."""
        for i, s in enumerate(self.specs):
            if s.name == name:
                return i
        raise KeyError(f"no configuration named {name!r}")

    def loss(self, name: str) -> torch.Tensor:
        """(T,) recorded losses of the configuration called ``name``."""
        return self.losses[self.index(name)]


# --------------------------------------------------------------------------------------------------
# Groups: the live configurations sharing (method, depth, widths, options), stacked along a leading
# axis. W_all[g.lo:g.hi] holds a group's end-to-end matrices; for depth 1 and for the emulation the
# group's parameter *is* that slice of W_all (no copy).


class _Group:
    def __init__(self, specs, ids, d, k, dtype, device):
        s0 = specs[0]
        self.specs = list(specs)
        self.ids = list(ids)  # internal positions of the rows
        self.method = s0.method
        self.N = int(s0.depth)
        self.opts = s0.optimizer_options()
        nets = [LinearNetwork(d, k, self.N, list(s.widths) if self.N > 1 else None, s.init, std=s.init_std,
                              generator=torch.Generator().manual_seed(int(s.seed)), dtype=dtype) for s in specs]
        with torch.no_grad():
            if self.method == "emulation":
                self.factors = [torch.stack([net.end_to_end() for net in nets]).to(device)]
            else:  # W_j: (B, n_j, n_{j−1})
                self.factors = [torch.stack([net.factors[j] for net in nets]).to(device) for j in range(self.N)]
        self.view_based = len(self.factors) == 1
        self.state = []  # optimizer state tensors, one list per factor
        if self.method == "adagrad":
            self.state = [[torch.full_like(W, self.opts["initial_accumulator_value"])] for W in self.factors]
        elif self.method in ("adadelta", "adam"):
            self.state = [[torch.zeros_like(W), torch.zeros_like(W)] for W in self.factors]
        kw = dict(dtype=dtype, device=device)
        self.lr = torch.tensor([float(s.lr) for s in specs], **kw).view(-1, 1, 1)
        self.wd = torch.tensor([float(s.weight_decay) for s in specs], **kw).view(-1, 1, 1)
        self._suffix = [None] * (self.N + 2)
        self.W_e = None
        self._derive()

    @property
    def B(self) -> int:
        return len(self.ids)

    def _derive(self):
        self.neg_lr = -self.lr
        self.use_wd = any(float(s.weight_decay) != 0 for s in self.specs)
        if self.method == "gd":
            self.decay = 1.0 - self.lr * self.wd  # Eq 4
        elif self.method == "emulation":
            self.decay = 1.0 - self.lr * self.wd * self.N  # Eq 10

    def attach(self, W_e):
        """Point the group at its slice W_e (B, k, d) of W_all (copying the parameter in if view-based)."""
        if self.view_based:
            W_e.copy_(self.factors[0])
            self.factors[0] = W_e
        self.W_e = W_e

    def keep(self, mask):
        """Drop the rows where ``mask`` (B,) is False (diverged); attach() must follow."""
        idx = torch.nonzero(mask.to("cpu")).view(-1).tolist()
        sel = torch.tensor(idx, dtype=torch.long, device=self.lr.device)
        self.factors = [W.index_select(0, sel) for W in self.factors]
        self.state = [[x.index_select(0, sel) for x in st] for st in self.state]
        self.lr, self.wd = self.lr.index_select(0, sel), self.wd.index_select(0, sel)
        self.ids = [self.ids[i] for i in idx]
        self.specs = [self.specs[i] for i in idx]
        self.W_e = None
        self._derive()

    def tensors(self):
        """The state tensors in a fixed order (for checkpoints); view-based parameters live in W_all."""
        out = [] if self.view_based else list(self.factors)
        for st in self.state:
            out.extend(st)
        return out

    def end_to_end(self):
        """Write W_e = W_N ⋯ W_1 into the group's slice of W_all, from the output side (k ≪ d)."""
        if self.view_based:
            return
        Ws, s = self.factors, self._suffix
        s[self.N] = Ws[-1]  # s_j = W_N ⋯ W_j, (B, k, n_{j−1})
        for j in range(self.N - 1, 1, -1):
            s[j] = torch.bmm(s[j + 1], Ws[j - 1])
        torch.bmm(s[2], Ws[0], out=self.W_e)

    def factor_grads(self, G):
        """∂L^N/∂W_j = (W_N⋯W_{j+1})ᵀ G (W_{j−1}⋯W_1)ᵀ for every j (after end_to_end())."""
        if self.N == 1:
            return [G]
        Ws, s = self.factors, self._suffix
        grads = []
        g = G  # g_j = G (W_{j−1}⋯W_1)ᵀ, (B, k, n_{j−1})
        for j in range(1, self.N):
            grads.append(torch.bmm(s[j + 1].transpose(1, 2), g))
            g = torch.bmm(g, Ws[j - 1].transpose(1, 2))
        grads.append(g)
        return grads

    def step(self, G, t):
        """One update from G = ∇L¹(W_e), (B, k, d); t = number of updates done before this one."""
        m = self.method
        if m == "emulation":
            W = self.W_e
            if W.shape[-2] == 1 or W.shape[-1] == 1:
                P = single_output_precondition(W, G, self.N)  # Claim 2
            else:
                P = precondition(W, G, self.N)  # Eq 10, one batched thin SVD
            if self.use_wd:
                W.mul_(self.decay)
            W.addcmul_(P, self.neg_lr)
            return
        grads = self.factor_grads(G)
        if m == "gd":
            for W, g in zip(self.factors, grads):
                if self.use_wd:
                    W.mul_(self.decay)
                W.addcmul_(g, self.neg_lr)
            return
        # torch.optim's single-tensor implementations, with lr (and weight decay) per configuration.
        o, step = self.opts, t + 1
        if m == "adam":
            beta1, beta2 = o["betas"]
            bc2_sqrt = (1 - beta2 ** step) ** 0.5
            neg_step_size = self.neg_lr / (1 - beta1 ** step)
            for W, g, (avg, avg_sq) in zip(self.factors, grads, self.state):
                if self.use_wd:
                    g = torch.addcmul(g, W, self.wd)
                avg.lerp_(g, 1 - beta1)
                avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                denom = avg_sq.sqrt().div_(bc2_sqrt).add_(o["eps"])
                W.addcmul_(avg.div(denom), neg_step_size)
        elif m == "adagrad":
            neg_clr = self.neg_lr / (1 + (step - 1) * o["lr_decay"]) if o["lr_decay"] else self.neg_lr
            for W, g, (acc,) in zip(self.factors, grads, self.state):
                if self.use_wd:
                    g = torch.addcmul(g, W, self.wd)
                acc.addcmul_(g, g, value=1)
                W.addcmul_(g.div(acc.sqrt().add_(o["eps"])), neg_clr)
        elif m == "adadelta":
            rho, eps = o["rho"], o["eps"]
            for W, g, (sq_avg, acc_delta) in zip(self.factors, grads, self.state):
                if self.use_wd:
                    g = torch.addcmul(g, W, self.wd)
                sq_avg.mul_(rho).addcmul_(g, g, value=1 - rho)
                std = sq_avg.add(eps).sqrt_()
                delta = acc_delta.add(eps).sqrt_()
                delta.div_(std).mul_(g)
                acc_delta.mul_(rho).addcmul_(delta, delta, value=1 - rho)
                W.addcmul_(delta, self.neg_lr)
        else:  # pragma: no cover
            raise AssertionError(m)


class _Engine:
    """The batched state of a sweep and its data pass. Rows of W_all are the live configurations."""

    def __init__(self, X, y, specs, p, sufficient_stats, n_records, divergence_factor, grad_scale=1.0):
        self.X, self.p, self.m = X, p, X.shape[0]
        self.d, self.k = X.shape[1], y.shape[1]
        self.dtype, self.device = X.dtype, X.device
        self.sufficient_stats = sufficient_stats
        self.divergence_factor = float(divergence_factor)
        self.G = len(specs)
        # Groups in order of first appearance; internal order = the groups concatenated.
        keys, members = [], {}
        for i, s in enumerate(specs):
            key = (s.method, int(s.depth), s.widths if s.method != "emulation" else (),
                   tuple(sorted(s.optimizer_options().items())))
            if key not in members:
                keys.append(key)
                members[key] = []
            members[key].append(i)
        order = [i for key in keys for i in members[key]]  # internal position -> spec index
        inv = torch.empty(self.G, dtype=torch.long)
        inv[torch.tensor(order)] = torch.arange(self.G)
        self.inv = inv.to(self.device)  # spec index -> internal position
        self.groups, pos = [], 0
        for key in keys:
            ids = list(range(pos, pos + len(members[key])))
            self.groups.append(_Group([specs[i] for i in members[key]], ids, self.d, self.k, self.dtype, self.device))
            pos += len(ids)
        m, kw = self.m, dict(dtype=self.dtype, device=self.device)
        self.Xm = X * (grad_scale / m)  # (m, d); grad_scale folds the objective's scale into the data pass
        self.Xt = X.T.contiguous()  # (d, m)
        self.yt = y.T.contiguous()  # (k, m)
        if sufficient_stats:
            self.C = X.T @ self.Xm  # s·XᵀX/m, (d, d)
            self.bt = (self.Xm.T @ y).T.contiguous()  # s·(Xᵀy/m)ᵀ, (k, d)
        self.losses = torch.full((self.G, n_records), float("nan"), dtype=torch.float64, device=self.device)
        self.diverged_at = torch.full((self.G,), -1, dtype=torch.long, device=self.device)
        self.frozen_W = torch.full((self.G, self.k, self.d), float("nan"), **kw)
        self.active = torch.ones(self.G, dtype=torch.bool)  # CPU: internal positions still training
        self._layout()

    def _layout(self):
        """(Re)allocate W_all and the data-pass buffers for the live rows; attach the groups."""
        self.groups = [g for g in self.groups if g.B > 0]
        A, k, d, m = sum(g.B for g in self.groups), self.k, self.d, self.m
        kw = dict(dtype=self.dtype, device=self.device)
        self.A = A
        self.W_all = torch.empty(A, k, d, **kw)  # end-to-end matrices of the live configurations
        self.W_flat = self.W_all.view(A * k, d)
        lo = 0
        self.grad_all = torch.empty(A, k, d, **kw)  # ∇L¹(W_e) of the live configurations
        self.grad_flat = self.grad_all.view(A * k, d)
        for g in self.groups:
            g.lo, g.hi = lo, lo + g.B
            g.attach(self.W_all[g.lo:g.hi])
            g.grad = self.grad_all[g.lo:g.hi]
            lo = g.hi
        self.rows = torch.tensor([i for g in self.groups for i in g.ids], dtype=torch.long, device=self.device)
        self.R = torch.empty(A * k, m, **kw)  # residuals, row g·k + j = output j of configuration g
        self.D = self.R if self.p == 2.0 else torch.empty(A * k, m, **kw)
        self.neg_y = -self.yt if k == 1 else (-self.yt).repeat(A, 1)  # (1 or A·k, m)
        if self.sufficient_stats:
            self.neg_b = -self.bt if k == 1 else (-self.bt).repeat(A, 1)

    def data_pass(self, need_grad: bool):
        """W_all from the factors; residuals R (unless only the p = 2 gradient is needed); ∇L¹."""
        for g in self.groups:
            g.end_to_end()
        if self.sufficient_stats and need_grad:
            torch.addmm(self.neg_b, self.W_flat, self.C, out=self.grad_flat)  # W_e XᵀX/m − (Xᵀy/m)ᵀ
            return
        torch.addmm(self.neg_y, self.W_flat, self.Xt, out=self.R)  # R = W_e Xᵀ − yᵀ, (A·k, m)
        if need_grad:
            R, D, p = self.R, self.D, self.p
            if p == 4.0:
                torch.pow(R, 3, out=D)
            elif p != 2.0:
                torch.abs(R, out=D).pow_(p - 1).mul_(torch.sign(R))  # |r|^{p−1} sign(r)
            torch.mm(D, self.Xm, out=self.grad_flat)  # ∇L¹(W_e) for every configuration, (A·k, d)

    def update(self, t: int):
        for g in self.groups:
            g.step(g.grad, t)

    def record(self, t: int, idx: int):
        """Losses at step t into column idx; freeze the configurations that diverged."""
        if self.A == 0:
            return
        self.data_pass(need_grad=False)
        R, p = self.R, self.p
        per_row = R.square().sum(1) if p == 2.0 else (R.square().square_() if p == 4.0 else R.abs().pow_(p)).sum(1)
        loss = per_row.view(self.A, self.k).sum(1).to(torch.float64) / (p * self.m)  # L¹(W_e), (A,)
        self.losses[self.rows, idx] = loss
        bad = ~torch.isfinite(loss)
        if idx > 0:
            bad |= loss > self.divergence_factor * self.losses[self.rows, 0]
        if bool(bad.any()):
            rows = self.rows[bad]
            self.frozen_W[rows] = self.W_all[bad]
            self.diverged_at[rows] = t
            self.active[rows.to("cpu")] = False
            self._compact()

    def _compact(self):
        for g in self.groups:
            g.keep(self.active[g.ids])
        self._layout()

    def state_dict(self):
        return {"losses": self.losses, "diverged_at": self.diverged_at, "frozen_W": self.frozen_W,
                "active": self.active, "tensors": [self.W_all] + [x for g in self.groups for x in g.tensors()]}

    def load_state_dict(self, sd):
        for name in ("losses", "diverged_at", "frozen_W"):
            getattr(self, name).copy_(sd[name])
        self.active.copy_(sd["active"])
        self._compact()
        current = [self.W_all] + [x for g in self.groups for x in g.tensors()]
        if len(current) != len(sd["tensors"]) or any(a.shape != b.shape for a, b in zip(current, sd["tensors"])):
            raise ValueError("checkpoint layout does not match this sweep")
        with torch.no_grad():
            for dst, src in zip(current, sd["tensors"]):
                dst.copy_(src)

    def final_W(self):
        out = self.frozen_W.clone()
        out[self.rows] = self.W_all
        return out[self.inv]


# --------------------------------------------------------------------------------------------------


def _check_data(X, y, dtype, device):
    if not isinstance(X, torch.Tensor) or not X.is_floating_point() or X.ndim != 2:
        raise ValueError(f"X must be a 2-D floating torch.Tensor (m, d), got "
                         f"{type(X).__name__ if not isinstance(X, torch.Tensor) else (X.dtype, tuple(X.shape))}")
    if not isinstance(y, torch.Tensor) or not y.is_floating_point() or y.ndim not in (1, 2):
        raise ValueError(f"y must be a 1-D (m,) or 2-D (m, k) floating torch.Tensor, got "
                         f"{type(y).__name__ if not isinstance(y, torch.Tensor) else (y.dtype, tuple(y.shape))}")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"X and y must have the same number of rows, got X {tuple(X.shape)} and y {tuple(y.shape)}")
    if X.shape[0] < 1 or X.shape[1] < 1 or (y.ndim == 2 and y.shape[1] < 1):
        raise ValueError(f"X and y must be non-empty, got shapes {tuple(X.shape)} and {tuple(y.shape)}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    device = X.device if device is None else torch.device(device)
    X = X.detach().to(device=device, dtype=dtype)
    y = y.detach().to(device=device, dtype=dtype)
    if y.ndim == 1:
        y = y.unsqueeze(1)
    if not (torch.isfinite(X).all() and torch.isfinite(y).all()):
        raise ValueError("X and y must be finite (found NaN or inf)")
    return X, y


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _digest(t: torch.Tensor) -> str:
    a = t.detach().to("cpu").contiguous()
    h = hashlib.sha256(str((a.dtype, tuple(a.shape))).encode())
    if a.numel():
        h.update(a.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _record_steps(steps: int, every: int) -> list:
    out = list(range(0, steps, every))
    if not out or out[-1] != steps:
        out.append(steps)
    return out


def _save_atomic(obj, path):
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)


class _SigintDeferred:
    """Within the block, the first Ctrl-C only sets a flag (honoured at the next poll point, so the
    checkpoint written is consistent); a second one raises at once. No-op outside the main thread."""

    def __init__(self):
        self.flag = False
        self._old = None

    def _handler(self, signum, frame):
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            try:
                self._old = signal.signal(signal.SIGINT, self._handler)
            except (ValueError, OSError):  # pragma: no cover
                self._old = None
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


def run_sweep(X, y, specs, *, steps, p, record_every=None, dtype=torch.float64, device=None,
              progress=True, checkpoint=None, checkpoint_every_s=60.0, divergence_factor=1e6,
              sufficient_stats=None, callback=None, poll_every=500, num_threads=None, grad_scale=1.0,
              _stop_after=None) -> SweepResult:
    """Train every configuration of ``specs`` on (X, y) for ``steps`` full-batch steps, as one batch.

    Args:
        X: (m, d) inputs; y: (m, k) or (m,) targets. Not modified.
        specs: non-empty sequence of :class:`RunSpec` with unique names.
        steps: number of updates (int ≥ 0).
        p: the ℓp loss exponent (≥ 1; one per sweep — run ℓ2 and ℓ4 as separate sweeps).
        record_every: record period (default max(1, steps // 1000)); step 0 and ``steps`` always.
        dtype: torch.float64 (default) or torch.float32; device: default X's.
        progress: show a tqdm bar (updated every ``poll_every`` steps).
        checkpoint: path of a checkpoint file to write / resume from (see the module docstring).
        checkpoint_every_s: seconds between periodic checkpoints.
        divergence_factor: a configuration diverges when its loss exceeds this × its initial loss.
        sufficient_stats: use XᵀX/m and Xᵀy/m for the gradient (p = 2 only; default: when p == 2).
        callback: ``callback(step, losses)`` after each record; losses is a (G,) float64 tensor in
            specs order (NaN for frozen configurations). May raise KeyboardInterrupt to stop cleanly.
        poll_every: steps between polls (progress bar, checkpoint clock, Ctrl-C).
        grad_scale: every configuration follows the gradient of ``grad_scale · L¹`` (default 1). With
            ``grad_scale=p`` the objective is mean |r|^p, without lp_loss's 1/p — the scale the
            paper's learning-rate grid may refer to (REPRODUCTION.md). For GD this is the same as
            p× the learning rate; for AdaDelta it is not. Recorded losses stay L¹.
        num_threads: torch.set_num_threads for the duration of the call (restored afterwards);
            None leaves it alone. On a shared, loaded CPU 1 thread is often much faster than several
            (OpenMP workers waiting for a time slice); run independent sweeps as separate processes.

    Returns:
        :class:`SweepResult`.

    Diverged configurations are removed from the batch (their last W_e is kept for ``final_W``), so
    a sweep speeds up as its unstable learning rates drop out.
    """
    if num_threads is not None:
        n = _check_int(num_threads, "num_threads", 1)
        old = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            return run_sweep(X, y, specs, steps=steps, p=p, record_every=record_every, dtype=dtype, device=device,
                             progress=progress, checkpoint=checkpoint, checkpoint_every_s=checkpoint_every_s,
                             divergence_factor=divergence_factor, sufficient_stats=sufficient_stats,
                             callback=callback, poll_every=poll_every, grad_scale=grad_scale,
                             _stop_after=_stop_after)
        finally:
            torch.set_num_threads(old)
    t_start = time.perf_counter()
    X, y = _check_data(X, y, dtype, device)
    m = X.shape[0]
    p = check_p(p)
    steps = _check_int(steps, "steps", 0)
    record_every = max(1, steps // 1000) if record_every is None else _check_int(record_every, "record_every", 1)
    poll_every = _check_int(poll_every, "poll_every", 1)
    if (isinstance(divergence_factor, bool) or not isinstance(divergence_factor, numbers.Real)
            or not divergence_factor > 0):
        raise ValueError(f"divergence_factor must be a positive number, got {divergence_factor!r}")
    if (isinstance(checkpoint_every_s, bool) or not isinstance(checkpoint_every_s, numbers.Real)
            or not checkpoint_every_s >= 0):
        raise ValueError(f"checkpoint_every_s must be a number >= 0, got {checkpoint_every_s!r}")
    if (isinstance(grad_scale, bool) or not isinstance(grad_scale, numbers.Real)
            or not 0 < grad_scale < math.inf):
        raise ValueError(f"grad_scale must be a positive finite number, got {grad_scale!r}")
    if sufficient_stats is None:
        sufficient_stats = p == 2.0
    if sufficient_stats and p != 2.0:
        raise ValueError(f"sufficient_stats needs p == 2, got p={p!r}")
    if isinstance(specs, RunSpec):
        raise ValueError("specs must be a sequence of RunSpec, got a single RunSpec (wrap it in a list)")
    specs = list(specs)
    if not specs:
        raise ValueError("specs must be a non-empty sequence of RunSpec")
    for s in specs:
        if not isinstance(s, RunSpec):
            raise ValueError(f"specs must contain RunSpec objects, got {type(s).__name__}: {s!r}")
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"spec names must be unique, duplicated: {dup}")

    rec_steps = _record_steps(steps, record_every)
    T = len(rec_steps)
    eng = _Engine(X, y, specs, p, bool(sufficient_stats), T, divergence_factor, float(grad_scale))
    start, rec_idx, seconds_before = 0, 0, 0.0

    fingerprint = None
    if checkpoint is not None:
        fingerprint = {
            "specs": repr(tuple(specs)), "steps": str(steps), "p": repr(p), "record_every": str(record_every),
            "dtype": str(dtype), "divergence_factor": repr(float(divergence_factor)),
            "sufficient_stats": str(bool(sufficient_stats)), "X": _digest(X), "y": _digest(y),
            "grad_scale": repr(float(grad_scale)),
        }
        if os.path.exists(checkpoint):
            ck = torch.load(checkpoint, map_location=eng.device, weights_only=True)
            if not isinstance(ck, dict) or ck.get("version") != _CHECKPOINT_VERSION:
                raise ValueError(f"{os.fspath(checkpoint)!r} is not a sweep checkpoint "
                                 f"(version {_CHECKPOINT_VERSION})")
            diff = sorted(key for key in set(fingerprint) | set(ck["fingerprint"])
                          if fingerprint.get(key) != ck["fingerprint"].get(key))
            if diff:
                raise ValueError(f"checkpoint {os.fspath(checkpoint)!r} does not match the arguments of this "
                                 f"run (differing: {', '.join(diff)}); delete it or pass another path")
            eng.load_state_dict(ck["state"])
            start, rec_idx, seconds_before = int(ck["step"]), int(ck["rec_idx"]), float(ck["seconds"])

    def save(t):
        _save_atomic({"version": _CHECKPOINT_VERSION, "fingerprint": fingerprint, "step": t, "rec_idx": rec_idx,
                      "seconds": seconds_before + time.perf_counter() - t_start, "state": eng.state_dict()},
                     checkpoint)

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, initial=start, desc="sweep", unit="step", mininterval=1.0, dynamic_ncols=True)
    last_save = time.perf_counter()
    next_poll, bar_at, t = start + poll_every, start, start
    consistent = True  # False while an update is half done
    try:
        with torch.no_grad(), _SigintDeferred() as sigint:
            while True:
                # Events at the top of step t (parameters = after t updates).
                if rec_idx < T and rec_steps[rec_idx] == t:
                    consistent = False
                    eng.record(t, rec_idx)
                    rec_idx += 1
                    consistent = True
                    if callback is not None:
                        callback(t, eng.losses[:, rec_idx - 1][eng.inv].clone())
                if t >= next_poll or t == steps or t == _stop_after:
                    next_poll = t + poll_every
                    if bar is not None:
                        bar.update(t - bar_at)
                        bar_at = t
                        if eng.A < eng.G:
                            bar.set_postfix_str(f"{eng.G - eng.A} diverged", refresh=False)
                    if sigint.flag or t == _stop_after:
                        raise KeyboardInterrupt
                    if checkpoint is not None and t < steps and time.perf_counter() - last_save >= checkpoint_every_s:
                        save(t)
                        last_save = time.perf_counter()
                if t == steps:
                    break
                if eng.A == 0:  # everything diverged: nothing left to compute
                    t = rec_steps[rec_idx] if rec_idx < T else steps
                    continue
                stop = min(next_poll, rec_steps[rec_idx] if rec_idx < T else steps, steps)
                if _stop_after is not None and t < _stop_after:
                    stop = min(stop, _stop_after)
                consistent = False
                while t < stop:
                    eng.data_pass(need_grad=True)
                    eng.update(t)
                    t += 1
                consistent = True
    except KeyboardInterrupt:
        if checkpoint is not None:
            if consistent:
                save(t)
            else:
                warnings.warn("interrupted mid-step: the checkpoint was not updated (the previous one remains)",
                              RuntimeWarning, stacklevel=2)
        raise
    finally:
        if bar is not None:
            bar.close()
    if checkpoint is not None and start < steps:
        save(steps)

    div = eng.diverged_at[eng.inv].tolist()
    return SweepResult(
        specs=specs,
        steps=torch.tensor(rec_steps, dtype=torch.int64),
        losses=eng.losses[eng.inv].clone(),
        diverged_at=[None if s < 0 else int(s) for s in div],
        final_W=eng.final_W(),
        seconds=seconds_before + time.perf_counter() - t_start,
        p=p,
    )
