"""Change notifications from PostgreSQL, for the caches of one process.

Migrations 0002 and 0003 install triggers that announce, on the ``erpauth_changes``
channel, every committed change that can alter whether an access token may be used (see
their docstrings for the payloads). ``ChangeFeed`` listens on one connection of its own and
hands each payload to the subscribers.

A cache that relies on the feed must trust its entries only while the feed is ``live``: when
the listening connection breaks, notices sent meanwhile are lost, so subscribers are told to
forget everything (``RESET``), and again once the feed listens anew. Every ``heartbeat``
seconds the feed sends itself a notice on the channel and expects it back by the next one, so
a connection that died silently, or a path that swallows notices (a connection pooler in
transaction mode), is noticed within two heartbeats.
"""

import asyncio
import contextlib
import itertools
import logging
import os
import select
import time
from collections.abc import Callable

import psycopg
from sqlalchemy.engine import make_url

log = logging.getLogger("erpauth.changes")

CHANNEL = "erpauth_changes"
# How the listening connections show in pg_stat_activity.
APPLICATION_NAME = "erpauth-changes"
RESET = "*"  # to subscribers: forget everything, notices may have been lost
HEARTBEAT_SECONDS = 1.0
RETRY_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)
POLL_SECONDS = 0.001

Subscriber = Callable[[str], None]
# Each feed proves every heartbeat that notices reach it by sending itself one; the other
# feeds on the channel see it too and pass over it.
HEARTBEAT_PREFIX = "heartbeat:"


class NoticesNotDelivered(Exception):
    """The listening connection works, but a notice sent on the channel did not arrive."""


def libpq_url(sqlalchemy_url: str) -> str:
    """The libpq connection string for a ``postgresql+psycopg://`` SQLAlchemy URL."""
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class ChangeFeed:
    """Listens for change notices on PostgreSQL, inside the event loop of one process."""

    def __init__(self, conninfo: str, *, heartbeat: float = HEARTBEAT_SECONDS) -> None:
        self._conninfo = conninfo
        self._heartbeat = heartbeat
        self._subscribers: list[Subscriber] = []
        self._task: asyncio.Task[None] | None = None
        self._poller: select.poll | None = None  # on the listening socket, while live
        self._quiet_until = 0.0
        self._failures = 0  # in a row, since the feed was last live
        # While the heartbeat query waits for its answer, a notice that arrives is read from
        # the socket by that query and held back by psycopg until the feed listens again.
        self._heartbeat_pending = False
        self.live = False

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def start(self) -> None:
        """Starts listening in the background, on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="changes")

    def has_unread(self) -> bool:
        """True when notices may have arrived that the feed has not handed out yet.

        A zero-timeout poll of the listening socket, so that a change committed before a
        request arrived is seen by that request. An empty socket is believed for
        ``POLL_SECONDS``: busy processes then poll about once a millisecond, not once a
        request.
        """
        if self._poller is None or self._heartbeat_pending:
            return True
        now = time.monotonic()
        if now < self._quiet_until:
            return False
        try:
            unread = bool(self._poller.poll(0))
        except OSError:
            return True
        if not unread:
            self._quiet_until = now + POLL_SECONDS
        return unread

    async def catch_up(self, rounds: int = 20) -> bool:
        """Lets the feed read what has arrived; False if it has not within ``rounds`` turns."""
        for _ in range(rounds):
            if not self.has_unread():
                return True
            await asyncio.sleep(0)
        return not self.has_unread()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set_live(False)

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except (psycopg.Error, OSError, TimeoutError, NoticesNotDelivered) as exc:
                self._set_live(False)
                failures = self._failures
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                if failures == 0:
                    # One line per outage; the caches are bypassed until the feed is back.
                    log.warning(
                        "change notices interrupted: reading token standing from the database "
                        "on every request until they are back",
                        extra={
                            "fields": {
                                "event": "changes.down",
                                "error": f"{type(exc).__name__}: {exc}"[:300],
                            }
                        },
                    )
                self._failures += 1
                await asyncio.sleep(delay)

    async def _listen(self) -> None:
        connection = await asyncio.wait_for(
            psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, application_name=APPLICATION_NAME
            ),
            timeout=max(self._heartbeat * 5, 5.0),
        )
        try:
            await connection.execute(f"LISTEN {CHANNEL}")
            poller = select.poll()
            poller.register(connection.fileno(), select.POLLIN)
            self._poller = poller
            # Live only once a first notice of its own has come back, and for as long as each
            # heartbeat's does.
            awaited: str | None = None  # this feed's last heartbeat notice, until it is back
            for beat in itertools.count():
                if beat > 0:
                    async for notice in connection.notifies(timeout=self._heartbeat):
                        if notice.payload == awaited:
                            awaited = None
                            self._set_live(True)
                        elif not notice.payload.startswith(HEARTBEAT_PREFIX):
                            self._dispatch(notice.payload)
                if awaited is not None:
                    # The connection answers but notices do not arrive (a pooler in
                    # transaction mode, say): trusting kept standings would be wrong.
                    raise NoticesNotDelivered("the heartbeat notice did not come back")
                awaited = f"{HEARTBEAT_PREFIX}{os.getpid()}:{id(self)}:{beat}"
                self._heartbeat_pending = True
                try:
                    await asyncio.wait_for(
                        connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, awaited)),
                        timeout=self._heartbeat,
                    )
                finally:
                    self._heartbeat_pending = False
        finally:
            self._poller = None
            self._set_live(False)
            with contextlib.suppress(Exception):
                await connection.close()

    def _set_live(self, live: bool) -> None:
        if live == self.live:
            return
        self.live = live
        # Going down, entries may go stale; coming up, notices of the gap were never seen.
        self._dispatch(RESET)
        if live:
            self._failures = 0
            log.info("listening for change notices", extra={"fields": {"event": "changes.up"}})

    def _dispatch(self, payload: str) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(payload)
            except Exception:  # one subscriber's bug must not silence the others
                log.exception("change subscriber failed")
