"""Signing in and out, and the home page."""

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from erpauth.abuse import Saturated, SignInAttempt, Throttled
from erpauth.domain import audit
from erpauth.domain.operators import find_operator, lock_operator
from erpauth.http.origin import origin_of
from erpauth.security.secrets import equal
from erpauth.services import Services
from erpauth.storage.models import Operator
from erpauth.web.access import CheckedForm, SignedIn, current_viewer, services_of, session_id_of
from erpauth.web.defences import SIGN_IN, HeldBack, before_password_check, held_back
from erpauth.web.errors import is_page_path
from erpauth.web.render import page, redirect, redirect_with_notice
from erpauth.web.sessions import (
    clear_session_cookie,
    end_session,
    host_cookie,
    set_session_cookie,
    start_session,
)

router = APIRouter(include_in_schema=False)

# The sign-in form has no session to take a CSRF token from. It gets a random nonce in a
# short-lived cookie instead, and the form carries an HMAC of it made with the server key:
# a page on another site can neither read the cookie nor forge the HMAC.
SIGNIN_COOKIE = "erpauth_signin"
WRONG_CREDENTIALS = "The e-mail or password is wrong."
DEACTIVATED = "This account is deactivated. Ask your System Administrator to activate it."
FORM_EXPIRED = "The sign-in form had expired. Please sign in again."


@router.get("/")
def root(request: Request) -> Response:
    return redirect("/home" if current_viewer(request) else "/signin")


@router.get("/signin")
def signin_page(request: Request, next: str = "") -> Response:
    if current_viewer(request) is not None:
        return redirect(safe_next(next) or "/home")
    return _signin_form(request, next_path=next)


@router.post("/signin")
def signin(
    request: Request,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    form_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    services = services_of(request)
    origin = origin_of(request)
    email = email.strip()[:254]
    form = {"next_path": next, "email": email}

    cookie, _ = _signin_cookie(services)
    nonce = request.cookies.get(cookie, "")
    if not nonce or not equal(form_token, _form_token(services, nonce)):
        audit.log_event("web.signin", "refused", origin, detail={"reason": "form_token"})
        return _signin_form(request, **form, error=FORM_EXPIRED, status=403)

    with services.database.session() as session:
        operator = find_operator(session, email) if email else None
        operator_id = operator.id if operator else None
        company_id = operator.company_id if operator else None
        password_hash = operator.password_hash if operator else None

    # An unknown e-mail is counted, delayed and locked like a known one.
    attempt = SignInAttempt(
        email, origin, channel=SIGN_IN, company_id=company_id, operator_id=operator_id
    )
    try:
        before_password_check(services, attempt)
        # The slow part, outside any transaction; an unknown e-mail costs the same time.
        password_ok = services.abuse.sign_in.verify(attempt, password_hash, password)
    except (Throttled, Saturated) as exc:
        return _held_back_form(request, held_back(exc), **form)

    with services.database.session() as session:
        operator = None
        if operator_id and password_ok:
            # A session may follow: locked, so a password forced from now on waits, then ends
            # it. A wrong password takes no lock.
            operator = lock_operator(session, operator_id)
        elif operator_id:
            operator = session.get(Operator, operator_id)
        if operator is not None and operator.password_hash != password_hash:
            password_ok = False  # the password changed while we were checking the old one
        error = _refusal(operator, password_ok)
        ids = {"operator_id": operator_id, "company_id": company_id}
        if error is not None:
            audit.record(session, "web.signin", "refused", origin, reason=error[0], **ids)
            session_id = None
        else:
            assert operator is not None
            if services.hasher.needs_rehash(operator.password_hash):
                operator.password_hash = services.hasher.hash(password)
            session_id = start_session(
                session, services.settings, operator, origin, replacing=session_id_of(request)
            )
            audit.record(session, "web.signin", "success", origin, **ids)

    try:
        services.abuse.sign_in.record(attempt, password_ok)
    except Throttled as exc:
        # This wrong password was one too many: say so now rather than at the next try.
        return _held_back_form(request, held_back(exc), **form)

    if session_id is None:
        assert error is not None
        return _signin_form(request, **form, error=error[1], status=400)

    response = redirect(safe_next(next) or "/home")
    set_session_cookie(response, services.settings, session_id)
    cookie, path = _signin_cookie(services)
    response.delete_cookie(cookie, path=path, secure=services.settings.secure_cookies)
    return response


@router.post("/signout")
def signout(request: Request, viewer: CheckedForm) -> Response:
    services = services_of(request)
    with services.database.session() as session:
        end_session(session, viewer.session_id)
        audit.record(
            session,
            "web.signout",
            "success",
            origin_of(request),
            company_id=viewer.company_id,
            operator_id=viewer.operator_id,
        )

    response = redirect_with_notice(request, "/signin", "signed-out")
    clear_session_cookie(response, services.settings)
    return response


@router.get("/home")
def home(request: Request, viewer: SignedIn) -> Response:
    return page(request, "home.html", viewer=viewer, active="home")


def safe_next(path: str) -> str | None:
    """Where to go after signing in: only a page of this application, never another site."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return None
    if any(ord(char) < 0x20 for char in path) or len(path) > 200:
        return None
    if path in ("/", "/signin", "/signout") or not is_page_path(path):
        return None
    return path


def _refusal(operator: Operator | None, password_ok: bool) -> tuple[str, str] | None:
    """Why the sign-in fails, as (reason for the audit trail, message for the person)."""
    if operator is None or not password_ok:
        return "wrong_credentials", WRONG_CREDENTIALS
    # The password is proven: saying the account is deactivated tells a stranger nothing.
    if not operator.is_active:
        return "operator_inactive", DEACTIVATED
    return None


def _signin_form(
    request: Request,
    *,
    next_path: str,
    email: str = "",
    error: str | None = None,
    status: int = 200,
) -> Response:
    services = services_of(request)
    nonce = secrets.token_urlsafe(16)
    response = page(
        request,
        "signin.html",
        status=status,
        email=email,
        error=error,
        next_path=safe_next(next_path) or "",
        form_token=_form_token(services, nonce),
    )
    cookie, path = _signin_cookie(services)
    response.set_cookie(
        cookie,
        nonce,
        max_age=3600,
        httponly=True,
        secure=services.settings.secure_cookies,
        samesite="lax",
        path=path,
    )
    return response


def _held_back_form(request: Request, refused: HeldBack, *, next_path: str, email: str) -> Response:
    response = _signin_form(
        request, next_path=next_path, email=email, error=refused.message, status=refused.status
    )
    response.headers.update(refused.headers)
    return response


def _signin_cookie(services: Services) -> tuple[str, str]:
    """The nonce cookie's name and path. Over HTTPS it takes the __Host- prefix, as the session
    cookie does: a sibling subdomain could otherwise plant a nonce whose form token it knows,
    and sign the browser in to an account of its choosing (login CSRF)."""
    path = "/" if services.settings.secure_cookies else "/signin"  # the prefix asks for /
    return host_cookie(services.settings, SIGNIN_COOKIE), path


def _form_token(services: Services, nonce: str) -> str:
    return services.box.derive(f"signin-form:{nonce}")
