"""Where studies live: an embedded SQLite file by default, any Optuna RDB URL (PostgreSQL
when several machines share a study), or a journal file (several processes, one machine or
a shared file system)."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from filelock import Timeout

from .. import artifacts
from ..errors import ComptkError

HEARTBEAT_SECONDS = 30  # a RUNNING trial whose process died is marked FAIL after GRACE_SECONDS
GRACE_SECONDS = 120
JOURNAL_PREFIX = "journal:"
JOURNAL_SUFFIXES = (".log", ".journal", ".jsonl")


@dataclass(frozen=True)
class StorageSpec:
    url: str  # what the user gave (or the default), shown in messages and saved nowhere secret
    kind: str  # "sqlite" | "rdb" | "journal"
    local_file: Path | None  # the file for sqlite/journal: a lock next to it serialises trial starts

    def open(self) -> optuna.storages.BaseStorage:
        lock = self.start_lock()
        try:
            lock.acquire()  # two workers creating one SQLite schema at once collide
        except ComptkError as exc:  # the lock held past its timeout
            raise ComptkError(f"cannot open storage '{_redact(self.url)}': {exc}") from None
        except OSError as exc:  # the file's folder cannot hold files: a parent is a file, a system folder
            raise ComptkError(f"cannot open storage '{_redact(self.url)}': {_os_reason(exc)}") from None
        try:
            return self._open()
        except ComptkError:
            if self.kind != "rdb":
                raise
            time.sleep(1.0)  # a server schema created by another worker at the same moment: once more
            return self._open()
        finally:
            lock.release()

    def _open(self) -> optuna.storages.BaseStorage:
        try:
            if self.kind == "journal":
                backend = optuna.storages.journal.JournalFileBackend(str(self.local_file))
                return optuna.storages.journal.JournalStorage(backend)
            engine_kwargs = {"connect_args": {"timeout": 60}} if self.kind == "sqlite" else {"pool_pre_ping": True}
            warnings.filterwarnings("ignore", message=".*heartbeat.*", category=optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                self.url, engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
            )
        except ModuleNotFoundError as exc:  # e.g. psycopg for postgresql://
            raise ComptkError(f"storage '{_redact(self.url)}' needs the Python package '{exc.name}' "
                              f"(pip install {_driver_hint(exc.name)})") from None
        except Exception as exc:  # sqlalchemy's OperationalError and friends: unreachable server, bad URL
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ComptkError(f"cannot open storage '{_redact(self.url)}': {first}") from None

    def start_lock(self) -> _Lock:
        """Serialises 'count the trials, then start one' between processes on this machine, so
        several workers stop at exactly the requested total. A server storage has no local file:
        there the rare surplus start is recorded and not counted (see study.py)."""
        return _Lock(None if self.local_file is None else Path(str(self.local_file) + ".comptk-start.lock"))


LOCK_TIMEOUT_S = 600


class _Lock:
    """A re-releasable file lock (released early once the trial exists, and again in finally)."""

    def __init__(self, path: Path | None) -> None:
        from filelock import FileLock

        self._lock = FileLock(str(path), timeout=LOCK_TIMEOUT_S) if path else None

    def acquire(self) -> None:
        if self._lock is not None:
            Path(self._lock.lock_file).parent.mkdir(parents=True, exist_ok=True)
            Path(self._lock.lock_file).touch()  # fails at once where filelock would retry until its timeout
            try:
                self._lock.acquire()
            except Timeout as exc:  # an OSError too; here (opening the storage, or starting a trial) it is this:
                raise ComptkError(f"another process has held its start lock {exc.lock_file} for {LOCK_TIMEOUT_S} "
                                  f"s; wait for it to finish, or end it") from None

    def release(self) -> None:
        if self._lock is not None and self._lock.is_locked:
            self._lock.release()


def _os_reason(exc: OSError) -> str:
    """An OSError in a few words, naming its path."""
    if isinstance(exc, FileExistsError):  # mkdir met a file where the path needs a folder
        return f"{exc.filename} is a file, not a folder"
    return f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else str(exc)


def _redact(url: str) -> str:
    """Hide a password in a database URL."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        if ":" in cred:
            return f"{scheme}://{cred.split(':', 1)[0]}:***@{host}"
    return url


def _driver_hint(module: str | None) -> str:
    return {"psycopg": "'psycopg[binary]'", "psycopg2": "psycopg2-binary", "pymysql": "pymysql", "MySQLdb": "mysqlclient"}.get(module or "", module or "")


def resolve_storage(storage: str | Path | None, workdir: Path) -> StorageSpec:
    """None -> WORKDIR's SQLite file; 'sqlite:///F', 'postgresql://...', 'mysql://...';
    'journal:F' or a path ending in .log/.journal/.jsonl -> a journal file."""
    if storage is None:
        path = artifacts.tune_storage_path(Path(workdir)).resolve()
        return StorageSpec(f"sqlite:///{path}", "sqlite", path)
    text = str(storage)
    if text.startswith(JOURNAL_PREFIX) or (("://" not in text) and text.endswith(JOURNAL_SUFFIXES)):
        path = Path(text.removeprefix(JOURNAL_PREFIX)).expanduser().resolve()
        return StorageSpec(f"{JOURNAL_PREFIX}{path}", "journal", path)
    if text.startswith("sqlite:///"):
        path = Path(text.removeprefix("sqlite:///")).expanduser().resolve()
        return StorageSpec(f"sqlite:///{path}", "sqlite", path)
    if "://" in text:
        return StorageSpec(text, "rdb", None)
    raise ComptkError(
        f"--storage '{text}': give a database URL (sqlite:///FILE.db, postgresql://USER:PASS@HOST/DB) "
        f"or a journal file (journal:FILE or FILE.log)"
    )
