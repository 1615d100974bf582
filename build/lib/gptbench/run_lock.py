"""One process per run directory: an exclusive lock that names its holder.

Two processes training into one directory would interleave checkpoints and TensorBoard events.
``run_lock(stage_dir)`` takes an exclusive ``flock`` on ``stage_dir/.lock`` and writes the pid,
host and start time into it; a second process gets :class:`RunLocked` naming the holder. The
operating system releases the lock when its process dies, however it dies, so a lock left by a
dead process is simply taken over (and said so). The file stays (emptied on release): removing
it would let two processes lock two different files of the same name.
Under multi-process DDP only the first rank takes it (Lightning's launched ranks, srun's tasks).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from gptbench.errors import RunLocked

LOCK_NAME = ".lock"


@contextlib.contextmanager
def run_lock(stage_dir: Path):
    """Hold ``stage_dir`` for this process for the duration of the block."""
    if any(os.environ.get(rank, "0") != "0" for rank in ("LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")):
        yield  # DDP worker ranks run inside rank 0's hold
        return
    stage_dir.mkdir(parents=True, exist_ok=True)
    path = stage_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            who = (f"pid {holder.get('pid')} on host {holder.get('host')} since {holder.get('since')}" if holder
                   else "another process")  # fmt: skip
            raise RunLocked(f"{stage_dir} is in use by {who}: wait for it to finish or stop it, then rerun "
                            "(with resume=true to continue its run)") from None  # fmt: skip
        previous = _read(fd)
        if previous.get("pid"):
            print(f"note: took over the lock of pid {previous['pid']} on {previous.get('host')}, which ended "
                  f"without releasing it ({path})")  # fmt: skip
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        _write(fd, json.dumps(me))
        try:
            yield
        finally:
            _write(fd, "")
    finally:
        os.close(fd)  # releases the lock


def _read(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        holder = json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _write(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, text.encode("utf-8"))
