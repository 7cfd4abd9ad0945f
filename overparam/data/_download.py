"""Download the UCI gas sensor archive: verified, atomic, idempotent, safely extracted (urllib only).

Layout of ``dest`` after a successful call::

    dest/gas_sensor_uci270.zip   the verified archive
    dest/extracted/…             its members (batch*.dat at whatever depth the archive has)
    dest/SHA256                  "<sha256>  gas_sensor_uci270.zip" — written last: the completion mark

Everything is first written under temporary names in ``dest`` (``.download-*.part``,
``.extract-*``) and moved into place with ``os.replace`` / ``os.rename`` only after verification, so
an interrupted run leaves nothing a later run trusts; later runs remove such leftovers.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import stat
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from pathlib import Path, PurePosixPath

from overparam.data.gas_sensor import find_batch_files

__all__ = ["UCI_URL", "UCI_SHA256", "download_gas_sensor", "sha256_file"]

UCI_URL = (
    "https://archive.ics.uci.edu/static/public/270/"
    "gas+sensor+array+drift+dataset+at+different+concentrations.zip"
)
# Not computed by this project (no internet here): taken from three unrelated public repositories
# that pin the same UCI archive to this digest. If UCI re-packs the zip, the download fails with the
# digest it got; pass sha256=None to trust it on first use instead.
UCI_SHA256 = "98fe3a30981a222dd4518fbcc3dddd45d5c0ce9b03ef6dc6fe5cf7a04cfbff5e"

ARCHIVE_NAME = "gas_sensor_uci270.zip"
EXTRACTED = "extracted"
MARKER = "SHA256"
_MAX_UNCOMPRESSED = 1 << 30  # the real archive unpacks to ~30 MB; refuse zip bombs
_CHUNK = 1 << 16


def sha256_file(path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_sha256(sha256) -> str | None:
    if sha256 is None:
        return None
    if not isinstance(sha256, str):
        raise TypeError(f"sha256 must be a hex str or None, got {type(sha256).__name__}")
    s = sha256.strip().lower()
    if len(s) != 64 or any(ch not in "0123456789abcdef" for ch in s):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    return s


def _read_marker(dest: Path) -> str | None:
    try:
        text = (dest / MARKER).read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    digest = text.split()[0] if text.split() else ""
    return _check_sha256(digest) if digest else None


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".marker-", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        _remove(Path(tmp))
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def _clean_leftovers(dest: Path) -> None:
    """Remove temporaries of an interrupted run (never trusted, so never reused)."""
    for p in dest.iterdir():
        if p.name.startswith((".download-", ".extract-", ".marker-")):
            _remove(p)


def _fetch(url: str, target: Path, timeout: float, progress: bool) -> str:
    """Stream ``url`` into ``target``; return its sha256. Raises OSError on HTTP errors or truncation."""
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(target, "wb") as out:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=total, unit="B", unit_scale=True, desc="gas sensor zip", leave=False)
            got = 0
            try:
                for chunk in iter(lambda: resp.read(_CHUNK), b""):
                    out.write(chunk)
                    h.update(chunk)
                    got += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
            finally:
                if bar is not None:
                    bar.close()
    except http.client.IncompleteRead as e:
        raise OSError(f"truncated download from {url}: connection closed after {len(e.partial)} "
                      f"more bytes") from e
    except urllib.error.HTTPError as e:
        raise OSError(f"download of {url} failed: HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise OSError(f"download of {url} failed: {e.reason}") from e
    if total is not None and got != total:
        raise OSError(f"truncated download from {url}: got {got} of {total} bytes")
    return h.hexdigest()


def _check_members(zf: zipfile.ZipFile, archive: str) -> list[zipfile.ZipInfo]:
    """Reject any member that could land outside the destination (before writing anything)."""
    total = 0
    members = zf.infolist()
    for info in members:
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        mode = info.external_attr >> 16
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or "\x00" in name:
            raise ValueError(f"{archive}: unsafe member {name!r} (absolute path)")
        if ".." in parts:
            raise ValueError(f"{archive}: unsafe member {name!r} (path escapes the destination)")
        if stat.S_ISLNK(mode):
            raise ValueError(f"{archive}: unsafe member {name!r} (symbolic link)")
        total += info.file_size
    if total > _MAX_UNCOMPRESSED:
        raise ValueError(f"{archive}: unpacks to {total} bytes, more than {_MAX_UNCOMPRESSED}")
    return members


def _extract(archive: Path, into: Path) -> None:
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as e:
        raise ValueError(f"{str(archive)!r} is not a valid zip archive: {e}") from e
    with zf:
        root = into.resolve()
        for info in _check_members(zf, repr(str(archive))):
            target = (into / info.filename.replace("\\", "/")).resolve()
            if root != target and root not in target.parents:  # belt and braces after the checks
                raise ValueError(f"{str(archive)!r}: member {info.filename!r} escapes the destination")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "xb") as out:
                shutil.copyfileobj(src, out, _CHUNK)


def download_gas_sensor(dest, url: str = UCI_URL, sha256: str | None = UCI_SHA256, timeout: float = 60,
                        progress: bool | None = None) -> Path:
    """Download, verify and extract the UCI gas sensor archive into ``dest``; return the batch folder.

    Steps: download to a temporary file in ``dest``; check its sha256; extract into a temporary
    folder, refusing members with absolute paths, ``..`` components or symlinks (nothing is written
    before every member has been checked); move both into place; write ``dest/SHA256`` last.
    Idempotent: when ``dest/SHA256`` and the extraction exist (and the digest matches ``sha256``
    when one is given), returns at once without touching the network.

    ``sha256=None`` is trust on first use: the digest of what was downloaded is reported in a
    ``UserWarning`` (it was not checked against a pinned value) and recorded in ``dest/SHA256``;
    later calls, and re-downloads into the same ``dest``, are checked against that record. The
    default ``UCI_SHA256`` was taken from other public projects, not computed here (see its comment).

    ``progress``: a tqdm bar; default on when stderr is a terminal. Raises ValueError for a digest
    mismatch or an unsafe/corrupt archive (leaving nothing behind), OSError for network failures
    and truncated downloads.
    """
    if not isinstance(dest, (str, os.PathLike)):
        raise TypeError(f"dest must be a str or os.PathLike, got {type(dest).__name__}")
    if not isinstance(url, str) or not url:
        raise ValueError(f"url must be a non-empty str, got {url!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    expected = _check_sha256(sha256)
    if progress is None:
        progress = sys.stderr.isatty()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    archive, extracted = dest / ARCHIVE_NAME, dest / EXTRACTED

    recorded = _read_marker(dest)
    if recorded is not None and expected is not None and recorded != expected:
        raise ValueError(f"{str(dest)!r} holds an archive with sha256 {recorded}, not the requested "
                         f"{expected}; use another dest or remove it")
    if recorded is not None and extracted.is_dir():
        if archive.is_file() and sha256_file(archive) != recorded:
            raise ValueError(f"{str(archive)!r} no longer matches its recorded sha256 {recorded}; "
                             "remove the folder and download again")
        return _batch_dir(extracted)
    expected = expected or recorded  # a re-download into a TOFU folder must match the first one

    _clean_leftovers(dest)
    fd, part = tempfile.mkstemp(dir=dest, prefix=".download-", suffix=".part")
    os.close(fd)
    part = Path(part)
    tmpdir = Path(tempfile.mkdtemp(dir=dest, prefix=".extract-"))
    try:
        got = _fetch(url, part, timeout, progress)
        if expected is not None and got != expected:
            raise ValueError(f"sha256 mismatch for {url}: got {got}, expected {expected}")
        _extract(part, tmpdir)
        _batch_dir(tmpdir, url)  # an archive without batch files is not the data set
        os.replace(part, archive)
        _remove(extracted)  # an extraction without a marker is from an interrupted run
        os.rename(tmpdir, extracted)
        _write_atomic(dest / MARKER, f"{got}  {ARCHIVE_NAME}\n")
    finally:
        _remove(part)
        _remove(tmpdir)
    if expected is None:
        warnings.warn(f"downloaded {url} with sha256 {got}, NOT verified against a pinned value; "
                      f"recorded in {str(dest / MARKER)!r} and checked on later runs",
                      UserWarning, stacklevel=2)
    return _batch_dir(extracted)


def _batch_dir(root: Path, url: str | None = None) -> Path:
    try:
        return next(iter(find_batch_files(root).values())).parent
    except FileNotFoundError:
        if url is None:
            raise
        raise ValueError(f"the archive from {url} contains no batch*.dat files") from None
