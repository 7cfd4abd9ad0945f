"""A deterministic synthetic stand-in for the gas-sensor ethanol problem (no download needed).

Built in the spectral domain so that the properties that drive the paper's experiments are set
directly, calibrated on the real 8/10-batch copy (1316 ethanol rows, z-scored):

- ill-conditioned design: the singular values of X/√m follow the real data's profile (8.3 down to
  ≈ 4e-3 over all but the last two directions, then two near-collinear ones at ≈ 1e-4), so the
  z-scored features have condition number ≈ 1e5, as strongly correlated sensor features do;
- heavy-tailed target: y is a lognormal "concentration" (σ = 0.5, skewed), z-scored: E[y⁴] ≈ 8.1;
- the least-squares optimum explains 88.9% of the variance, spread over the spectrum as on the real
  data: 55% along the top direction, the rest mostly along mid and small singular values, which is
  what makes plain GD slow;
- heavy-tailed rows and residuals: row magnitudes are lognormal and grow with the concentration, so
  a few rows have high leverage (leverage quantiles like the real data's), and the unexplained part
  is heavy-tailed; these set the ℓ4 curvature (large at the start, small near the optimum) and the
  ℓ4 optimum (≈ 0.035 vs 0.0325 on the real copy).

Construction: ŷ (y centred, unit norm) = √0.889·g + √0.111·q with g in the column space of X and q
orthogonal to it; an orthonormal basis U of that space is rotated so that (u_iᵀ ŷ)² = c_i (the
calibrated explained fractions); X = √m · U diag(s) Vᵀ with V orthogonal whose first row is nearly
uniform (every feature loads on the main factor, like the sensors do); then X and y are z-scored
like the real loader. Z-scoring scales columns, which keeps the column space and so the 88.9%.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from scipy.special import ndtri

from overparam.data.gas_sensor import GasSensorData, zscore

__all__ = ["synthetic_gas_sensor"]

# Singular values of X/√m on the real 8/10 copy at indices 0, 8, …, 120; stretched over d − 2 directions.
_S_ANCHORS = np.array([8.316, 1.194, 0.4041, 0.2073, 0.1358, 0.08538, 0.06608, 0.04784,
                       0.03492, 0.02703, 0.02025, 0.01545, 0.01100, 0.007927, 0.005820, 0.003760])
# The two smallest directions on the real data sit far below the smooth decay (near-collinear features).
_S_TAIL = np.array([2.55e-4, 8.15e-5])
# Fraction of Var(y) explained along singular directions [0,1), [1,5), [5,20), [20,60), [60,100),
# [100,128) on the real copy (sum 0.889); indices scale with d.
_C_BLOCKS = [(0.0, 1 / 128, 0.549), (1 / 128, 5 / 128, 0.056), (5 / 128, 20 / 128, 0.154),
             (20 / 128, 60 / 128, 0.069), (60 / 128, 100 / 128, 0.039), (100 / 128, 1.0, 0.022)]
_ROW_SIGMA = 0.55  # log-scale spread of row magnitudes: leverage quantiles like the real data's
_RESIDUAL_SIGMA = 0.83  # kurtosis of ε·exp(σζ) is 3·exp(4σ²) ≈ 48
_LOGNORMAL_SIGMA = 0.5  # kurtosis 8.9 for the lognormal; 8.1 for its m = 2565 quantiles (thin tail)


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _spectrum(d: int) -> np.ndarray:
    """Singular values of X/√m for d features: the real profile, resampled on relative index."""
    n_smooth = max(d - len(_S_TAIL), 1)
    grid = np.linspace(0.0, 1.0, len(_S_ANCHORS))
    t = np.linspace(0.0, 1.0, n_smooth)
    smooth = np.exp(np.interp(t, grid, np.log(_S_ANCHORS)))
    return np.concatenate([smooth, _S_TAIL[: d - n_smooth]])


def _explained(d: int, rng: np.random.Generator) -> np.ndarray:
    """Per-direction explained fractions c_i (sum 0.889), block totals from the real data."""
    c = np.zeros(d)
    for lo, hi, total in _C_BLOCKS:
        idx = np.arange(int(round(lo * d)), max(int(round(hi * d)), int(round(lo * d)) + 1))
        idx = idx[idx < d]
        if len(idx):
            c[idx] += total * rng.dirichlet(np.ones(len(idx)))
    return c


def _orthonormal(rng: np.random.Generator, A: np.ndarray, k: int, row_scale=None) -> np.ndarray:
    """k orthonormal columns orthogonal to the (orthonormal) columns of A; rows scaled by row_scale."""
    Z = rng.standard_normal((A.shape[0], k))
    if row_scale is not None:
        Z *= row_scale[:, None]
    Z -= A @ (A.T @ Z)
    Z -= A @ (A.T @ Z)  # second pass: classical Gram–Schmidt loses orthogonality once
    Q, _ = np.linalg.qr(Z)
    return Q


def synthetic_gas_sensor(m: int = 2565, d: int = 128, seed: int = 0, dtype=torch.float64) -> GasSensorData:
    """A synthetic regression problem shaped and conditioned like the paper's ethanol data.

    Returns the same ``GasSensorData`` as ``load_gas_sensor`` (z-scored X (m, d), y (m, 1), with the
    statistics), label "synthetic gas sensor stand-in (m=…, d=…, seed=…)". Same arguments → bitwise the
    same tensors on a given machine and numpy/BLAS build (numpy ``Generator(PCG64(seed))``, float64
    throughout, cast at the end). See the
    module docstring for what is calibrated and how; measured at the defaults: condition number
    1.04e5, E[y⁴] = 8.14, least-squares optimum's mean squared residual 0.111 (ℓ2 distance from
    optimum at W = 0: 0.889), ℓ4 (mean r⁴/4) distance at W = 0: 2.00.
    """
    d = _check_int(d, "d", 2)
    m = _check_int(m, "m", d + 2)
    seed = _check_int(seed, "seed", 0)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    rng = np.random.Generator(np.random.PCG64(seed))

    # Target: a skewed, heavy-tailed "concentration", centred and unit-norm.
    # Stratified normal quantiles (shuffled) rather than i.i.d. draws: the sample kurtosis of a
    # lognormal is noisy (6 to 9 across seeds at m = 2565); quantiles pin it for every seed.
    z = ndtri((rng.permutation(m) + 0.5) / m)
    conc = np.exp(_LOGNORMAL_SIGMA * z)
    ones = np.full((m, 1), 1.0 / np.sqrt(m))
    y_hat = conc - conc.mean()
    y_hat /= np.linalg.norm(y_hat)

    # Column space: g (the part of ŷ it explains) plus d − 1 directions orthogonal to ŷ and 1.
    r2 = sum(total for _, _, total in _C_BLOCKS)
    # Rows are heavy-tailed, more so at high concentration (sensor responses grow with it and drift
    # between batches): a few rows have high leverage, as on the real data, which is what makes the
    # ℓ4 curvature large at the start and small near the optimum.
    tau = np.exp(_ROW_SIGMA * (0.6 * z + 0.8 * rng.standard_normal(m)))
    # The unexplained part q is heavy-tailed too (real least-squares residuals: kurtosis ≈ 48).
    A = np.hstack([ones, y_hat[:, None]])
    q = rng.standard_normal(m) * np.exp(_RESIDUAL_SIGMA * (0.6 * z + 0.8 * rng.standard_normal(m)))
    q -= A @ (A.T @ q)
    q /= np.linalg.norm(q)
    basis = _orthonormal(rng, np.hstack([A, q[:, None]]), d - 1, row_scale=tau)  # (m, d − 1)
    g = np.sqrt(r2) * y_hat + np.sqrt(1.0 - r2) * q
    H = np.hstack([g[:, None], basis])  # (m, d), orthonormal, ŷᵀH = (√r2, 0, …, 0)
    # Rotate so that u_iᵀŷ = √r2·R_{0i} = ±√c_i: a Householder reflection taking e_0 to b.
    c = _explained(d, rng)
    b = np.sqrt(c / c.sum()) * rng.choice([-1.0, 1.0], size=d)
    v = b.copy()
    v[0] -= 1.0
    R = np.eye(d) - 2.0 * np.outer(v, v) / (v @ v) if v @ v > 0 else np.eye(d)  # R[0] = b
    U = H @ R  # (m, d)

    # Right factor: first row near uniform (every feature loads on the main factor), rest random.
    v0 = (1.0 + 0.3 * rng.standard_normal(d)) * rng.choice([-1.0, 1.0], size=d)
    v0 /= np.linalg.norm(v0)
    V = np.hstack([v0[:, None], _orthonormal(rng, v0[:, None], d - 1)])  # (d, d) orthogonal
    X = np.sqrt(m) * (U * _spectrum(d)) @ V.T  # (m, d)

    Xz, yz, mean, std, y_mean, y_std = zscore(X, conc)
    return GasSensorData(
        X=torch.from_numpy(Xz).to(dtype),
        y=torch.from_numpy(yz).to(dtype).reshape(-1, 1),
        feature_mean=torch.from_numpy(mean).to(dtype),
        feature_std=torch.from_numpy(std).to(dtype),
        target_mean=y_mean,
        target_std=y_std,
        source=f"synthetic(m={m}, d={d}, seed={seed})",
        files=(),
        n_batches=0,
        label=f"synthetic gas sensor stand-in (m={m}, d={d}, seed={seed})",
        gas="ethanol",
        batch=None,
    )
