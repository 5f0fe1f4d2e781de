"""What this process remembers of access tokens' standing, for as long as it provably holds.

The bearer check needs, on every request, the token's standing: revoked or not, the operator
active and allowed the API, the company's license open, its call limit. Read from the
database each time, that one query costs more than the rest of the request. With PostgreSQL,
the answer is kept here instead, and dropped on the change notices of ``ChangeFeed``:

* a token revoked, expired or deleted drops that token;
* any change to an operator, company or API client drops everything (they are rare);
* while the feed is not listening, nothing is kept or served, and everything is dropped when
  it stops or starts again, since notices sent in between are lost.

A read that a notice overtook is not kept: each notice moves ``generation`` on, and an entry
is stored only if the generation is the one seen before its query began. Entries also expire
after ``max_age`` seconds, as a bound should notices ever go missing unnoticed.

Before an entry is used, any notice that has reached the process's socket is read (the
socket is looked at once a millisecond at most), so a change counts about a millisecond after
its commit at the latest, in every process, instead of at the commit itself.
"""

import time
from dataclasses import dataclass
from typing import Any

from erpauth.storage.changes import RESET, ChangeFeed

TOKEN_PREFIX = "token:"


@dataclass
class Standing:
    """A token that passed every check of the bearer check, and what that check made of it.

    Only tokens in good standing are kept; what could change that is announced, and drops
    the entry. Expiry is the one check that time alone fails, so it is repeated on each use.
    """

    jti: str
    expires_at: float | None  # epoch seconds
    context: Any  # the TokenContext
    touched_at: float  # time.monotonic() when last_used_at was last written
    stored_at: float  # time.monotonic()


class StandingCache:
    """Standings of tokens, trusted only while the change feed listens.

    Entries are found by the whole token, as presented: a token that is not byte for byte
    one that passed the full check is not found, and goes through that check. (A dictionary
    lookup compares keys only after their keyed, per-process hashes match, so its timing
    says nothing useful about a guessed token.) Change notices name the jti.
    """

    def __init__(self, feed: ChangeFeed | None, *, max_age: float, size: int = 10_000) -> None:
        self._feed = feed
        self._max_age = max_age
        self._size = size
        self._entries: dict[str, Standing] = {}
        self._tokens: dict[str, str] = {}  # jti -> token
        self.generation = 0
        if feed is not None:
            feed.subscribe(self._on_change)

    @property
    def active(self) -> bool:
        return self._feed is not None and self._feed.live and self._max_age > 0

    def get(self, token: str) -> Standing | None:
        """The token's entry, if kept and fresh; if ``behind()``, ``catch_up`` before using it."""
        if not self.active:
            return None
        entry = self._entries.get(token)
        if entry is None:
            return None
        if time.monotonic() - entry.stored_at > self._max_age:
            self._drop(entry.jti)
            return None
        return entry

    def behind(self) -> bool:
        """True when a change notice may have reached this process without being read."""
        return self._feed is None or self._feed.has_unread()

    async def catch_up(self) -> bool:
        """Reads the notices that have arrived; False if that could not be done at once.

        After True, ``get`` reflects every change committed before the notices were read.
        """
        return self._feed is not None and await self._feed.catch_up()

    def put(self, token: str, entry: Standing, generation: int) -> None:
        """Keeps entry unless a change notice arrived since ``generation`` was read."""
        if not self.active or generation != self.generation:
            return
        if len(self._entries) >= self._size:
            # Oldest first: dicts keep insertion order.
            oldest = next(iter(self._entries.values()), None)
            if oldest is not None:
                self._drop(oldest.jti)
        self._entries[token] = entry
        self._tokens[entry.jti] = token

    def forget(self) -> None:
        """Drops every entry, and any read now under way (as a change notice does)."""
        self._on_change(RESET)

    def _drop(self, jti: str) -> None:
        token = self._tokens.pop(jti, None)
        if token is not None:
            self._entries.pop(token, None)

    def _on_change(self, payload: str) -> None:
        self.generation += 1
        if payload.startswith(TOKEN_PREFIX):
            self._drop(payload.removeprefix(TOKEN_PREFIX))
        else:
            # An operator, company, client or signing key changed, or notices were lost.
            self._entries.clear()
            self._tokens.clear()
