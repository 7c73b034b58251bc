"""Durable files: written whole or not at all.

``create_once`` never overwrites: the file vault uses it (a delivered key must never
change), and the file mailer (one ``.eml`` per Message-ID). ``replace_whole`` swaps a
file for a new version at once: the settings keep the data dir's secrets with it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def create_once(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` unless it exists; returns whether this call wrote it.

    The data goes to a temporary file first, is synced, then hard-linked into place:
    linking fails when the name exists, so of two concurrent writers the first wins and
    a reader never sees a partial file. The directory is synced so the new name survives
    a crash too. The file is private to its owner (0600, as ``mkstemp`` makes it).
    Needs a filesystem with hard links (any local POSIX one).
    """
    with _synced_temp(path, data) as temp_name:
        try:
            os.link(temp_name, path)
        except FileExistsError:
            return False
    _fsync_directory(path.parent)
    return True


@contextlib.contextmanager
def _synced_temp(path: Path, data: bytes) -> Iterator[str]:
    """A temporary file beside ``path`` holding ``data``, synced; removed afterwards."""
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        yield temp_name
    finally:
        with contextlib.suppress(FileNotFoundError):
            Path(temp_name).unlink()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_whole(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, replacing what is there, all at once.

    The data goes to a uniquely named temporary file, is synced, then renamed over
    ``path``: a reader sees the old file or the new one, never a part. Concurrent callers
    must take turns (a lock) if the last one must not undo another's change. The file is
    private to its owner (0600).
    """
    with _synced_temp(path, data) as temp_name:
        Path(temp_name).replace(path)
    _fsync_directory(path.parent)
