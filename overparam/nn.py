"""Overparameterize any PyTorch model, and collapse it back exactly (paper §8, App C.2).

The paper's deep-learning experiment (Fig 5 right, App C.2) replaces each fully connected layer of the
TensorFlow MNIST convnet by a product of matrices: 3136×512 becomes 3136×512 · 512×512 and 512×10
becomes 512×10 · 10×10 (TF's in×out layout). This module does that to any model:

* :func:`overparameterize` returns a **new** model (a deep copy; the input is untouched) whose selected
  layers are :class:`OverparamLinear` / :class:`OverparamConv2d`, i.e. an end-to-end weight
  W = W_N ⋯ W_1 (Eq 3) made of ``depth`` trainable factors.
* :func:`collapse` returns a **new** model with every such layer folded into a plain ``nn.Linear`` /
  ``nn.Conv2d`` computing the same function: zero inference cost.
* :func:`overparam_report` counts the parameters added and the extra forward FLOPs.

Both transformations are pure (DESIGN principle 10): nothing happens in ``train()`` / ``eval()``,
``.weight`` is a read-only property computed on access, and the input model is never modified.

Layout and default widths. Torch stores a Linear weight as out×in. A Linear with weight out×in becomes
W_1: out×in followed by square W_2 … W_N: out×out — the added factors are square, of the output size,
as in App C.2. ``hidden`` overrides the widths n_1 … n_{N−1} (W_j is n_j × n_{j−1}, n_0 = in,
n_N = out).

Initialization (``init``):

* ``"normal"`` (default, App C.2: the new matrices are "initialized in the same way as their
  predecessors", N(0, 0.1) there): when W_1 has the original weight's shape (n_1 = out, true for the
  default widths) it is a copy of the original weight; every other factor is drawn i.i.d.
  N(0, init_std²). When n_1 ≠ out the original weight cannot be W_1, and *all* factors are drawn.
  Default ``init_std``: the (population) std of the replaced layer's weight; pass ``init_std=0.1`` for
  the paper's setting. The function of the model changes (it is a new random layer stacked on the old).
* ``"preserve"``: the product equals the original weight, so a trained model keeps its function and can
  be fine-tuned with the acceleration. Default widths: W_1 = the original weight, added factors =
  identity — bitwise exact. Other widths: the balanced factorization below (exact to rounding).
* ``"balanced"``: the balanced factorization for any widths, from one SVD W = U S Vᵀ of rank r:
  W_1 = Q_1 S^{1/N} Vᵀ, W_j = Q_j S^{1/N} Q_{j−1}ᵀ, W_N = U S^{1/N} Q_{N−1}ᵀ with Q_j the first r columns
  of the n_j×n_j identity. The product is W (to rounding) and the factors satisfy Eq 7
  (W_{j+1}ᵀ W_{j+1} = W_j W_jᵀ), so Theorem 1's end-to-end dynamics apply from the start. Needs every
  hidden width ≥ r (ValueError otherwise); singular values ≤ max(out, in)·eps·s_max count as zero.
  Computed in float64 and cast back.

Selection (``layers`` / ``conv``):

* ``layers=None``: every ``nn.Linear`` (subclasses included), plus every ``nn.Conv2d`` when ``conv=True``.
* a list of qualified names as in ``model.named_modules()`` (any alias of a shared module works): exactly
  those; each must be an ``nn.Linear`` or ``nn.Conv2d`` (a Conv2d may be named whatever ``conv`` is).
* a predicate ``(name, module) -> bool``: called on every ``nn.Linear`` (and ``nn.Conv2d`` when
  ``conv=True``) under each of its names; a module is selected if any call returns True.

Supported: ``nn.Linear`` of any shape (bias or not), ``nn.Conv2d`` with ``groups=1`` and any kernel
size, stride, padding (ints, tuples, ``"same"``, ``"valid"``), dilation and ``padding_mode``; any dtype
and device (the result follows the replaced layer's). Not supported: grouped/depthwise convs (naming one
in ``layers`` raises ValueError; ``conv=True`` and predicates skip them with a warning), Conv1d/Conv3d,
transposed convs, lazy (uninitialized) modules. Shared modules stay shared: a Linear instance that
appears at two places becomes one OverparamLinear at both. Weight tying *between different modules*
(e.g. an embedding tied to an output Linear) cannot be kept and is warned about. Hooks registered on a
replaced layer are not carried over.

``depth=1`` gives an Overparam layer with a single factor, a copy of the original weight under every
init (there are no hidden widths): the same function as the original, and a uniform type for code that
handles both. Collapsing it gives back an equal plain layer.

Association (``forward``). With m input rows (batch × positions) and widths n_0 … n_N, applying the
factors in sequence costs m·Σ_j n_j n_{j−1} multiply-adds; forming the product first costs
c(W_N ⋯ W_1) + m·n_N n_0, with c the cheaper of the left-to-right and right-to-left chain costs
(:func:`torch.linalg.multi_dot` then picks the optimal order). ``forward`` takes the cheaper; ties go
to the product (one big matmul). The backward pass scales the same way. For a conv, m = batch × output
positions and n_0 = in_channels · kh · kw.
"""

from __future__ import annotations

import copy
import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .linalg import check_depth as _check_depth
from .linalg import singular_cutoff

__all__ = [
    "OverparamLinear",
    "OverparamConv2d",
    "overparameterize",
    "collapse",
    "overparam_report",
    "OverparamReport",
    "LayerReport",
]

_INITS = ("normal", "preserve", "balanced")


# --------------------------------------------------------------------------------------------------
# validation at the boundary


def _check_width(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _resolve_hidden(hidden, depth: int, out_features: int) -> list[int]:
    """Hidden widths n_1 … n_{N−1}: default all ``out_features`` (App C.2), an int for all, or a list."""
    if hidden is None:
        return [out_features] * (depth - 1)
    if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
        return [_check_width(hidden, "hidden")] * (depth - 1)
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
        raise TypeError(f"hidden must be None, an int or a list of ints, got {hidden!r}")
    if len(hidden) != depth - 1:
        raise ValueError(
            f"hidden must list depth - 1 = {depth - 1} widths, got {len(hidden)}: {list(hidden)!r}"
        )
    return [_check_width(h, f"hidden[{i}]") for i, h in enumerate(hidden)]


def _check_init(init) -> str:
    if init not in _INITS:
        raise ValueError(f"init must be one of {', '.join(map(repr, _INITS))}, got {init!r}")
    return init


def _check_init_std(init_std, init: str):
    if init_std is None:
        return None
    if init != "normal":
        raise ValueError(f"init_std applies to init='normal' only, got init_std={init_std!r} with init={init!r}")
    if isinstance(init_std, bool) or not isinstance(init_std, numbers.Real):
        raise TypeError(f"init_std must be a real number, got {init_std!r}")
    if not math.isfinite(init_std) or init_std < 0:
        raise ValueError(f"init_std must be a finite number >= 0, got {init_std!r}")
    return float(init_std)


def _check_generator(generator):
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


# --------------------------------------------------------------------------------------------------
# the math: chain costs, products, factorizations (pure functions of tensors)


def _chain_cost(widths: Sequence[int]) -> int:
    """Multiply-adds to form W_N ⋯ W_1 (W_j: n_j × n_{j−1}), the cheaper of the two linear orders."""
    n = list(widths)  # n_0 … n_N
    N = len(n) - 1
    if N <= 1:
        return 0
    right = sum(n[j] * n[j - 1] * n[0] for j in range(2, N + 1))  # ((W_2 W_1) …)
    left = sum(n[N] * n[j] * n[j - 1] for j in range(1, N))  # (… (W_N W_{N−1}))
    return min(left, right)


def _prefer_sequence(rows: int, widths: Sequence[int]) -> bool:
    """True when applying the factors one by one to ``rows`` inputs is cheaper than the product first."""
    sequence = rows * sum(widths[j] * widths[j - 1] for j in range(1, len(widths)))
    product = _chain_cost(widths) + rows * widths[-1] * widths[0]
    return sequence < product


def _product(mats: Sequence[torch.Tensor]) -> torch.Tensor:
    """W_N ⋯ W_1 for ``mats`` = [W_1, …, W_N] (2-D), in the optimal order (multi_dot)."""
    if len(mats) == 1:
        return mats[0]
    return torch.linalg.multi_dot(list(reversed(mats)))


def _thin_svd(W: torch.Tensor):
    """Thin SVD of W (k × d) decomposing only the small side: a QR of the long side first.

    W = U S Vh with q = min(k, d) singular values. For k < d, Wᵀ = Q R gives W = Rᵀ Qᵀ and only the
    k×k matrix Rᵀ is decomposed (likewise for k > d); on CPU this is many times faster than a direct
    SVD of a wide matrix such as the convnet's 512×3136.
    """
    k, d = W.shape
    if k < d:
        Q, R = torch.linalg.qr(W.T)  # (d, k), (k, k)
        u, s, vh = torch.linalg.svd(R.T)
        return u, s, vh @ Q.T
    if k > d:
        Q, R = torch.linalg.qr(W)  # (k, d), (d, d)
        u, s, vh = torch.linalg.svd(R)
        return Q @ u, s, vh
    return torch.linalg.svd(W)


def _balanced_factors(W: torch.Tensor, widths: Sequence[int], label: str) -> list[torch.Tensor]:
    """Balanced exact factorization of W (k × d) with widths n_0 = d, …, n_N = k (see module doc)."""
    N = len(widths) - 1
    W64 = W.detach().to(torch.float64)
    if N == 1:
        return [W.detach().clone()]
    U, S, Vh = _thin_svd(W64)  # (k, q), (q,), (q, d)
    # the cutoff of overparam.linalg with the eps of W's own dtype (the SVD runs in float64)
    cutoff = singular_cutoff(S, W.shape, rcond=max(W.shape) * torch.finfo(W.dtype).eps)
    r = int((S > cutoff).sum())
    hidden = widths[1:-1]
    if min(hidden) < r:
        raise ValueError(
            f"layer {label}: hidden widths {list(hidden)} cannot hold its weight of rank {r} exactly; "
            f"every hidden width must be >= {r} for init 'preserve'/'balanced'"
        )
    root = S[:r] ** (1.0 / N)  # S^{1/N}
    dev = W64.device

    def Q(n):  # first r columns of the n×n identity
        return torch.eye(n, r, dtype=torch.float64, device=dev)

    factors = [Q(widths[1]) @ (root[:, None] * Vh[:r])]  # n_1 × d
    for j in range(2, N):
        factors.append(Q(widths[j]) @ torch.diag(root) @ Q(widths[j - 1]).T)  # n_j × n_{j−1}
    factors.append((U[:, :r] * root) @ Q(widths[N - 1]).T)  # k × n_{N−1}
    return [f.to(W.dtype) for f in factors]


def _init_factors(W, widths, init, init_std, generator, label) -> list[torch.Tensor]:
    """Factors [W_1, …, W_N] (2-D, shapes n_j × n_{j−1}) for the original 2-D weight W (n_N × n_0)."""
    N = len(widths) - 1
    W = W.detach()
    default_shape = widths[1] == widths[-1]
    if init == "balanced" or (init == "preserve" and not all(n == widths[-1] for n in widths[1:])):
        return _balanced_factors(W, widths, label)
    if init == "preserve":  # default widths: W_1 = W, the rest identity
        eye = torch.eye(widths[-1], dtype=W.dtype, device=W.device)
        return [W.clone()] + [eye.clone() for _ in range(N - 1)]
    # init == "normal"
    if init_std is None and (N > 1 or not default_shape):  # only needed when something is drawn
        init_std = float(W.std(correction=0)) if W.numel() else 0.0
        if not (init_std > 0 and math.isfinite(init_std)):
            raise ValueError(
                f"layer {label}: cannot infer init_std from its weight (std {init_std!r}); pass init_std"
            )

    def draw(shape):
        dev = generator.device if generator is not None else W.device
        z = torch.randn(shape, generator=generator, dtype=W.dtype, device=dev)
        return (z * init_std).to(W.device)

    first = W.clone() if default_shape else draw((widths[1], widths[0]))
    return [first] + [draw((widths[j], widths[j - 1])) for j in range(2, N + 1)]


def _new_param(t: torch.Tensor, requires_grad: bool) -> nn.Parameter:
    return nn.Parameter(t.detach().clone(), requires_grad=requires_grad)


def _shape_str(shape) -> str:
    return "×".join(str(s) for s in shape)


# --------------------------------------------------------------------------------------------------
# layers


class OverparamLinear(nn.Module):
    """y = x (W_N ⋯ W_1)ᵀ + b: a Linear whose weight is a product of ``depth`` factors (Eq 3).

    ``factors`` is an ``nn.ParameterList`` [W_1, …, W_N], W_j of shape n_j × n_{j−1} (torch layout,
    n_0 = in_features, n_N = out_features); ``bias`` a Parameter (out_features,) or None. ``weight`` is
    the product, computed on access (read-only). ``forward`` picks the cheaper association by FLOP
    count (module docstring).

    A fresh layer initializes each factor like an ``nn.Linear`` of that factor's shape (uniform
    ±1/√n_{j−1}) and the bias like the equivalent ``nn.Linear`` (±1/√in_features); use
    :meth:`from_linear` or :func:`overparameterize` to start from an existing layer.
    """

    def __init__(self, in_features: int, out_features: int, depth: int = 2, *, hidden=None,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.in_features = _check_width(in_features, "in_features")
        self.out_features = _check_width(out_features, "out_features")
        self.depth = _check_depth(depth)
        widths = [self.in_features, *_resolve_hidden(hidden, self.depth, self.out_features), self.out_features]
        kw = {"device": device, "dtype": dtype}
        self.factors = nn.ParameterList(
            [nn.Parameter(torch.empty(widths[j], widths[j - 1], **kw)) for j in range(1, self.depth + 1)]
        )
        self.bias = nn.Parameter(torch.empty(self.out_features, **kw)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for W in self.factors:
                bound = 1.0 / math.sqrt(W.shape[1])
                W.uniform_(-bound, bound)
            if self.bias is not None:
                bound = 1.0 / math.sqrt(self.in_features)
                self.bias.uniform_(-bound, bound)

    @classmethod
    def _from_tensors(cls, factors, bias, requires_grad=True, bias_requires_grad=True):
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self.in_features = factors[0].shape[1]
        self.out_features = factors[-1].shape[0]
        self.depth = len(factors)
        self.factors = nn.ParameterList([_new_param(f, requires_grad) for f in factors])
        self.bias = None if bias is None else _new_param(bias, bias_requires_grad)
        return self

    @classmethod
    def from_linear(cls, linear: nn.Linear, depth: int = 2, *, hidden=None, init: str = "normal",
                    init_std=None, generator=None, _label: str | None = None) -> OverparamLinear:
        """A new OverparamLinear built from ``linear`` (untouched); arguments as in overparameterize."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear needs an nn.Linear, got {type(linear).__name__}")
        depth = _check_depth(depth)
        init = _check_init(init)
        init_std = _check_init_std(init_std, init)
        _check_generator(generator)
        W = linear.weight  # (out, in)
        widths = [W.shape[1], *_resolve_hidden(hidden, depth, W.shape[0]), W.shape[0]]
        factors = _init_factors(W, widths, init, init_std, generator, _label or repr(linear))
        bias = linear.bias
        layer = cls._from_tensors(
            factors, bias, W.requires_grad, bias.requires_grad if bias is not None else True
        )
        layer.train(linear.training)
        return layer

    @property
    def weight(self) -> torch.Tensor:
        """The end-to-end matrix W_N ⋯ W_1 (out_features × in_features), differentiable."""
        return _product(list(self.factors))

    @property
    def widths(self) -> list[int]:
        """[n_0, …, n_N]: in_features, the hidden widths, out_features."""
        return [self.in_features] + [W.shape[0] for W in self.factors]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features if self.in_features else 0
        if self.depth > 1 and _prefer_sequence(rows, self.widths):
            for W in self.factors[:-1]:
                x = F.linear(x, W)
            return F.linear(x, self.factors[-1], self.bias)
        return F.linear(x, self.weight, self.bias)

    def to_linear(self) -> nn.Linear:
        """A new nn.Linear with weight = the product (same dtype/device; requires_grad if any factor's)."""
        W = self.weight.detach()
        lin = torch.nn.utils.skip_init(nn.Linear, self.in_features, self.out_features,
                                       bias=self.bias is not None, device=W.device, dtype=W.dtype)
        lin.weight = _new_param(W, any(f.requires_grad for f in self.factors))
        if self.bias is not None:
            lin.bias = _new_param(self.bias, self.bias.requires_grad)
        lin.train(self.training)
        return lin

    def extra_repr(self) -> str:
        shapes = ", ".join(_shape_str(W.shape) for W in self.factors)
        return (f"in_features={self.in_features}, out_features={self.out_features}, depth={self.depth}, "
                f"factors=[{shapes}], bias={self.bias is not None}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class OverparamConv2d(nn.Module):
    """A k×k conv in→n_1 followed by 1×1 convs n_1→n_2→…→out; collapses exactly into one k×k conv.

    ``factors`` = [K, M_2, …, M_N]: K of shape (n_1, in, kh, kw) (a conv kernel), M_j of shape
    (n_j, n_{j−1}) (a 1×1 conv, i.e. a matrix on the channel dimension). The effective kernel
    (``weight``) is W[o, i, :, :] = Σ_h M[o, h] K[h, i, :, :] with M = M_N ⋯ M_2; the bias is added once,
    after the last factor, so it equals the original conv's bias exactly. Only ``groups=1``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, depth: int = 2, *,
                 hidden=None, stride=1, padding=0, dilation=1, bias: bool = True,
                 padding_mode: str = "zeros", device=None, dtype=None):
        super().__init__()
        ref = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                        dilation=dilation, bias=False, padding_mode=padding_mode, device="meta")
        self._copy_geometry(ref)
        self.depth = _check_depth(depth)
        widths = [self.in_channels, *_resolve_hidden(hidden, self.depth, self.out_channels), self.out_channels]
        kw = {"device": device, "dtype": dtype}
        params = [nn.Parameter(torch.empty(widths[1], self.in_channels, *self.kernel_size, **kw))]
        params += [nn.Parameter(torch.empty(widths[j], widths[j - 1], **kw)) for j in range(2, self.depth + 1)]
        self.factors = nn.ParameterList(params)
        self.bias = nn.Parameter(torch.empty(self.out_channels, **kw)) if bias else None
        self.reset_parameters()

    def _copy_geometry(self, conv: nn.Conv2d) -> None:
        self.in_channels = conv.in_channels
        self.out_channels = conv.out_channels
        self.kernel_size = tuple(conv.kernel_size)
        self.stride = tuple(conv.stride)
        self.padding = conv.padding if isinstance(conv.padding, str) else tuple(conv.padding)
        self.dilation = tuple(conv.dilation)
        self.padding_mode = conv.padding_mode
        self._reversed_padding_repeated_twice = list(conv._reversed_padding_repeated_twice)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for W in self.factors:  # fan-in: in·kh·kw for the kernel, n_{j−1} for a 1×1 factor
                bound = 1.0 / math.sqrt(W[0].numel())
                W.uniform_(-bound, bound)
            if self.bias is not None:
                bound = 1.0 / math.sqrt(self.factors[0][0].numel())
                self.bias.uniform_(-bound, bound)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, depth: int = 2, *, hidden=None, init: str = "normal",
                  init_std=None, generator=None, _label: str | None = None) -> OverparamConv2d:
        """A new OverparamConv2d built from ``conv`` (untouched); arguments as in overparameterize."""
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"from_conv needs an nn.Conv2d, got {type(conv).__name__}")
        label = _label or repr(conv)
        if conv.groups != 1:
            raise ValueError(f"layer {label}: only nn.Conv2d with groups=1 is supported, got groups={conv.groups}")
        depth = _check_depth(depth)
        init = _check_init(init)
        init_std = _check_init_std(init_std, init)
        _check_generator(generator)
        Wk = conv.weight  # (out, in, kh, kw)
        out, cin, kh, kw = Wk.shape
        widths = [cin * kh * kw, *_resolve_hidden(hidden, depth, out), out]
        mats = _init_factors(Wk.reshape(out, -1), widths, init, init_std, generator, label)
        factors = [mats[0].reshape(widths[1], cin, kh, kw)] + mats[1:]

        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self._copy_geometry(conv)
        self.depth = depth
        self.factors = nn.ParameterList([_new_param(f, Wk.requires_grad) for f in factors])
        b = conv.bias
        self.bias = None if b is None else _new_param(b, b.requires_grad)
        self.train(conv.training)
        return self

    @property
    def weight(self) -> torch.Tensor:
        """The effective kernel (out, in, kh, kw): (M_N ⋯ M_2) applied on the output channels of K."""
        K = self.factors[0]
        if self.depth == 1:
            return K
        M = _product(list(self.factors[1:]))  # (out, n_1)
        return (M @ K.reshape(K.shape[0], -1)).reshape(self.out_channels, *K.shape[1:])

    @property
    def widths(self) -> list[int]:
        """[n_0, …, n_N] with n_0 = in_channels·kh·kw (the patch size), then the channel widths."""
        return [self.factors[0][0].numel()] + [W.shape[0] for W in self.factors]

    def _positions(self, x: torch.Tensor) -> int:
        """Output rows m = batch × output positions, for the association rule."""
        *lead, H, Wd = x.shape
        rp = self._reversed_padding_repeated_twice  # [w_left, w_right, h_top, h_bottom]
        pads = (rp[2] + rp[3], rp[0] + rp[1])
        out_hw = [
            max((size + p - d * (k - 1) - 1) // s + 1, 0)
            for size, p, d, k, s in zip((H, Wd), pads, self.dilation, self.kernel_size, self.stride)
        ]
        batch = lead[0] if len(lead) == 2 else 1
        return batch * out_hw[0] * out_hw[1]

    def _conv(self, x, kernel, bias):
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return F.conv2d(x, kernel, bias, self.stride, 0, self.dilation)
        return F.conv2d(x, kernel, bias, self.stride, self.padding, self.dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (a non 3-D/4-D input takes the product path, where F.conv2d reports the shape error)
        if self.depth > 1 and x.ndim in (3, 4) and _prefer_sequence(self._positions(x), self.widths):
            y = self._conv(x, self.factors[0], None)
            for j in range(1, self.depth):
                b = self.bias if j == self.depth - 1 else None
                y = F.conv2d(y, self.factors[j][:, :, None, None], b)  # 1×1 conv
            return y
        return self._conv(x, self.weight, self.bias)

    def to_conv(self) -> nn.Conv2d:
        """A new nn.Conv2d with the effective kernel (same dtype/device; requires_grad if any factor's)."""
        W = self.weight.detach()
        conv = torch.nn.utils.skip_init(
            nn.Conv2d, self.in_channels, self.out_channels, self.kernel_size, stride=self.stride,
            padding=self.padding, dilation=self.dilation, bias=self.bias is not None,
            padding_mode=self.padding_mode, device=W.device, dtype=W.dtype,
        )
        conv.weight = _new_param(W, any(f.requires_grad for f in self.factors))
        if self.bias is not None:
            conv.bias = _new_param(self.bias, self.bias.requires_grad)
        conv.train(self.training)
        return conv

    def extra_repr(self) -> str:
        shapes = ", ".join(_shape_str(W.shape) for W in self.factors)
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, padding={self.padding!r}, dilation={self.dilation}")
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s + f", depth={self.depth}, factors=[{shapes}], bias={self.bias is not None}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


_OVERPARAM_TYPES = (OverparamLinear, OverparamConv2d)


# --------------------------------------------------------------------------------------------------
# the transformations


def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def _select(model: nn.Module, layers, conv: bool) -> list[tuple[str, nn.Module]]:
    """(first name, module) of each selected layer, in named_modules order, each module once."""
    if not isinstance(conv, bool):
        raise TypeError(f"conv must be a bool, got {conv!r}")
    aliases = list(model.named_modules(remove_duplicate=False))
    first_name: dict[int, str] = {}
    for name, m in aliases:
        first_name.setdefault(id(m), name)
    kinds = (nn.Linear, nn.Conv2d) if conv else (nn.Linear,)
    chosen: dict[int, nn.Module] = {}
    skipped: list[str] = []

    if layers is None or callable(layers):
        for name, m in aliases:
            if not isinstance(m, kinds) or id(m) in chosen:
                continue
            if isinstance(m, nn.Conv2d) and m.groups != 1:
                if first_name[id(m)] not in skipped:
                    skipped.append(first_name[id(m)])
                continue
            if layers is None or layers(name, m):
                chosen[id(m)] = m
    elif isinstance(layers, (str, bytes)) or not isinstance(layers, (Sequence, set, frozenset)):
        raise TypeError(
            f"layers must be None, a list of module names or a predicate (name, module) -> bool, "
            f"got {layers!r}" + (" (wrap a single name in a list)" if isinstance(layers, str) else "")
        )
    else:
        by_name = dict(aliases)
        bad = [n for n in layers if not isinstance(n, str)]
        if bad:
            raise TypeError(f"layers must hold module names (str), got {bad!r}")
        unknown = [n for n in layers if n not in by_name]
        if unknown:
            known = [n for n, m in aliases if isinstance(m, (nn.Linear, nn.Conv2d))]
            raise ValueError(
                f"unknown layer names {unknown!r} in model of type {type(model).__name__}; "
                f"its nn.Linear / nn.Conv2d layers are {known!r}"
            )
        for n in layers:
            m = by_name[n]
            if not isinstance(m, (nn.Linear, nn.Conv2d)):
                raise ValueError(f"layer {n!r} is a {type(m).__name__}, not an nn.Linear or nn.Conv2d")
            if isinstance(m, nn.Conv2d) and m.groups != 1:
                raise ValueError(f"layer {n!r}: only nn.Conv2d with groups=1 is supported, got groups={m.groups}")
            chosen[id(m)] = m

    if skipped:
        warnings.warn(f"skipping nn.Conv2d layers with groups != 1 (unsupported): {skipped!r}", stacklevel=3)
    if not chosen:
        what = "nn.Linear or nn.Conv2d" if conv else "nn.Linear"
        raise ValueError(f"no {what} layers selected in model of type {type(model).__name__}")
    for m in chosen.values():
        if isinstance(m, nn.modules.lazy.LazyModuleMixin) and m.has_uninitialized_params():
            raise ValueError(f"layer {first_name[id(m)]!r} is lazy and uninitialized; run a forward pass first")
    order = {id(m): i for i, (_, m) in enumerate(aliases)}
    picked = sorted(chosen.values(), key=lambda m: order[id(m)])
    return [(first_name[id(m)], m) for m in picked]


def _warn_tied(model: nn.Module, selected: list[tuple[str, nn.Module]]) -> None:
    owner = {id(m.weight): name for name, m in selected}
    ids = {id(m) for _, m in selected}
    tied = set()
    for name, m in model.named_modules():
        for p in m._parameters.values():
            if p is not None and id(p) in owner and (id(m) not in ids or owner[id(p)] != name):
                tied.add(owner[id(p)])
    if tied:
        warnings.warn(
            f"the weights of {sorted(tied)!r} are tied to other modules; the overparameterized copy "
            f"gives each its own factors, so the tying is not kept",
            stacklevel=3,
        )


def overparameterize(model: nn.Module, depth: int = 2, *, layers=None, hidden=None, init: str = "normal",
                     init_std: float | None = None, generator: torch.Generator | None = None,
                     conv: bool = False) -> nn.Module:
    """A deep copy of ``model`` with each selected layer replaced by a depth-``depth`` product.

    Args:
        model: any nn.Module (left untouched; a bare nn.Linear / nn.Conv2d works too).
        depth: number of factors N ≥ 1 (N = 1: one factor, the same function).
        layers: None (all nn.Linear, plus nn.Conv2d if ``conv``), a list of names from
            ``model.named_modules()``, or a predicate ``(name, module) -> bool`` (module docstring).
        hidden: hidden widths n_1 … n_{N−1}: None (all = the layer's output size, App C.2), an int for
            all, or a list of depth − 1 ints; the same for every selected layer.
        init: "normal" (W_1 = original weight, new factors i.i.d. N(0, init_std²)), "preserve" (the
            product equals the original weight) or "balanced" (exact balanced factorization, Eq 7).
        init_std: std of the drawn factors for init="normal"; default the std of the replaced weight.
        generator: torch.Generator for the draws (default: the global RNG of the weight's device).
        conv: whether nn.Conv2d layers are candidates for ``layers=None`` and for predicates.

    Returns a new module; the selected layers become OverparamLinear / OverparamConv2d on the same
    device and dtype, with the same ``training`` flags and requires_grad.
    """
    _check_model(model)
    depth = _check_depth(depth)
    init = _check_init(init)
    init_std = _check_init_std(init_std, init)
    _check_generator(generator)
    selected = _select(model, layers, conv)
    _warn_tied(model, selected)
    memo: dict[int, nn.Module] = {}
    for name, m in selected:
        label = repr(name) if name else "'' (the model itself)"
        make = OverparamConv2d.from_conv if isinstance(m, nn.Conv2d) else OverparamLinear.from_linear
        memo[id(m)] = make(m, depth, hidden=hidden, init=init, init_std=init_std, generator=generator,
                           _label=label)
    # deepcopy's memo maps each selected module (by identity) to its replacement, so a module shared
    # at several places becomes one replacement shared at the same places.
    return copy.deepcopy(model, memo)


def collapse(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every OverparamLinear / OverparamConv2d folded into a plain
    nn.Linear / nn.Conv2d computing the same function (weight = the product, same bias, dtype, device,
    training flag; weight.requires_grad if any factor requires grad). A model without such layers
    comes back as a plain deep copy, so collapse is idempotent."""
    _check_model(model)
    memo: dict[int, nn.Module] = {}
    for m in model.modules():
        if isinstance(m, OverparamLinear):
            memo[id(m)] = m.to_linear()
        elif isinstance(m, OverparamConv2d):
            memo[id(m)] = m.to_conv()
    return copy.deepcopy(model, memo)


# --------------------------------------------------------------------------------------------------
# report


@dataclass(frozen=True)
class LayerReport:
    """One overparameterized layer. FLOPs are per example, forward, a multiply-add counting 2;
    None for a conv when no ``input_shape`` was given (its output size is then unknown)."""

    name: str
    kind: str  # "Linear" | "Conv2d"
    original_shape: tuple[int, ...]
    factor_shapes: tuple[tuple[int, ...], ...]
    params_before: int  # weight + bias of the original layer
    params_after: int  # factors + bias
    params_added: int
    flops_collapsed: int | None  # one matmul / conv with the end-to-end weight
    flops_sequence: int | None  # factors applied in sequence (what forward does for small batches)
    extra_flops: int | None


@dataclass(frozen=True)
class OverparamReport:
    """Whole-model parameter counts (shared parameters counted once) and per-layer rows."""

    params_before: int
    params_after: int
    params_added: int
    layers: tuple[LayerReport, ...]
    extra_flops: int | None  # sum over layers, None if any layer's is unknown

    def __str__(self) -> str:
        def f(v):
            return "n/a" if v is None else f"{v:,}"

        head = ("layer", "kind", "original", "factors", "params before", "after", "added", "extra FLOPs/example")
        rows = [
            (L.name or "(model)", L.kind, _shape_str(L.original_shape),
             ", ".join(_shape_str(s) for s in L.factor_shapes),
             f(L.params_before), f(L.params_after), f(L.params_added), f(L.extra_flops))
            for L in self.layers
        ]
        rows.append(("total (model)", "", "", "", f(self.params_before), f(self.params_after),
                     f(self.params_added), f(self.extra_flops)))
        w = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        left = {0, 1, 2, 3}

        def line(r):
            return "  ".join(c.ljust(w[i]) if i in left else c.rjust(w[i]) for i, c in enumerate(r)).rstrip()

        return "\n".join([line(head), "  ".join("-" * x for x in w), *map(line, rows)])


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _rows_per_example(model: nn.Module, input_shape) -> dict[int, int]:
    """Rows m each Overparam layer sees for one example: one eval-mode, no-grad forward of zeros."""
    seen: dict[int, int] = {}
    handles = []
    for m in model.modules():
        if isinstance(m, _OVERPARAM_TYPES):
            def hook(mod, args, _id=id(m)):
                x = args[0]
                seen[_id] = (x.numel() // mod.in_features if isinstance(mod, OverparamLinear)
                             else mod._positions(x))
            handles.append(m.register_forward_pre_hook(hook))
    p = next(model.parameters(), None)
    x = torch.zeros((1, *input_shape), dtype=p.dtype if p is not None else None,
                    device=p.device if p is not None else None)
    flags = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        for m, t in flags.items():
            m.training = t
    return seen


def overparam_report(original: nn.Module, overparameterized: nn.Module, input_shape=None) -> OverparamReport:
    """Parameters before/after/added and per-layer rows with the extra forward FLOPs per example.

    Layers are paired by qualified name. Without ``input_shape`` a Linear is taken to see one input
    row per example and conv FLOPs are None. With ``input_shape`` (one example, no batch dimension,
    e.g. (1, 28, 28)) one forward pass of zeros of shape (1, *input_shape) is run on
    ``overparameterized`` in eval mode under no_grad (training flags restored) to count the rows each
    layer sees (tokens, output positions)."""
    _check_model(original)
    _check_model(overparameterized)
    rows = _rows_per_example(overparameterized, tuple(input_shape)) if input_shape is not None else {}
    reports = []
    for name, m in overparameterized.named_modules():
        if not isinstance(m, _OVERPARAM_TYPES):
            continue
        try:
            orig = original.get_submodule(name)
        except AttributeError:
            raise ValueError(
                f"layer {name!r} of the overparameterized model has no counterpart in the original"
            ) from None
        is_lin = isinstance(m, OverparamLinear)
        want = nn.Linear if is_lin else nn.Conv2d
        if not isinstance(orig, want) or tuple(orig.weight.shape) != tuple(m.weight.shape):
            raise ValueError(
                f"layer {name!r}: the original is a {type(orig).__name__}, which does not match "
                f"{type(m).__name__} with weight {tuple(m.weight.shape)}"
            )
        before = sum(p.numel() for p in orig.parameters())
        after = sum(p.numel() for p in m.parameters())
        n = m.widths
        r = rows.get(id(m), 1 if is_lin and input_shape is None else None)
        if r is None:
            fc = fs = extra = None
        else:
            fc = 2 * r * n[-1] * n[0]
            fs = 2 * r * sum(n[j] * n[j - 1] for j in range(1, len(n)))
            extra = fs - fc
        reports.append(LayerReport(
            name=name, kind="Linear" if is_lin else "Conv2d", original_shape=tuple(orig.weight.shape),
            factor_shapes=tuple(tuple(W.shape) for W in m.factors), params_before=before,
            params_after=after, params_added=after - before, flops_collapsed=fc, flops_sequence=fs,
            extra_flops=extra,
        ))
    before, after = _count(original), _count(overparameterized)
    extras = [L.extra_flops for L in reports]
    total_extra = None if any(e is None for e in extras) else sum(extras)
    return OverparamReport(before, after, after - before, tuple(reports), total_extra)
