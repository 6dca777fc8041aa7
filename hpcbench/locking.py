"""One driver per study: an exclusive lock on a file, naming its holder.

A lock is ``fcntl.flock`` on ``<dir>/.hpcbench.lock``: the kernel releases it when the
holding process dies (a crashed or SIGKILLed driver leaves no stale lock), and Linux
NFS clients map it onto NFS byte-range locks, so two drivers on two nodes of a shared
filesystem see each other. The file records who holds it (host, pid, command, since),
which a second driver names in its one-line refusal.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["LOCK_NAME", "LockBusyError", "hold"]

LOCK_NAME = ".hpcbench.lock"


class LockBusyError(RuntimeError):
    """Another process holds the lock; the message names it (one line)."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["since"])))
        return f"{info['command']} (host {info['host']}, pid {info['pid']}, since {since})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextmanager
def hold(
    directory: str | os.PathLike[str],
    *,
    wait: float = 0.0,
    what: str = "",
    name: str = LOCK_NAME,
) -> Iterator[Path]:
    """Hold the lock of ``directory`` (created if needed) for the block.

    Parameters
    ----------
    directory : path
        The directory whose lock to take (a study's output directory, an MLflow store's).
    wait : float
        Seconds to wait for a busy lock before giving up [s]; 0 gives up at once.
    what : str
        What is locked, for the error message (e.g. ``"study quickstart"``).
    name : str
        The lock file's name in ``directory``.

    Raises
    ------
    LockBusyError
        If another process holds the lock after ``wait`` seconds.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held for the block)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockBusyError(
                        f"{what or directory} is in use by {_holder(path)}; wait for it, "
                        "or stop it, and run again"
                    ) from None
                time.sleep(min(0.5, max(0.01, deadline - time.monotonic())))
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "command": " ".join(["hpcbench", *sys.argv[1:3]]).strip(),
            "since": time.time(),
        }
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(record))
        handle.flush()
        yield path
    finally:
        handle.close()  # releases the lock
