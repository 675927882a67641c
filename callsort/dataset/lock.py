"""One run at a time per output folder: ``DATASET/callsort.lock``.

The lock is an advisory ``flock`` on the file, which the kernel releases when
the holding process dies however it dies (SIGKILL included), so a lock left by a
killed run is never mistaken for a live one. The file names the holder (run id,
pid, host, start time) for the message a refused run prints. It is never
deleted, only emptied on release: deleting it would let a waiting run and a new
one lock two different files. Where ``fcntl`` does not exist (Windows), the file
is created exclusively instead and a holder whose pid is dead on this host is
taken as stale.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from callsort.errors import CallsortError

LOCK_FILE = "callsort.lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class LockedError(CallsortError):
    """Another run holds the output folder's lock."""

    exit_code = 3


class OutputLock:
    """``with OutputLock(folder, run_id): ...``; ``stale`` tells about a dead holder taken over."""

    def __init__(
        self,
        folder: Path,
        run_id: str,
        *,
        wait: bool = False,
        poll_s: float = 0.5,
        on_wait: Callable[[dict], None] | None = None,
    ) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.run_id = run_id
        self.wait = wait
        self.poll_s = poll_s
        self.on_wait = on_wait
        self.stale: dict | None = None  # the dead holder whose lock this run took over
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this run holds the lock (it may write into the dataset)."""
        return self._fd is not None

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        told = False
        while True:
            holder = self._try()
            if holder is None:
                return
            if not self.wait:
                raise LockedError(describe(self.path, holder))
            if not told and self.on_wait:
                self.on_wait(holder)
                told = True
            time.sleep(self.poll_s)

    def _try(self) -> dict | None:
        """Take the lock, or return what the file says about its holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:  # pragma: no cover
            return self._try_exclusive()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read(self.path)
            os.close(fd)
            return holder or {"pid": "?", "host": "?", "started_at": "?", "run_id": "?"}
        previous = _read(self.path)
        if previous:
            self.stale = previous  # written by a run that died holding it
        self._fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(self._me()).encode("utf-8"))
        os.fsync(fd)
        return None

    def _try_exclusive(self) -> dict | None:  # pragma: no cover - Windows only
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            holder = _read(self.path)
            if holder and holder.get("host") == socket.gethostname() and not _alive(holder):
                self.stale = holder
                os.replace(self.path, f"{self.path}.stale")
                return self._try_exclusive()
            return holder or {"pid": "?", "host": "?", "started_at": "?", "run_id": "?"}
        os.write(fd, json.dumps(self._me()).encode("utf-8"))
        self._fd = fd
        return None

    def _me(self) -> dict:
        return {
            "run_id": self.run_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        }

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if fcntl is None:  # pragma: no cover
                os.close(self._fd)
                self.path.unlink(missing_ok=True)
            else:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
        finally:
            self._fd = None


def describe(path: Path, holder: dict) -> str:
    return (
        f"{path} is held by another callsort run (run {holder.get('run_id', '?')}, "
        f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, "
        f"started {holder.get('started_at', '?')}); it is writing to this output folder. "
        "Try again when it has finished, or add --wait to wait for it."
    )


def _read(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}


def _alive(holder: dict) -> bool:  # pragma: no cover - Windows only
    try:
        os.kill(int(holder["pid"]), 0)
    except (ProcessLookupError, ValueError, KeyError, TypeError):
        return False
    except PermissionError:
        return True
    return True
