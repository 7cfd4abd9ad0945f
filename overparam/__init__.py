"""overparam — implicit acceleration by overparameterization (Arora, Cohen & Hazan, ICML 2018).

The public surface, curated. Equations refer to the paper (see README).
"""

from .end_to_end import end_to_end_step, precondition, preconditioner_matrix
from .losses import lp_loss
from .models import LinearNetwork
from .theory import balanced_factors, balancedness

__version__ = "0.1.0"

__all__ = [
    "precondition",
    "end_to_end_step",
    "preconditioner_matrix",
    "lp_loss",
    "LinearNetwork",
    "balanced_factors",
    "balancedness",
]
