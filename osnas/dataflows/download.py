"""Fetching a dataset archive once, verified by its published MD5 checksum (only when asked to)."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from osnas.errors import DataError


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, md5: str, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` through a temporary file; a wrong checksum leaves nothing behind."""
    dest = Path(dest)
    if dest.is_file() and md5sum(dest) == md5:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as f:
            while block := response.read(1 << 20):
                f.write(block)
    except (urllib.error.URLError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"could not download {url} to {dest}: {exc}; download it by hand and put it there") from None
    actual = md5sum(tmp)
    if actual != md5:
        tmp.unlink(missing_ok=True)
        raise DataError(f"downloaded {url} has MD5 {actual}, expected {md5}; the file was discarded (retry, or "
                        f"download it by hand to {dest})")
    os.replace(tmp, dest)
    return dest
