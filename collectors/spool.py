"""A bounded on-disk queue of encoded batches, for when the server cannot be reached.

Each batch is one file named `<time ns>-<points>.json.gz`, written atomically, read oldest
first. The body keeps its batch id, so a batch sent twice is stored once. One process owns a
spool directory at a time (an exclusive lock file).
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path


class SpoolBusy(RuntimeError):
    pass


class Spool:
    def __init__(self, directory: str | os.PathLike, max_bytes: int = 256 * 1024 * 1024):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.dropped_points = 0
        self._lock = open(self.dir / ".lock", "w")  # noqa: SIM115 - held for the spool's life
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SpoolBusy(f"spool {self.dir} is in use by another process") from None
        for tmp in self.dir.glob("*.tmp"):  # a write cut short by a crash
            tmp.unlink(missing_ok=True)

    def close(self) -> None:
        self._lock.close()

    def put(self, body: bytes, points: int) -> None:
        path = self.dir / f"{time.time_ns():020d}-{points}.json.gz"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self._trim()

    def files(self) -> list[Path]:
        return sorted(self.dir.glob("*.json.gz"))

    @staticmethod
    def points_in(path: Path) -> int:
        return int(path.name.split("-")[1].split(".")[0])

    def pending_points(self) -> int:
        return sum(self.points_in(p) for p in self.files())

    def _trim(self) -> None:
        files = self.files()
        total = sum(p.stat().st_size for p in files)
        for oldest in files:
            if total <= self.max_bytes:
                break
            total -= oldest.stat().st_size
            self.dropped_points += self.points_in(oldest)
            oldest.unlink(missing_ok=True)
