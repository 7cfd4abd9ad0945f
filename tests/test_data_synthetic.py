"""The synthetic stand-in: deterministic, same return type, calibrated like the real ethanol data."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from overparam.data import GasSensorData, synthetic_gas_sensor
from cases import l4_optimum




@functools.lru_cache(maxsize=None)
def make(seed: int = 0) -> GasSensorData:
    return synthetic_gas_sensor(seed=seed)


@pytest.fixture(scope="module")
def default() -> GasSensorData:
    return make(0)


def test_shape_type_label(default):
    assert isinstance(default, GasSensorData)
    assert default.X.shape == (2565, 128) and default.y.shape == (2565, 1)
    assert default.X.dtype == default.y.dtype == torch.float64
    assert "synthetic" in default.label and "seed=0" in default.label
    assert default.n_batches == 0 and default.files == ()


def test_deterministic_bitwise_and_seed_dependent(default):
    again = synthetic_gas_sensor(seed=0)
    assert torch.equal(again.X, default.X) and torch.equal(again.y, default.y)
    assert torch.equal(again.feature_std, default.feature_std)
    other = make(1)
    assert not torch.equal(other.X, default.X)
    f32 = synthetic_gas_sensor(dtype=torch.float32)
    assert f32.X.dtype == torch.float32 and torch.equal(f32.X, default.X.float())


def test_standardised_like_the_loader(default):
    X, y = default.X.numpy(), default.y.numpy()[:, 0]
    np.testing.assert_allclose(X.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(X.std(0), 1, rtol=1e-10)
    assert y.mean() == pytest.approx(0, abs=1e-12) and y.std() == pytest.approx(1, rel=1e-12)
    # The statistics invert to the raw (pre-z-score) values: a positive "concentration".
    conc = y * default.target_std + default.target_mean
    assert conc.min() > 0


@pytest.mark.parametrize("seed", [0, 1])
def test_calibration_matches_the_real_data(seed, default):
    """Real 8/10 copy: cond 1.02e5, E[y⁴] 8.19, ℓ2 initial distance 0.8885 (see test_data_gas_sensor)."""
    data = make(seed)
    X, y = data.X.numpy(), data.y.numpy()[:, 0]
    s = np.linalg.svd(X, compute_uv=False)
    assert 7e4 < s[0] / s[-1] < 1.5e5
    assert np.mean(y**4) == pytest.approx(8.14, abs=0.05)  # stratified quantiles: seed-independent
    assert y.max() > 4 and np.mean(y**3) > 1  # skewed, a long right tail
    w, *_ = np.linalg.lstsq(X, y, rcond=None)
    assert np.mean(y**2) - np.mean((X @ w - y) ** 2) == pytest.approx(0.889, abs=1e-6)
    # The explained variance is spread over the spectrum, not all on the top direction.
    U, _, _ = np.linalg.svd(X, full_matrices=False)
    c = (U.T @ y) ** 2 / len(y)
    assert 0.45 < c[0] < 0.65 and c[20:].sum() > 0.05


def test_l4_distance_from_optimum(default):
    X, y = default.X.numpy(), default.y.numpy()[:, 0]
    opt, gnorm = l4_optimum(X, y)
    assert gnorm < 1e-9
    assert np.mean(y**4) / 4 - opt == pytest.approx(2.00, abs=0.03)  # real 8/10 copy: 2.015
    assert 0.02 < opt < 0.05  # the ℓ4 optimum itself: 0.0325 on the real copy


def test_other_sizes():
    small = synthetic_gas_sensor(m=300, d=16, seed=3)
    assert small.X.shape == (300, 16)
    X, y = small.X.numpy(), small.y.numpy()[:, 0]
    w, *_ = np.linalg.lstsq(X, y, rcond=None)
    assert np.mean(y**2) - np.mean((X @ w - y) ** 2) == pytest.approx(0.889, abs=1e-6)
    assert torch.isfinite(small.X).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"m": 129}, "m must be an int >= 130"),
    ({"m": 2565.0}, "m must be an int"),
    ({"d": 1}, "d must be an int >= 2"),
    ({"d": True}, "d must be an int"),
    ({"seed": -1}, "seed must be an int >= 0"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        synthetic_gas_sensor(**kwargs)
    with pytest.raises(TypeError, match="dtype"):
        synthetic_gas_sensor(dtype=torch.int32)
