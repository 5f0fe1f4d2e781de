"""Abuse resistance: call limits, sign-in limits, brute-force defence, bounded hashing.

``AbuseControls`` holds one of each for a process; ``Services.abuse`` is that instance:

* ``calls.hit(token)``: a company's call limit, on every bearer-authenticated call;
* ``requests.check_token_request(origin, client_id)`` and ``requests.check_sign_in(origin)``:
  per-IP and per-client limits on getting a token or signing in;
* ``sign_in``: the brute-force guard around a password check (see ``erpauth.abuse.signin``).

Refusals raise ``Throttled`` (429) or ``Saturated`` (503); ``erpauth.http.errors`` renders them.
"""

from erpauth.abuse.errors import Saturated, Throttled
from erpauth.abuse.hashing import HashingPool
from erpauth.abuse.limits import CallLimits, Limit, Limiter, RequestLimits, Usage
from erpauth.abuse.signin import SignInAttempt, SignInGuard
from erpauth.abuse.storage import CounterStore
from erpauth.abuse.trail import RepeatAudit
from erpauth.config import Settings
from erpauth.security.passwords import PasswordHasher
from erpauth.storage.db import Database

__all__ = [
    "AbuseControls",
    "Limit",
    "Saturated",
    "SignInAttempt",
    "SignInGuard",
    "Throttled",
    "Usage",
]


class AbuseControls:
    """The abuse defences of one process, counting in Redis when it is configured."""

    def __init__(self, settings: Settings, database: Database, hasher: PasswordHasher) -> None:
        self.store = CounterStore(settings)
        self.trail = RepeatAudit(self.store, database, settings.audit_repeat_seconds)
        limiter = Limiter(self.store)
        self.calls = CallLimits(limiter, self.trail)
        self.requests = RequestLimits(settings, limiter, self.trail)
        self.hashing = HashingPool(
            settings.hashing_concurrency, settings.hashing_queue, settings.hashing_wait_seconds
        )
        self.sign_in = SignInGuard(settings, self.store, self.trail, self.hashing, hasher)

    def close(self) -> None:
        self.hashing.close()
        self.store.close()
