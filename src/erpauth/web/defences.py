"""The abuse defences on every page that checks a password: sign-in and the password dialogs.

Each check counts against the per-IP sign-in limit and goes through the brute-force guard of
``erpauth.abuse``, the same one the token endpoint uses, so guesses made on the sign-in page,
in a password dialog and at the token endpoint all add up for one account and address. The
guard audits lockouts and refusals during a lockout itself; the pages audit only their own
outcome (signed in, refused), never the same event twice.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

from erpauth.abuse import Saturated, SignInAttempt, Throttled
from erpauth.abuse.limits import SIGNIN_REQUESTS_PER_IP
from erpauth.abuse.signin import DELAYED, LOCKED_EVERYWHERE, LOCKED_HERE
from erpauth.domain.audit import Origin
from erpauth.services import Services
from erpauth.web.access import Viewer

# A password dialog proves the signed-in operator again; its guesses count for that operator.
SIGN_IN = "web"
PASSWORD_DIALOG = "web_reauth"


@dataclass(frozen=True)
class HeldBack:
    """A refused password check as a page shows it: status, words for a person, headers."""

    status: int
    message: str
    headers: dict[str, str]


def before_password_check(services: Services, attempt: SignInAttempt) -> None:
    """Raises Throttled when this address may not try now, or not try this account yet."""
    services.abuse.requests.check_sign_in(attempt.origin)
    services.abuse.sign_in.check(attempt)


def check_password_again(
    services: Services,
    viewer: Viewer,
    origin: Origin,
    password_hash: str | None,
    password: str,
    *,
    on_wrong: Callable[[], None],
) -> bool:
    """Whether the signed-in operator typed their password right in a password dialog.

    ``on_wrong`` writes the page's own audit row for a wrong password, before the guard counts
    it, so the row is there even when this very guess locks the account. Raises Throttled or
    Saturated like the sign-in page.
    """
    attempt = SignInAttempt(
        viewer.email,
        origin,
        channel=PASSWORD_DIALOG,
        company_id=viewer.company_id,
        operator_id=viewer.operator_id,
    )
    before_password_check(services, attempt)
    password_ok = services.abuse.sign_in.verify(attempt, password_hash, password)
    if not password_ok:
        on_wrong()
    services.abuse.sign_in.record(attempt, password_ok)
    return password_ok


def held_back(exc: Throttled | Saturated) -> HeldBack:
    if isinstance(exc, Saturated):
        return HeldBack(
            503,
            "Too many sign-ins are being checked right now. "
            f"Please try again in {_duration(exc.retry_after)}.",
            dict(exc.headers),
        )
    return HeldBack(429, _throttled_message(exc), dict(exc.headers))


def _throttled_message(exc: Throttled) -> str:
    wait = _duration(exc.retry_after)
    if exc.limit == SIGNIN_REQUESTS_PER_IP:
        return f"Too many sign-in attempts from your address. Please wait {wait}, then try again."
    if exc.limit == DELAYED:
        return (
            "Too many wrong passwords for this account from your address. "
            f"Please wait {wait} before trying again."
        )
    if exc.limit == LOCKED_HERE:
        return (
            "This account is locked for sign-ins from your address after too many wrong "
            f"passwords. Try again in {wait}, or ask your System Administrator for help."
        )
    if exc.limit == LOCKED_EVERYWHERE:
        return (
            "This account is locked after too many wrong passwords from many addresses. "
            f"Try again in {wait}, or ask your System Administrator for help."
        )
    return f"Too many requests. Please try again in {wait}."


def _duration(seconds: int) -> str:
    """The wait in words, always with its number of seconds."""
    if seconds == 1:
        return "1 second"
    if seconds < 120:
        return f"{seconds} seconds"
    return f"{math.ceil(seconds / 60)} minutes ({seconds} seconds)"
