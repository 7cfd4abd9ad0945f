"""overparam — implicit acceleration by overparameterization (Arora, Cohen & Hazan, ICML 2018).

The public surface, curated. Equations refer to the paper (see README).

- the end-to-end rule: :func:`precondition` (Eq 10 / Claim 2), :func:`end_to_end_step`,
  :func:`preconditioner_matrix` (Claim 1)
- models and losses: :class:`LinearNetwork` (Eq 2), :func:`lp_loss`
- balanced factorizations (Eq 7): :func:`balanced_factors`, :func:`balancedness`
- the appendix checked numerically: :func:`run_checks` (``overparam verify``)
- any PyTorch model: :class:`EndToEnd` (Eq 10 as an optimizer), :func:`overparameterize`,
  :func:`collapse`, :class:`OverparamLinear`, :class:`OverparamConv2d`, :func:`overparam_report`
- data sets: :mod:`overparam.data`; experiments: :mod:`overparam.experiments`
"""

from .end_to_end import end_to_end_step, precondition, preconditioner_matrix
from .losses import lp_loss
from .models import LinearNetwork
from .nn import OverparamConv2d, OverparamLinear, collapse, overparam_report, overparameterize
from .optim import EndToEnd
from .theory import CheckResult, balanced_factors, balancedness, run_checks

__version__ = "0.1.0"

__all__ = [
    "precondition",
    "end_to_end_step",
    "preconditioner_matrix",
    "lp_loss",
    "LinearNetwork",
    "balanced_factors",
    "balancedness",
    "run_checks",
    "CheckResult",
    "EndToEnd",
    "overparameterize",
    "collapse",
    "OverparamLinear",
    "OverparamConv2d",
    "overparam_report",
]
