"""Download the raw open-data kit from the sources manifest and verify the checksums.

For users with internet: ``pattogis data fetch --raw DIR`` downloads every file of
``sources.yaml`` that has a download address into ``DIR`` and checks its sha256. A file whose
checksum does not match is refused and nothing is left in its place. Files that are derived (no
single address) are listed with how they were made.
"""

from __future__ import annotations

import hashlib
import urllib.request
from collections.abc import Callable
from pathlib import Path

from pattogis.data.build import sources
from pattogis.errors import InputError
from pattogis.io import atomic_path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(raw: str | Path, *, base_url: str | None = None, only: list[str] | None = None,
          timeout: float = 60.0, log: Callable[[str], None] = print) -> dict[str, str]:
    """Download the kit into ``raw``. Returns {relative path: status}.

    ``base_url`` replaces each file's address by ``base_url/<relative path>`` (a mirror, or a
    local server in tests). Status is 'ok' (downloaded and verified), 'present' (already there
    with the right checksum) or 'derived' (no download address; see the manifest).
    """
    raw = Path(raw)
    out: dict[str, str] = {}
    for rel, meta in sources()["files"].items():
        if only and rel not in only:
            continue
        target = raw / rel
        if target.exists() and sha256(target) == meta["sha256"]:
            out[rel] = "present"
            continue
        url = f"{base_url.rstrip('/')}/{rel}" if base_url else meta.get("url")
        if not url:
            out[rel] = "derived"
            log(f"  {rel}: no download address ({meta.get('derived', 'derived file')})")
            continue
        log(f"  {rel} ← {url}")
        with atomic_path(target) as tmp:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
                    while chunk := r.read(1 << 20):
                        f.write(chunk)
            except OSError as e:
                raise InputError(f"download failed: {e}", file=url) from e
            got = sha256(tmp)
            if got != meta["sha256"]:
                raise InputError(f"checksum mismatch: expected {meta['sha256']}, got {got}",
                                 file=url, hint="The file changed at the source or the download was "
                                 "corrupted; nothing was written")
        out[rel] = "ok"
    return out
