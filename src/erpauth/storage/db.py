"""Engine and sessions."""

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, Update, create_engine, event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from erpauth.config import Settings


def make_engine(settings: Settings) -> Engine:
    url = settings.resolved_database_url()
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _create_private_sqlite_file(url)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine

    # No overflow: connections opened past the pool were closed again on return, and under
    # load PostgreSQL spent its time starting and ending backends. Past the pool, requests
    # wait (up to pool_timeout) for a connection instead.
    # No pre-ping: it costs a round trip on every checkout, on the hottest path. After a
    # database restart the first use of a stale connection fails (503), and SQLAlchemy then
    # replaces the whole pool.
    return create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=0,
        pool_recycle=1800,
        pool_timeout=10,
    )


def make_async_engine(settings: Settings) -> AsyncEngine | None:
    """An asyncio engine for the bearer check, where the driver has one (psycopg does).

    The check runs on every API request; awaiting its one query on the event loop spares the
    hand-off to a worker thread, which under concurrency costs more than the query. SQLite
    has no asyncio driver here, so there the check runs on a worker thread.
    """
    url = settings.resolved_database_url()
    if not url.startswith("postgresql+psycopg"):
        return None
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=0,
        pool_recycle=1800,
        pool_timeout=10,
        isolation_level="AUTOCOMMIT",
    )


def hold_writer_lock_on_sqlite(session: Session, no_op_write: Update) -> None:
    """On SQLite, takes the database's one writer lock now, until the session commits.

    SQLite ignores FOR SHARE and FOR UPDATE, and pysqlite begins a transaction only at its
    first write, so a locking read holds nothing there (and a savepoint would be the outermost
    transaction). ``no_op_write``, an UPDATE that changes nothing, takes the lock instead;
    writers take turns on SQLite anyway. On other databases it does nothing: the caller's
    locking read or the insert's unique index does the work.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(no_op_write, execution_options={"synchronize_session": False})


def _create_private_sqlite_file(url: str) -> None:
    """Makes the SQLite file readable by its owner only, before SQLite makes it with the umask.

    It holds password hashes and the audit trail; SQLite gives its -wal and -shm files the
    same mode.
    """
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Database:
    """Hands out sessions that commit on success and roll back on any error."""

    def __init__(self, settings: Settings) -> None:
        self.engine = make_engine(settings)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Single statements that need no transaction: no BEGIN and no ROLLBACK round trips.
        self.autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self.async_autocommit = make_async_engine(settings)

    @contextmanager
    def session(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
