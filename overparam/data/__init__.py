"""Data for the paper's linear-network experiments: the UCI gas sensor ethanol problem and a stand-in.

``load_regression_data()`` is what experiments call: the real data when a path (or
``$OVERPARAM_DATA``) is given, else the deterministic synthetic stand-in. MNIST lives in
``overparam.data.mnist`` (not imported here, so this package needs nothing beyond the core deps).
"""

from overparam.data._download import UCI_SHA256, UCI_URL, download_gas_sensor
from overparam.data.gas_sensor import (
    GAS_IDS,
    GasSensorData,
    load_gas_sensor,
    load_regression_data,
)
from overparam.data.synthetic import synthetic_gas_sensor

__all__ = [
    "GAS_IDS",
    "GasSensorData",
    "UCI_SHA256",
    "UCI_URL",
    "download_gas_sensor",
    "load_gas_sensor",
    "load_regression_data",
    "synthetic_gas_sensor",
]
