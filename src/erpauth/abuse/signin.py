"""Brute-force defence for password sign-ins, shared by the token endpoint and the web page.

Failed passwords are counted per account *and source address*. After a few, that source must
wait a little longer before each further try for that account; after more, the account is
locked for that source only, so an attacker cannot lock a legitimate operator out from
elsewhere. A much higher count per account, from all sources together, locks the account
everywhere: that catches guessing spread over many addresses.

An unknown e-mail is counted exactly like a known one, so neither the answers nor the lockouts
tell whether an account exists. Counts are kept under a digest of the e-mail, never the e-mail.

Use, for each attempt::

    attempt = SignInAttempt(username, origin, channel="web", company_id=..., operator_id=...)
    counted = guard.check(attempt)              # raises Throttled while locked or delayed
    ok = guard.verify(attempt, password_hash, password)  # bounded; raises Saturated
    guard.record(attempt, ok, counted)          # raises Throttled when this failure locks

or, on the event loop, ``counted, ok = await guard.check_and_verify(...)`` and
``await guard.record_async(...)``.
"""

import time
import uuid
from dataclasses import dataclass
from typing import NoReturn

from limits.storage import RedisStorage, Storage
from starlette.concurrency import run_in_threadpool

from erpauth.abuse.errors import Saturated, Throttled
from erpauth.abuse.hashing import HashingPool
from erpauth.abuse.keys import digest, key_part
from erpauth.abuse.storage import Backend, CounterStore
from erpauth.abuse.trail import RepeatAudit
from erpauth.config import Settings
from erpauth.domain.audit import Origin
from erpauth.domain.operators import email_key
from erpauth.security.argon2_memory import WorkingMemory
from erpauth.security.passwords import PasswordHasher

LOCKED_HERE = "signin_lockout"
LOCKED_EVERYWHERE = "signin_account_lockout"
DELAYED = "signin_delay"


@dataclass(frozen=True)
class SignInAttempt:
    """One try at a password, as the defences see it."""

    username: str
    origin: Origin
    channel: str
    company_id: uuid.UUID | None = None
    operator_id: uuid.UUID | None = None
    client_id: str | None = None

    @property
    def account(self) -> str:
        return digest(email_key(self.username))

    @property
    def source(self) -> str:
        return key_part(self.origin.ip_address or "unknown")


@dataclass(frozen=True)
class _Hold:
    """Why attempts must wait, and for how many more seconds."""

    limit: str
    seconds: int


class SignInGuard:
    """Slows down, then locks, repeated wrong passwords; bounds the hashing work."""

    def __init__(
        self,
        settings: Settings,
        store: CounterStore,
        trail: RepeatAudit,
        hashing: HashingPool,
        hasher: PasswordHasher,
    ) -> None:
        self._settings = settings
        self._store = store
        self._trail = trail
        self._hashing = hashing
        self._hasher = hasher

    def check(self, attempt: SignInAttempt) -> bool:
        """Raises Throttled when this source must not try this account yet.

        Returns whether failures of this account from this source are counted, which a
        correct password then clears (``record``).
        """
        hold, counted = self._current_hold(attempt)
        if hold is not None:
            self._refuse(attempt, hold)
        return counted

    def _current_hold(self, attempt: SignInAttempt) -> tuple[_Hold | None, bool]:
        return self._store.run(lambda backend: _current_hold(backend, attempt), fail_open=False)

    def _refuse(self, attempt: SignInAttempt, hold: _Hold) -> NoReturn:
        self._trail.record(
            "signin.throttled",
            "refused",
            attempt.origin,
            key=f"{hold.limit}/{attempt.account}/{attempt.source}",
            **self._ids(attempt),
            limit=hold.limit,
            retry_after=hold.seconds,
        )
        raise Throttled(_description(hold), limit=hold.limit, retry_after=hold.seconds)

    def verify(self, attempt: SignInAttempt, password_hash: str | None, password: str) -> bool:
        """Checks the password (with no hash: same work, then False) on a hashing thread."""
        try:
            return self._hashing.run(
                lambda memory: self._hasher.verify(password_hash, password, memory)
            )
        except Saturated:
            self._busy(attempt)
            raise

    async def check_and_verify(
        self, attempt: SignInAttempt, password_hash: str | None, password: str
    ) -> tuple[bool, bool]:
        """``check``, then ``verify``, from the event loop: (counted, password_ok).

        Both run in one trip to a hashing thread, the counters' read included, so the event
        loop neither blocks on Redis nor hands the request to another thread in between.
        """

        def work(memory: WorkingMemory) -> tuple[_Hold | None, bool, bool]:
            hold, counted = self._current_hold(attempt)
            if hold is not None:
                return hold, counted, False
            return None, counted, self._hasher.verify(password_hash, password, memory)

        try:
            hold, counted, password_ok = await self._hashing.run_async(work)
        except Saturated:
            await run_in_threadpool(self._busy, attempt)
            raise
        if hold is not None:
            await run_in_threadpool(self._refuse, attempt, hold)
        return counted, password_ok

    def _busy(self, attempt: SignInAttempt) -> None:
        self._trail.record(
            "signin.busy", "refused", attempt.origin, key=attempt.source, **self._ids(attempt)
        )

    def record(self, attempt: SignInAttempt, password_ok: bool, counted: bool = True) -> None:
        """Counts the outcome; raises Throttled when this failure locks the account.

        ``counted``: what ``check`` returned. When it found no failures to forget, a correct
        password spares the round trip that would clear them. A failure from this source
        counted in between, while this password was being checked, then stays counted.
        """
        if password_ok:
            if counted:
                self._store.run(lambda backend: _forget_failures(backend, attempt), fail_open=False)
            return

        hold = self._store.run(
            lambda backend: self._count_failure(backend, attempt), fail_open=False
        )
        if hold is None or hold.limit == DELAYED:
            return
        self._trail.record(
            "signin.lockout",
            "locked",
            attempt.origin,
            key=f"{hold.limit}/{attempt.account}/{attempt.source}",
            **self._ids(attempt),
            scope="source" if hold.limit == LOCKED_HERE else "account",
            seconds=hold.seconds,
        )
        raise Throttled(_description(hold), limit=hold.limit, retry_after=hold.seconds)

    async def record_async(
        self, attempt: SignInAttempt, password_ok: bool, counted: bool = True
    ) -> None:
        """``record`` from the event loop: on a worker thread, when there is anything to do."""
        if password_ok and not counted:
            return
        await run_in_threadpool(self.record, attempt, password_ok, counted)

    def _count_failure(self, backend: Backend, attempt: SignInAttempt) -> _Hold | None:
        settings, storage, keys = self._settings, backend.storage, _Keys(attempt)
        window = settings.signin_failure_window_seconds
        failures = storage.incr(keys.failures_here, window)
        everywhere = storage.incr(keys.failures_everywhere, window)

        lockout = settings.signin_lockout_seconds
        if everywhere >= settings.signin_account_failures_before_lockout:
            storage.incr(keys.locked_everywhere, lockout)
            storage.clear(keys.failures_everywhere)
            return _Hold(LOCKED_EVERYWHERE, lockout)
        if failures >= settings.signin_failures_before_lockout:
            storage.incr(keys.locked_here, lockout)
            storage.clear(keys.failures_here)
            storage.clear(keys.delayed_here)
            return _Hold(LOCKED_HERE, lockout)
        if failures >= settings.signin_failures_before_delay:
            steps = failures - settings.signin_failures_before_delay
            delay = min(settings.signin_delay_seconds * 2**steps, settings.signin_max_delay_seconds)
            storage.incr(keys.delayed_here, delay)
            return _Hold(DELAYED, delay)
        return None

    @staticmethod
    def _ids(attempt: SignInAttempt) -> dict[str, object]:
        return {
            "company_id": attempt.company_id,
            "operator_id": attempt.operator_id,
            "client_id": attempt.client_id,
            "account": attempt.account[:12],
            "channel": attempt.channel,
        }


class _Keys:
    def __init__(self, attempt: SignInAttempt) -> None:
        account, source = attempt.account, attempt.source
        self.failures_here = f"signin/failures/{account}/{source}"
        self.failures_everywhere = f"signin/failures/{account}"
        self.locked_here = f"signin/locked/{account}/{source}"
        self.locked_everywhere = f"signin/locked/{account}"
        self.delayed_here = f"signin/delayed/{account}/{source}"


def _current_hold(backend: Backend, attempt: SignInAttempt) -> tuple[_Hold | None, bool]:
    """The hold on this attempt, if any, and whether failures from its source are counted."""
    storage, keys = backend.storage, _Keys(attempt)
    holds = (
        (keys.locked_everywhere, LOCKED_EVERYWHERE),
        (keys.locked_here, LOCKED_HERE),
        (keys.delayed_here, DELAYED),
    )
    *counts, failures_here = _read(storage, [key for key, _ in holds] + [keys.failures_here])
    counted = bool(failures_here or counts[-1])
    for (key, limit), count in zip(holds, counts, strict=True):
        if count:
            return _Hold(limit, max(1, round(storage.get_expiry(key) - time.time()))), counted
    return None, counted


def _forget_failures(backend: Backend, attempt: SignInAttempt) -> None:
    keys = _Keys(attempt)
    _clear(backend.storage, [keys.failures_here, keys.delayed_here])


# Every sign-in reads four counters, and a success after failures clears two: with Redis, one
# round trip each instead of one per counter.


def _read(storage: Storage, keys: list[str]) -> list[int]:
    if isinstance(storage, RedisStorage):
        values = storage.get_connection(True).mget([storage.prefixed_key(key) for key in keys])
        return [int(value or 0) for value in values]
    return [storage.get(key) for key in keys]


def _clear(storage: Storage, keys: list[str]) -> None:
    if isinstance(storage, RedisStorage):
        storage.get_connection().delete(*(storage.prefixed_key(key) for key in keys))
        return
    for key in keys:
        storage.clear(key)


def _description(hold: _Hold) -> str:
    if hold.limit == DELAYED:
        return (
            "too many failed sign-ins for this account from your address; wait "
            f"{hold.seconds} seconds before trying again"
        )
    where = "from your address" if hold.limit == LOCKED_HERE else "from any address"
    return (
        f"too many failed sign-ins: this account is locked {where}; "
        f"try again in {hold.seconds} seconds"
    )
