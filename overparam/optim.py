"""EndToEnd: Eq 10 as a ``torch.optim.Optimizer`` — a depth-N linear network's training dynamics applied
to a single weight matrix, without the extra factors.

Layering (torch.optim's class → functional pattern, Muon's thin step loop): :class:`EndToEnd.step` only
gathers (param, grad) pairs and hyperparameters from the param groups; :func:`end_to_end` applies the
update to a list of tensors; the math (the Eq 10 sum) is :func:`overparam.end_to_end.precondition`, the
pure function that :func:`overparam.end_to_end.end_to_end_step` also uses.
"""

from __future__ import annotations

import numbers

import torch
from torch.optim import Optimizer

from .end_to_end import precondition
from .linalg import check_depth

__all__ = ["EndToEnd", "end_to_end"]


def _is_real(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _check_hparams(lr, depth, weight_decay, rcond, momentum=0.0) -> None:
    """torch.optim-style validation of one param group's hyperparameters (ValueError naming the value)."""
    if not _is_real(lr) or not 0.0 <= lr < float("inf"):
        raise ValueError(f"Invalid learning rate: {lr!r}")
    try:
        check_depth(depth)
    except ValueError:
        raise ValueError(f"Invalid depth: {depth!r}") from None
    if not _is_real(weight_decay) or not 0.0 <= weight_decay < float("inf"):
        raise ValueError(f"Invalid weight_decay value: {weight_decay!r}")
    if not _is_real(momentum) or not 0.0 <= momentum < float("inf"):
        raise ValueError(f"Invalid momentum value: {momentum!r}")
    if rcond is not None and (not _is_real(rcond) or not 0.0 <= rcond < float("inf")):
        raise ValueError(f"Invalid rcond: {rcond!r}")


def end_to_end(params: list[torch.Tensor], grads: list[torch.Tensor], *, lr: float, depth: int,
               weight_decay: float = 0.0, rcond: float | None = None, momentum: float = 0.0,
               momentum_buffers: list | None = None) -> None:
    """Functional form of :class:`EndToEnd`: updates each tensor of ``params`` in place (Eq 10).

    A tensor with ndim >= 2 is viewed as the matrix W = (shape[0], prod(shape[1:])) and updated by
    Eq 10 at depth N, written in torch.optim.SGD's coupled form

        W ← W − η (P_N(W, G) + λN · W)  =  (1 − ηλN) W − η P_N(W, G),

    P_N = :func:`overparam.end_to_end.precondition`. A tensor with ndim <= 1 (a bias, a scale) gets the
    same line at N = 1: plain SGD with weight decay λ. ``grads`` are read, never written.

    With ``momentum`` μ > 0, the direction d = P_N(W, G) + λN·W goes through torch.optim.SGD's heavy
    ball (dampening 0): b ← μ b + d (b = d at the first step), W ← W − η b. ``momentum_buffers``
    holds one entry per param (None before the first step) and is updated in place.
    """
    for i, (p, g) in enumerate(zip(params, grads)):
        if p.numel() == 0:
            continue
        N = depth if p.ndim >= 2 else 1  # biases and scalars: plain SGD (see EndToEnd's docstring)
        if N == 1:
            d_p = g  # precondition at depth 1 is the identity
        else:
            W = p.reshape(p.shape[0], -1)  # (k, d): out × fan-in
            d_p = precondition(W, g.reshape(W.shape), N, rcond=rcond).reshape(p.shape)
        if weight_decay != 0:
            d_p = d_p.add(p, alpha=weight_decay * N)  # Eq 10's λN·W_e: λ per factor, N factors
        if momentum != 0:
            buf = momentum_buffers[i]
            if buf is None:
                buf = momentum_buffers[i] = d_p.detach().clone()
            else:
                buf.mul_(momentum).add_(d_p)
            d_p = buf
        p.add_(d_p, alpha=-lr)


class EndToEnd(Optimizer):
    r"""Implements the end-to-end update rule of a depth-N linear network (Eq 10).

    Training a weight matrix W with this optimizer follows, to first order in the learning rate, what
    gradient descent with weight decay λ on a *balanced* depth-N factorization W = W_N ⋯ W_1 (Eq 4, Eq 7)
    would do to the product — the paper's "implicit acceleration" — with no extra parameters, and
    independently of the hidden widths (Theorem 1). ``depth=1`` is plain SGD.

    .. code-block:: text

        input: params, η (lr), N (depth), λ (weight_decay), μ (momentum), rcond
        for t = 1, 2, ...
            for each param p with a gradient g:
                if p.ndim >= 2:                                   # matrix: Eq 10
                    W, G ← p viewed as (shape[0], -1), g likewise  # (k, d)
                    P ← Σ_{j=1..N} [W Wᵀ]^{(j−1)/N} G [Wᵀ W]^{(N−j)/N}
                        # Claim 2 when k = 1 or d = 1:  ‖W‖^{2−2/N} (G + (N−1) ⟨G, W⟩ W / ‖W‖²)
                    d ← P + λ N W                  # W − η d = (1 − η λ N) W − η P, Eq 10
                    if μ ≠ 0: b ← μ b + d (b = d at t = 1); d ← b   # SGD's heavy ball
                    W ← W − η d
                else:                                             # bias / scalar: SGD
                    p ← p − η (g + λ p)          # (with momentum: same heavy ball)
        return loss

    Args:
        params (iterable): parameters or dicts defining parameter groups.
        lr (float): learning rate η (required; a Python real >= 0 — tensor learning rates are not
            supported).
        depth (int): N >= 1, the depth of the linear network being emulated. Per group, so
            different layers may emulate different depths.
        weight_decay (float, optional): λ, the weight decay *of each factor* in Eq 4 (default: 0).
            The end-to-end matrix then decays by (1 − ηλN) per step, as in Eq 10, so
            ``EndToEnd(depth=N, weight_decay=λ)`` emulates ``SGD(weight_decay=λ)`` on every factor of
            a depth-N network. At depth 1 it is ``torch.optim.SGD(weight_decay=λ)`` bit for bit (the
            update is written in SGD's coupled form, W ← W − η(P + λN·W)). To decay the end-to-end
            matrix by (1 − ημ) at depth N, pass ``weight_decay=μ / N``.
        momentum (float, optional): heavy-ball momentum μ applied to the preconditioned direction,
            exactly as torch.optim.SGD applies it to the gradient (dampening 0, no Nesterov;
            default: 0). At depth 1 this is ``SGD(momentum=μ)`` bit for bit. Not part of the paper's
            Eq 10; offered because the paper's convnet experiment trains with momentum 0.9.
        rcond (float, optional): relative singular-value cutoff: singular values <= rcond·σ_max are
            zero before the fractional powers are taken (default: None, max(k, d)·eps of the dtype; see
            :mod:`overparam.linalg`).

    Parameter shapes. A parameter with ndim >= 2 is treated as the matrix (shape[0], prod(shape[1:])):
    a ``Linear`` weight (out, in) as is, a conv kernel (out, in, kh, kw) as out × (in·kh·kw), i.e.
    the convolution as a linear map from an input patch to the output channels.

    Biases and scalars (ndim <= 1) get plain SGD with the same lr and weight decay. A bias is not a
    matrix factor: in a depth-N linear network with biases, the end-to-end bias is a *sum*
    b_N + W_N b_{N−1} + … + W_N⋯W_2 b_1, not a product, so Eq 10 does not describe it. Viewing it as a
    1×n matrix would apply Claim 2, i.e. emulate b = c_N⋯c_2·v, a vector times a chain of scalars
    nobody builds — and at the usual zero init Claim 2's update is exactly 0 for N >= 2, so the bias
    would never move.

    Cost: one thin SVD per matrix parameter per step, of the narrow side only (O(k²d) for k <= d);
    a single-row or single-column matrix uses Claim 2's O(d) closed form and no SVD. Depth 1 and
    1-D parameters need no decomposition. The optimizer keeps a step count per parameter in ``state``, and a
    ``momentum_buffer`` when momentum > 0: the memory of torch.optim.SGD with the same options.

    Gradients are read, never modified; parameters with ``grad is None`` are skipped. Sparse
    gradients and complex parameters are not supported.

    Example (the paper's depth-3 single-output regression, as one 1×128 matrix)::

        model = torch.nn.Linear(128, 1, bias=False)
        opt = EndToEnd(model.parameters(), lr=1e-3, depth=3)
        opt.zero_grad()
        lp_loss(model(x), y, p=4).backward()
        opt.step()
    """

    def __init__(self, params, lr: float, depth: int, weight_decay: float = 0.0, rcond: float | None = None,
                 momentum: float = 0.0):
        _check_hparams(lr, depth, weight_decay, rcond, momentum)
        defaults = dict(lr=lr, depth=depth, weight_decay=weight_decay, rcond=rcond, momentum=momentum)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict) -> None:
        # Validate every group (torch validates only the defaults), before it is added.
        merged = {**self.defaults, **param_group}
        _check_hparams(merged["lr"], merged["depth"], merged["weight_decay"], merged["rcond"],
                       merged.get("momentum", 0.0))
        params = param_group["params"]
        if not isinstance(params, set):  # a set is left to torch, which rejects it (unordered)
            params = [params] if isinstance(params, torch.Tensor) else list(params)
            for p in params:
                if isinstance(p, torch.Tensor) and p.is_complex():
                    raise TypeError(f"EndToEnd does not support complex parameters, got {p.dtype}")
        super().add_param_group({**param_group, "params": params})

    @torch.no_grad()
    def step(self, closure=None):
        """Performs a single optimization step.

        Args:
            closure (Callable, optional): a closure that re-evaluates the model and returns the loss.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        groups = [[p for p in group["params"] if p.grad is not None] for group in self.param_groups]
        if any(p.grad.is_sparse for ps in groups for p in ps):  # before any parameter moves
            raise RuntimeError("EndToEnd does not support sparse gradients")
        for group, params in zip(self.param_groups, groups):
            buffers = []
            for p in params:
                state = self.state[p]  # lazy: created at a parameter's first step
                state["step"] = state.get("step", 0) + 1
                buffers.append(state.get("momentum_buffer"))
            momentum = group.get("momentum", 0.0)
            end_to_end(params, [p.grad for p in params], lr=group["lr"], depth=group["depth"],
                       weight_decay=group["weight_decay"], rcond=group["rcond"], momentum=momentum,
                       momentum_buffers=buffers)
            if momentum != 0:
                for p, buf in zip(params, buffers):
                    self.state[p]["momentum_buffer"] = buf
        return loss
