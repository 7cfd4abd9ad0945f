"""download_gas_sensor against a local HTTP server (127.0.0.1, port 0): never the internet."""

from __future__ import annotations

import hashlib
import http.server
import io
import stat
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from overparam.data import UCI_SHA256, UCI_URL, download_gas_sensor, load_gas_sensor
from overparam.data._download import ARCHIVE_NAME, EXTRACTED, MARKER


def batch_text(seed: int, n: int = 6) -> str:
    """Tiny batch file in the real format (gas 1 and 2 rows)."""
    rng = np.random.default_rng(seed)
    return "".join(f"{1 + i % 2};{rng.choice([10, 50, 100]):.6f} "
                   + " ".join(f"{j}:{v:.6f}" for j, v in enumerate(rng.standard_normal(128), 1)) + "\n"
                   for i in range(n))


def make_zip(members: dict[str, bytes | str], symlinks: dict[str, str] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in dict(symlinks).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


GOOD = make_zip({"Dataset/batch1.dat": batch_text(1), "Dataset/batch2.dat": batch_text(2),
                 "Dataset/README.txt": "fake"})
GOOD_SHA = hashlib.sha256(GOOD).hexdigest()


class Server:
    """Serves ``routes`` (path → bytes); '/truncated/…' promises more bytes than it sends."""

    def __init__(self):
        self.routes: dict[str, bytes] = {}
        self.hits: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits.append(self.path)
                if self.path.startswith("/truncated/"):
                    body = outer.routes[self.path[len("/truncated"):]]
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                body = outer.routes.get(self.path)
                if body is None:
                    self.send_error(500 if self.path == "/error" else 404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # keep the test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def serve(self, path: str, body: bytes) -> str:
        self.routes[path] = body
        return self.url(path)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_constants():
    assert UCI_URL == ("https://archive.ics.uci.edu/static/public/270/"
                       "gas+sensor+array+drift+dataset+at+different+concentrations.zip")
    assert UCI_SHA256 is None or (len(UCI_SHA256) == 64 and int(UCI_SHA256, 16) >= 0)


def test_good_download_extracts_verifies_and_is_idempotent(server, tmp_path):
    url = server.serve("/good.zip", GOOD)
    dest = tmp_path / "dest"
    out = download_gas_sensor(dest, url=url, sha256=GOOD_SHA.upper())
    assert out == dest / EXTRACTED / "Dataset"
    assert listing(dest) == sorted([ARCHIVE_NAME, MARKER, EXTRACTED, f"{EXTRACTED}/Dataset",
                                    f"{EXTRACTED}/Dataset/README.txt", f"{EXTRACTED}/Dataset/batch1.dat",
                                    f"{EXTRACTED}/Dataset/batch2.dat"])
    assert (dest / MARKER).read_text() == f"{GOOD_SHA}  {ARCHIVE_NAME}\n"
    assert (dest / ARCHIVE_NAME).read_bytes() == GOOD
    assert (out / "batch1.dat").read_text() == batch_text(1)
    data = load_gas_sensor(out, standardize=False)
    assert data.X.shape == (6, 128) and data.label.startswith("UCI gas sensor (ethanol), 2/10 batches")
    # The kept archive, and dest itself (batch files found below it), load the same.
    assert torch.equal(load_gas_sensor(dest, standardize=False).X, data.X)
    assert torch.equal(load_gas_sensor(dest / ARCHIVE_NAME, standardize=False).X, data.X)
    # Second call: no network (a dead URL would fail), same path.
    assert download_gas_sensor(dest, url=server.url("/error"), sha256=GOOD_SHA) == out
    assert server.hits == ["/good.zip"]


def test_bad_sha256_leaves_nothing(server, tmp_path):
    url = server.serve("/good.zip", GOOD)
    with pytest.raises(ValueError, match=f"sha256 mismatch for {url}: got {GOOD_SHA}, expected 0{{64}}"):
        download_gas_sensor(tmp_path, url=url, sha256="0" * 64)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("member, why", [
    ("../evil.dat", "path escapes the destination"),
    ("Dataset/../../evil.dat", "path escapes the destination"),
    ("/tmp/evil.dat", "absolute path"),
    ("..\\evil.dat", "path escapes the destination"),
])
def test_path_escaping_archive_is_refused(server, tmp_path, member, why):
    body = make_zip({"batch1.dat": batch_text(1), member: "pwned"})
    dest = tmp_path / "a" / "dest"
    url = server.serve("/evil.zip", body)
    with pytest.raises(ValueError, match=f"unsafe member .*\\({why}\\)"):
        download_gas_sensor(dest, url=url, sha256=hashlib.sha256(body).hexdigest())
    assert listing(dest) == []
    assert listing(tmp_path) == ["a", "a/dest"]  # nothing written beside or above dest


def test_symlink_member_is_refused(server, tmp_path):
    body = make_zip({"batch1.dat": batch_text(1)}, symlinks={"link.dat": "/etc/passwd"})
    url = server.serve("/link.zip", body)
    with pytest.raises(ValueError, match="'link.dat' \\(symbolic link\\)"):
        download_gas_sensor(tmp_path, url=url, sha256=hashlib.sha256(body).hexdigest())
    assert listing(tmp_path) == []


def test_truncated_download_and_server_error(server, tmp_path):
    server.serve("/good.zip", GOOD)
    with pytest.raises(OSError, match="truncated download"):
        download_gas_sensor(tmp_path, url=server.url("/truncated/good.zip"), sha256=GOOD_SHA)
    assert listing(tmp_path) == []
    with pytest.raises(OSError, match="HTTP 500"):
        download_gas_sensor(tmp_path, url=server.url("/error"), sha256=GOOD_SHA)
    assert listing(tmp_path) == []
    # Trust on first use must not trust a truncated file either: without Content-Length checks the
    # zip would be cut, and an invalid zip is refused.
    with pytest.raises(OSError, match="truncated download"):
        download_gas_sensor(tmp_path, url=server.url("/truncated/good.zip"), sha256=None)
    assert listing(tmp_path) == []
    # And a later good run works in the same folder.
    assert download_gas_sensor(tmp_path, url=server.url("/good.zip"), sha256=GOOD_SHA).is_dir()


def test_not_a_zip_and_zip_without_batch_files(server, tmp_path):
    junk = b"<html>maintenance</html>"
    with pytest.raises(ValueError, match="not a valid zip archive"):
        download_gas_sensor(tmp_path, url=server.serve("/junk", junk),
                            sha256=hashlib.sha256(junk).hexdigest())
    assert listing(tmp_path) == []
    empty = make_zip({"README.txt": "no data"})
    with pytest.raises(ValueError, match="contains no batch\\*.dat files"):
        download_gas_sensor(tmp_path, url=server.serve("/e.zip", empty),
                            sha256=hashlib.sha256(empty).hexdigest())
    assert listing(tmp_path) == []


def test_trust_on_first_use(server, tmp_path):
    url = server.serve("/good.zip", GOOD)
    with pytest.warns(UserWarning, match=f"sha256 {GOOD_SHA}, NOT verified"):
        out = download_gas_sensor(tmp_path, url=url, sha256=None)
    assert (tmp_path / MARKER).read_text().split()[0] == GOOD_SHA
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert download_gas_sensor(tmp_path, url=url, sha256=None) == out  # verified: no warning
    # A pinned digest that disagrees with the recorded one is refused, without downloading.
    with pytest.raises(ValueError, match=f"holds an archive with sha256 {GOOD_SHA}"):
        download_gas_sensor(tmp_path, url=url, sha256="1" * 64)
    # Re-download into a TOFU folder (extraction removed): must match the recorded digest.
    import shutil

    shutil.rmtree(tmp_path / EXTRACTED)
    other = make_zip({"batch1.dat": batch_text(9)})
    server.serve("/good.zip", other)
    with pytest.raises(ValueError, match=f"got {hashlib.sha256(other).hexdigest()}, expected {GOOD_SHA}"):
        download_gas_sensor(tmp_path, url=url, sha256=None)
    # A tampered kept archive is detected on the fast path.
    server.serve("/good.zip", GOOD)
    download_gas_sensor(tmp_path, url=url, sha256=None)
    (tmp_path / ARCHIVE_NAME).write_bytes(other)
    with pytest.raises(ValueError, match="no longer matches its recorded sha256"):
        download_gas_sensor(tmp_path, url=url, sha256=None)


def test_interrupted_run_leftovers_are_not_trusted(server, tmp_path):
    # What a killed run can leave: a partial download, a half extraction, an extraction with no mark.
    (tmp_path / ".download-abc.part").write_bytes(GOOD[:100])
    (tmp_path / ".extract-xyz").mkdir()
    (tmp_path / ".extract-xyz" / "batch1.dat").write_text("half")
    (tmp_path / EXTRACTED).mkdir()
    (tmp_path / EXTRACTED / "batch1.dat").write_text("stale")
    url = server.serve("/good.zip", GOOD)
    out = download_gas_sensor(tmp_path, url=url, sha256=GOOD_SHA)
    assert server.hits == ["/good.zip"]
    assert out == tmp_path / EXTRACTED / "Dataset"
    assert {ARCHIVE_NAME, MARKER, EXTRACTED} <= set(listing(tmp_path))
    assert not (tmp_path / EXTRACTED / "batch1.dat").exists()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"sha256": "abc"}, ValueError, "sha256 must be 64 hex digits, got 'abc'"),
    ({"sha256": 5}, TypeError, "sha256 must be a hex str or None"),
    ({"timeout": 0}, ValueError, "timeout must be a positive number"),
    ({"url": ""}, ValueError, "url must be a non-empty str"),
])
def test_bad_arguments(tmp_path, kwargs, exc, match):
    kwargs = {"url": "http://127.0.0.1:9/never.zip", **kwargs}  # never the internet, even on a bug
    with pytest.raises(exc, match=match):
        download_gas_sensor(tmp_path, **kwargs)
    assert listing(tmp_path) == []
