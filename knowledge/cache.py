"""The folder where the knowledge package keeps what it computes once per host.

Three kinds of file live there, each named by a digest of what it was computed
from, so a stale one is never read: the trimmed jieba dictionary, the terms of
every training text, and trained models. Without them a process trains before
its first answer (4–9 s on a 2-core host) instead of loading (0.2 s).

The folder is ``CACHE_DIR`` when set (``bot.knowledge`` passes it), else the
system temp folder. Production should give one that outlives a restart:
systemd's ``PrivateTmp`` empties /tmp at every start of the service, and a new
container starts with the image's files only. A folder that outlives restarts
would also keep every model ever trained (3.6 MB each, one per staff edit), so
the files of a kind are pruned to the most recently used few.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)
_folder: Path | None = None


def use(folder: str | Path | None) -> None:
    """Keep caches in ``folder`` from now on (created if missing); empty or None: the system temp folder.

    A folder that cannot be made is reported and the temp folder used: a cache only
    saves time, so it never stops the bot from starting."""
    global _folder
    _folder = Path(folder) if folder else None
    if _folder is not None:
        try:
            _folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning("CACHE_DIR %s cannot be used (%s): caches go to the temp folder", _folder, exc)
            _folder = None


def path(name: str) -> Path:
    """Where the cache file ``name`` lives."""
    return (_folder or Path(tempfile.gettempdir())) / name


def used(file: Path) -> None:
    """Mark a cache file as just read: its modification time is its last use, which ``prune`` goes by."""
    try:
        os.utime(file)
    except OSError:
        pass


def prune(pattern: str, keep: int) -> None:
    """Delete all but the ``keep`` most recently used files matching ``pattern`` (a glob)."""
    stamped = []
    for file in (_folder or Path(tempfile.gettempdir())).glob(pattern):
        try:
            stamped.append((file.stat().st_mtime, file))
        except OSError:  # removed meanwhile by another process's pruning
            continue
    for _, file in sorted(stamped, reverse=True)[keep:]:
        file.unlink(missing_ok=True)
