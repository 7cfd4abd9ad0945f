"""UCI Gas Sensor Array Drift Dataset at Different Concentrations (id 270): the paper's regression data.

Source: UCI Machine Learning Repository, dataset 270, DOI 10.24432/C5MK6M, licence CC BY 4.0.
Cite: A. Vergara, S. Vembu, T. Ayhan, M. A. Ryan, M. L. Homer, R. Huerta, "Chemical gas sensor drift
compensation using classifier ensembles", Sensors and Actuators B 166 (2012) 320–329; and
I. Rodriguez-Lujan, J. Fonollosa, A. Vergara, M. Homer, R. Huerta, "On the calibration of sensor arrays
for pattern recognition using the minimal number of experiments", Chemometrics and Intelligent
Laboratory Systems 130 (2014) 123–134.

Format: files ``batch1.dat`` … ``batch10.dat``, one sample a line, ``GAS;CONC 1:v1 2:v2 … 128:v128``
(GAS an id 1..6, CONC the concentration in ppmv, 128 = 16 sensors × 8 features). The paper's
"Ethanol problem" (Section 8) is gas id 1: 2565 rows × 128 features, target = concentration.
"""

from __future__ import annotations

import math
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch

__all__ = [
    "GAS_IDS",
    "N_BATCHES",
    "N_FEATURES",
    "GasSensorData",
    "find_batch_files",
    "load_gas_sensor",
    "load_regression_data",
    "zscore",
]

N_FEATURES = 128
N_BATCHES = 10
# The ids as the UCI page documents them. (The per-batch counts of id 1 — 90, 164, 365, … — are the
# ones UCI's composition table lists under "Acetone"; we follow the documented id list, and the paper's
# 2565 rows are exactly the id-1 rows, so "ethanol" = id 1 either way.)
GAS_IDS = {"ethanol": 1, "ethylene": 2, "ammonia": 3, "acetaldehyde": 4, "acetone": 5, "toluene": 6}
_GAS_NAMES = {v: k for k, v in GAS_IDS.items()}
_BATCH_RE = re.compile(r"batch(\d+)\.dat")
# "1", "2", … "128": a line's index tokens, compared with one C-level list comparison.
_INDEX_TOKENS = [str(j) for j in range(1, N_FEATURES + 1)]
ENV_VAR = "OVERPARAM_DATA"


@dataclass(frozen=True, eq=False)  # eq=False: tensor fields have no single truth value
class GasSensorData:
    """A regression problem ``y ≈ X wᵀ`` with the affine maps that produced it.

    ``X`` (m, d) and ``y`` (m, 1) satisfy ``X = (X_raw − feature_mean) / feature_std`` and
    ``y = (y_raw − target_mean) / target_std``; invert with ``X * feature_std + feature_mean``. When
    loaded with ``standardize=False`` the means are 0 and the stds 1. ``label`` is the provenance
    string every result made from this data should carry (it states how many batch files were found).
    """

    X: torch.Tensor = field(repr=False)  # (m, d)
    y: torch.Tensor = field(repr=False)  # (m, 1)
    feature_mean: torch.Tensor = field(repr=False)  # (d,)
    feature_std: torch.Tensor = field(repr=False)  # (d,)
    target_mean: float
    target_std: float
    source: str
    files: tuple[str, ...]
    n_batches: int
    label: str
    gas: str = "ethanol"
    batch: torch.Tensor | None = field(default=None, repr=False)  # (m,) batch number of each row

    @property
    def shape(self) -> tuple[int, int]:
        """(m, d): number of examples and features."""
        return tuple(self.X.shape)


def zscore(X: np.ndarray, y: np.ndarray):
    """Z-score the columns of X (m, d) and y (m,) over all rows, population std (ddof = 0).

    A constant feature (std 0) is centred to 0 and keeps std 1, so it stays finite and the statistics
    still invert exactly. The target must not be constant. Returns (Xz, yz, mean, std, y_mean, y_std).
    """
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    y_mean = float(y.mean())
    y_std = float(y.std())
    if not y_std > 0:
        raise ValueError(f"target is constant (every value {y_mean!r}); cannot standardise it")
    return (X - mean) / std, (y - y_mean) / y_std, mean, std, y_mean, y_std


def _check_gas(gas) -> int:
    if isinstance(gas, str):
        key = gas.strip().lower()
        if key not in GAS_IDS:
            raise ValueError(f"gas must be one of {sorted(GAS_IDS)} or an id 1..6, got {gas!r}")
        return GAS_IDS[key]
    if isinstance(gas, bool) or not isinstance(gas, int) or gas not in _GAS_NAMES:
        raise ValueError(f"gas must be one of {sorted(GAS_IDS)} or an id 1..6, got {gas!r}")
    return gas


def _diagnose_features(feats: list[str], where: str) -> None:
    """Precise error for a feature list that failed the fast check; returns when it is fine after all."""
    if len(feats) != N_FEATURES:
        raise ValueError(f"{where}: expected {N_FEATURES} features, got {len(feats)}")
    seen: set[int] = set()
    for pos, token in enumerate(feats, start=1):
        idx_text, sep, _ = token.partition(":")
        try:
            idx = int(idx_text)
        except ValueError:
            idx = None
        if not sep or idx is None:
            raise ValueError(f"{where}: malformed feature token {token!r} (expected INDEX:VALUE)")
        if idx in seen:
            raise ValueError(f"{where}: duplicated feature index {idx}")
        if idx != pos:
            raise ValueError(f"{where}: feature index {idx} out of order (expected {pos})")
        seen.add(idx)
    # Reaching here: e.g. "01:", an unusual spelling of the right index.


def _parse_text(text: str, name: str, gas_id: int):
    """Parse one batch file's text; keep rows of gas ``gas_id``. Returns (X (n, 128), y (n,))."""
    values: list[list[str]] = []
    targets: list[float] = []
    lines: list[int] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue  # blank lines (e.g. a trailing newline pair) carry nothing
        where = f"{name}:{lineno}"
        head = parts[0]
        gas_text, sep, conc_text = head.partition(";")
        try:
            g = int(gas_text)
            conc = float(conc_text)
        except ValueError:
            g = None
        if not sep or g is None:
            raise ValueError(f"{where}: malformed label {head!r} (expected GAS;CONCENTRATION)")
        if g not in _GAS_NAMES:
            raise ValueError(f"{where}: gas id {g} not in 1..6")
        if not math.isfinite(conc):
            raise ValueError(f"{where}: concentration {conc_text!r} is not finite")
        feats = parts[1:]
        # Fast path: split "j:v" tokens in one pass and compare the indices as a list.
        flat = " ".join(feats).replace(":", " ").split()
        if len(feats) != N_FEATURES or len(flat) != 2 * N_FEATURES or flat[0::2] != _INDEX_TOKENS:
            _diagnose_features(feats, where)
            flat = [t.partition(":")[2] for t in feats]
        else:
            flat = flat[1::2]
        if g != gas_id:
            # Still validate the numbers of rows we drop: a bad file is bad whatever gas we load.
            _check_numbers(flat, where)
            continue
        values.append(flat)
        targets.append(conc)
        lines.append(lineno)
    if not values:
        return np.zeros((0, N_FEATURES)), np.zeros(0)
    try:
        X = np.array(values, dtype=np.float64)
    except ValueError as e:
        for flat, lineno in zip(values, lines):
            _check_numbers(flat, f"{name}:{lineno}")
        raise ValueError(f"{name}: a feature value numpy cannot read: {e}") from e
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"{name}:{lines[i]}: feature {j + 1} value {values[i][j]!r} is not finite")
    return X, np.array(targets, dtype=np.float64)


def _check_numbers(flat: list[str], where: str) -> None:
    for j, v in enumerate(flat, start=1):
        try:
            x = float(v)
        except ValueError:
            raise ValueError(f"{where}: feature {j} value {v!r} is not a number") from None
        if not math.isfinite(x):
            raise ValueError(f"{where}: feature {j} value {v!r} is not finite")


def _group_batches(names, describe: str) -> tuple[str, dict[int, str]]:
    """Pick the one folder holding batch files among ``names`` (posix-style relative paths)."""
    folders: dict[str, dict[int, str]] = {}
    for n in names:
        p = PurePosixPath(n)
        if "__MACOSX" in p.parts:
            continue  # resource forks that macOS zips carry beside the real files
        m = _BATCH_RE.fullmatch(p.name)
        if m is None:
            continue
        b = int(m.group(1))
        if not 1 <= b <= N_BATCHES:
            raise ValueError(f"{describe}: unexpected batch file {n!r} (batches are 1..{N_BATCHES})")
        folders.setdefault(str(p.parent), {})[b] = n
    if not folders:
        raise FileNotFoundError(f"no batch*.dat files found in {describe}")
    if len(folders) > 1:
        raise ValueError(f"{describe}: batch files in several folders {sorted(folders)}; point at one")
    ((folder, batches),) = folders.items()
    return folder, dict(sorted(batches.items()))


def find_batch_files(path) -> dict[int, Path]:
    """Batch number → file for a directory holding ``batch*.dat`` (at any depth, in one folder)."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"gas sensor data directory not found: {str(root)!r}")
    direct = [p.name for p in root.iterdir() if _BATCH_RE.fullmatch(p.name)]
    if direct:
        names = direct
    else:
        names = [p.relative_to(root).as_posix() for p in root.rglob("batch*.dat")]
    _, batches = _group_batches(names, repr(str(root)))
    return {b: root / n for b, n in batches.items()}


def _read_sources(path: Path):
    """Yield (batch, display name, text) for a directory or a zip archive."""
    if path.is_dir():
        for b, p in find_batch_files(path).items():
            # errors="replace": a stray byte then fails as a bad number, with its file and line.
            yield b, p.name, p.read_bytes().decode("ascii", errors="replace")
        return
    if not path.exists():
        raise FileNotFoundError(f"gas sensor data not found: {str(path)!r}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{str(path)!r} is neither a directory nor a zip archive")
    with zipfile.ZipFile(path) as zf:
        _, batches = _group_batches(zf.namelist(), repr(str(path)))
        for b, n in batches.items():
            with zf.open(n) as fh:
                yield b, PurePosixPath(n).name, fh.read().decode("ascii", errors="replace")


def _label(kind: str, gas: str, found: list[int]) -> str:
    missing = [f"batch{b}" for b in range(1, N_BATCHES + 1) if b not in found]
    label = f"{kind} ({gas}), {len(found)}/{N_BATCHES} batches"
    return label + (f" (missing {', '.join(missing)})" if missing else "")


def load_gas_sensor(path, gas="ethanol", standardize: bool = True, dtype=torch.float64) -> GasSensorData:
    """Load one gas's rows from a folder of ``batch*.dat`` files or the UCI zip.

    ``path``: a directory (batch files directly in it, or in one sub-folder at any depth) or the UCI
    zip (batch files at any folder depth inside). Missing batch files are allowed — the label says
    how many of the 10 were found ("…, 8/10 batches (missing batch7, batch10)"), so every result
    made from a partial copy carries the count. ``gas``: a name (ethanol, ethylene, ammonia,
    acetaldehyde, acetone, toluene) or its id 1..6; the paper uses ethanol (id 1, 2565 rows).

    Standardisation (``standardize=True``): features and target are z-scored over all loaded rows
    with the population std (ddof = 0); a constant feature is centred and keeps std 1. The returned
    statistics invert it. Rows keep file order (batch 1 first, then line order).

    Raises FileNotFoundError for a missing path or one without batch files, and ValueError naming
    ``file:line`` for a malformed line (bad label, wrong feature count, index out of order or
    duplicated, a value that is not a finite number).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    gas_id = _check_gas(gas)
    gas_name = _GAS_NAMES[gas_id]
    path = Path(path)
    Xs, ys, bs, files = [], [], [], []
    for b, name, text in _read_sources(path):
        X, y = _parse_text(text, name, gas_id)
        Xs.append(X)
        ys.append(y)
        bs.append(np.full(len(y), b))
        files.append(name)
    X = np.concatenate(Xs)
    y = np.concatenate(ys)
    if len(y) == 0:
        raise ValueError(f"{str(path)!r}: no rows of gas {gas_name!r} (id {gas_id}) in {files}")
    if standardize:
        X, y, mean, std, y_mean, y_std = zscore(X, y)
    else:
        mean, std, y_mean, y_std = np.zeros(N_FEATURES), np.ones(N_FEATURES), 0.0, 1.0
    found = [int(_BATCH_RE.fullmatch(f).group(1)) for f in files]
    return GasSensorData(
        X=torch.from_numpy(X).to(dtype),
        y=torch.from_numpy(y).to(dtype).reshape(-1, 1),
        feature_mean=torch.from_numpy(mean).to(dtype),
        feature_std=torch.from_numpy(std).to(dtype),
        target_mean=y_mean,
        target_std=y_std,
        source=str(path),
        files=tuple(files),
        n_batches=len(files),
        label=_label("UCI gas sensor", gas_name, found),
        gas=gas_name,
        batch=torch.from_numpy(np.concatenate(bs)),
    )


def load_regression_data(data_dir=None, *, dtype=torch.float64) -> GasSensorData:
    """The experiments' data: the real ethanol problem if a path is given, else the synthetic stand-in.

    ``data_dir`` (or, when it is None, ``$OVERPARAM_DATA``) names a folder of batch files or the UCI
    zip; a bad path raises rather than falling back. With neither, returns
    ``synthetic_gas_sensor()`` (label contains "synthetic").
    """
    if data_dir is None:
        data_dir = os.environ.get(ENV_VAR) or None
    if data_dir is None:
        from overparam.data.synthetic import synthetic_gas_sensor

        return synthetic_gas_sensor(dtype=dtype)
    return load_gas_sensor(data_dir, gas="ethanol", standardize=True, dtype=dtype)
