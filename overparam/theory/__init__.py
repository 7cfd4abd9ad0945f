"""Balanced factorizations (Eq 7) and the numeric checks of the appendix's results.

Each check is a function returning a :class:`CheckResult`; :func:`run_checks` runs them (this is what
``overparam verify`` prints). Every check is deterministic (fixed seeds, float64), runs in a fraction of
a second to a few seconds on a CPU, and calls the library's own functions through their modules
(``end_to_end.precondition`` etc.), so a wrong library function makes the check fail. Each description
says what ``error`` and ``tolerance`` mean for that check; ``passed`` may also require conditions listed
in ``details["conditions"]``.

The checks, in the order they run, and the result each verifies:

===================  =============================================================  ==================
check                appendix result                                                module
===================  =============================================================  ==================
``theorem-1``        Theorem 1 (App A.1): from a balanced start, GD on the factors  :mod:`.flow`
                     tracks Eq 10's rule, with a gap that is O(lr)
``lemma-1``          Lemma 1 / Eq 17: W_{j+1}ᵀW_{j+1} − W_jW_jᵀ decays as e^{−2λt}  :mod:`.flow`
                     from any start
``eq-18``            Eq 18: a balanced start stays balanced (up to O(lr))           :mod:`.flow`
``eq-21-24``         Eq 7 and 21–24 (App A.1): :func:`balanced_factors` and the     :mod:`.algebra`
                     Gram-power identities of Theorem 1's proof
``claim-1``          Claim 1 / Eq 11: the eigendecomposition of P_W                 :mod:`.algebra`
``claim-2``          Claim 2 / Eq 12: the single-output closed form                 :mod:`.algebra`
``claim-2-at-zero``  Eq 10/12 at W_e = 0: the update is zero for N >= 2             :mod:`.algebra`
``depth-1-is-gd``    N = 1: Eq 10 is plain GD                                       :mod:`.algebra`
``theorem-2``        Theorem 2 (App A.4) through Lemmas 2 and 3                     :mod:`.theorem2`
``appendix-b``       App B: the p = 4, N = 2 acceleration bound y1/(4 ε1)           :mod:`.appendix_b`
===================  =============================================================  ==================

:mod:`.balanced` holds :func:`balanced_factors` and :func:`balancedness`; :mod:`._common` what the
checks share (:class:`CheckResult`, the numpy oracles, the small regression problems and GD loops).
"""

from __future__ import annotations

from ._common import CheckResult
from .algebra import check_claim_1, check_claim_2, check_claim_2_at_zero, check_depth_1_is_gd, check_eq_21_24
from .appendix_b import check_appendix_b
from .balanced import balanced_factors, balancedness
from .flow import check_eq_18, check_lemma_1, check_theorem_1
from .theorem2 import check_theorem_2

__all__ = ["balanced_factors", "balancedness", "CheckResult", "run_checks", "check_names"]


# --- registry -----------------------------------------------------------------------------------------

_CHECKS = {
    "theorem-1": check_theorem_1,
    "lemma-1": check_lemma_1,
    "eq-18": check_eq_18,
    "eq-21-24": check_eq_21_24,
    "claim-1": check_claim_1,
    "claim-2": check_claim_2,
    "claim-2-at-zero": check_claim_2_at_zero,
    "depth-1-is-gd": check_depth_1_is_gd,
    "theorem-2": check_theorem_2,
    "appendix-b": check_appendix_b,
}


def check_names() -> list[str]:
    """Names of the checks, in the order :func:`run_checks` runs them."""
    return list(_CHECKS)


def run_checks(names=None) -> list[CheckResult]:
    """Run the named checks (all when ``names`` is None), in registry order of the request.

    Raises ValueError naming the unknown names and listing the valid ones.
    """
    if names is None:
        names = list(_CHECKS)
    elif isinstance(names, str):
        names = [names]
    names = list(names)
    unknown = [n for n in names if n not in _CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; valid names: {', '.join(_CHECKS)}")
    return [_CHECKS[n]() for n in dict.fromkeys(names)]
