"""User Settings: the operator's own details and password, and the API tab where they make
access tokens."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from erpauth.abuse import Saturated, Throttled
from erpauth.domain import audit
from erpauth.domain.errors import DomainError
from erpauth.domain.operators import email_key, lock_operator, set_password
from erpauth.domain.tokens import IssuedAccessToken
from erpauth.domain.web_tokens import (
    WEB_SOURCE,
    current_web_token,
    delete_web_token,
    refusal,
    replace_web_token,
)
from erpauth.http.origin import origin_of
from erpauth.security.passwords import MIN_PASSWORD_LENGTH, password_problem
from erpauth.storage.models import Operator
from erpauth.web.access import (
    CHANGED_MEANWHILE,
    CheckedForm,
    SignedIn,
    Viewer,
    reauthenticate,
    services_of,
)
from erpauth.web.defences import check_password_again, held_back
from erpauth.web.render import page, redirect, redirect_with_notice, sentence
from erpauth.web.sessions import set_session_cookie, start_session

router = APIRouter(include_in_schema=False)

GENERAL_TAB = "/settings/user"
API_TAB = "/settings/user/api"
WRONG_CREDENTIALS = "The e-mail or password is wrong."
WRONG_CURRENT_PASSWORD = "The current password is wrong."


@router.get(GENERAL_TAB)
def general_tab(request: Request, viewer: SignedIn) -> Response:
    return _general_tab(request, viewer)


@router.get(GENERAL_TAB + "/general")
def general_tab_by_its_name(viewer: SignedIn) -> Response:
    """The address System Settings gives its General tab, so a guess by analogy finds it too."""
    return redirect(GENERAL_TAB)


@router.post(GENERAL_TAB + "/password")
def change_password(
    request: Request,
    viewer: CheckedForm,
    current_password: Annotated[str, Form()] = "",
    new_password: Annotated[str, Form()] = "",
    confirm_password: Annotated[str, Form()] = "",
) -> Response:
    """The operator's own new password; it ends their tokens and their other browsers' sessions.

    The browser that changed it stays signed in, under a new session id.
    """
    services = services_of(request)
    origin = origin_of(request)
    problem = _new_password_problem(new_password, confirm_password)
    if problem is not None:
        return _general_tab(request, viewer, password_error=problem, status=400)

    with services.database.session() as session:
        password_hash = session.get(Operator, viewer.operator_id).password_hash

    def audit_refusal() -> None:
        with services.database.session() as session:
            audit.record(
                session,
                "password.change",
                "refused",
                origin,
                company_id=viewer.company_id,
                actor_id=viewer.operator_id,
                operator_id=viewer.operator_id,
                reason="wrong_current_password",
            )

    try:
        password_ok = check_password_again(
            services, viewer, origin, password_hash, current_password, on_wrong=audit_refusal
        )
    except (Throttled, Saturated) as exc:
        refused = held_back(exc)
        error = ("current_password", refused.message)
        response = _general_tab(request, viewer, password_error=error, status=refused.status)
        response.headers.update(refused.headers)
        return response
    if not password_ok:
        error = ("current_password", WRONG_CURRENT_PASSWORD)
        return _general_tab(request, viewer, password_error=error, status=400)

    with services.database.session() as session:
        # Locked: a change forced from now on waits for this one, and is then told it lost.
        operator = lock_operator(session, viewer.operator_id)
        if operator is None or operator.password_hash != password_hash or not operator.is_active:
            # Changed elsewhere while we checked the old password: that change stands.
            error = ("current_password", CHANGED_MEANWHILE)
            return _general_tab(request, viewer, password_error=error, status=409)
        set_password(session, services.hasher, operator, new_password)  # signs out everywhere
        session_id = start_session(session, services.settings, operator, origin)
        audit.record(
            session,
            "password.change",
            "success",
            origin,
            company_id=viewer.company_id,
            actor_id=viewer.operator_id,
            operator_id=viewer.operator_id,
            via="web",
        )

    response = redirect_with_notice(request, GENERAL_TAB, "password-changed")
    set_session_cookie(response, services.settings, session_id)
    return response


@router.get(API_TAB)
def api_tab(request: Request, viewer: SignedIn) -> Response:
    return _api_tab(request, viewer)


@router.post(API_TAB + "/token")
def make_token(
    request: Request,
    viewer: CheckedForm,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
) -> Response:
    """Generate and Regenerate both land here, after the sign-in window."""
    services = services_of(request)
    origin = origin_of(request)

    with services.database.session() as session:
        password_hash = session.get(Operator, viewer.operator_id).password_hash
    # Another person's e-mail with their own password must not pass: check against nothing.
    same_operator = email_key(email) == email_key(viewer.email)

    def audit_refusal() -> None:
        with services.database.session() as session:
            audit.record(
                session,
                "web.reauth",
                "refused",
                origin,
                company_id=viewer.company_id,
                operator_id=viewer.operator_id,
                purpose="access_token",
            )

    try:
        password_ok = check_password_again(
            services,
            viewer,
            origin,
            password_hash if same_operator else None,
            password,
            on_wrong=audit_refusal,
        )
    except (Throttled, Saturated) as exc:
        refused = held_back(exc)
        response = _api_tab(
            request, viewer, reauth_error=refused.message, reauth_email=email, status=refused.status
        )
        response.headers.update(refused.headers)
        return response
    if not password_ok:
        return _api_tab(
            request, viewer, reauth_error=WRONG_CREDENTIALS, reauth_email=email, status=400
        )

    try:
        with services.database.session() as session:
            operator = session.get(Operator, viewer.operator_id)
            if operator.password_hash != password_hash:
                raise DomainError(CHANGED_MEANWHILE)
            issued, replaced = replace_web_token(session, services.tokens, operator, origin)
            audit.record(
                session,
                "token.issue",
                "success",
                origin,
                company_id=viewer.company_id,
                operator_id=viewer.operator_id,
                actor_id=viewer.operator_id,
                client_id=operator.company.api_client.client_id,
                jti=issued.jti,
                source=WEB_SOURCE,
                replaced=replaced,
            )
            # Last: a refusal above rolls back and leaves the session as it was.
            viewer = reauthenticate(request, session, viewer, operator, password_hash)
    except DomainError as exc:
        return _api_tab(request, viewer, error=str(exc), status=403)
    response = _api_tab(request, viewer, new_token=issued)
    set_session_cookie(response, services.settings, viewer.session_id)
    return response


@router.post(API_TAB + "/token/delete")
def delete_token(request: Request, viewer: CheckedForm) -> Response:
    services = services_of(request)
    with services.database.session() as session:
        revoked = delete_web_token(session, viewer.operator_id)
        if revoked:
            audit.record(
                session,
                "token.revoke",
                "success",
                origin_of(request),
                company_id=viewer.company_id,
                operator_id=viewer.operator_id,
                actor_id=viewer.operator_id,
                source=WEB_SOURCE,
                reason="web_deleted",
                count=revoked,
            )
    if not revoked:
        return redirect(API_TAB)
    return redirect_with_notice(request, API_TAB, "token-deleted")


def _general_tab(
    request: Request,
    viewer: Viewer,
    *,
    password_error: tuple[str, str] | None = None,
    status: int = 200,
) -> Response:
    return page(
        request,
        "user_general.html",
        viewer=viewer,
        status=status,
        address=GENERAL_TAB,
        active="user-settings",
        tab="general",
        password_error=password_error,
        min_password_length=MIN_PASSWORD_LENGTH,
    )


def _new_password_problem(new_password: str, confirm_password: str) -> tuple[str, str] | None:
    """The field at fault and what is wrong with it, or None when the new password will do."""
    problem = password_problem(new_password)
    if problem is not None:
        return "new_password", sentence(problem)
    if new_password != confirm_password:
        return "confirm_password", "The new password and its confirmation are not the same."
    return None


def _api_tab(
    request: Request,
    viewer: Viewer,
    *,
    new_token: IssuedAccessToken | None = None,
    reauth_error: str | None = None,
    reauth_email: str = "",
    error: str | None = None,
    status: int = 200,
) -> Response:
    services = services_of(request)
    with services.database.session() as session:
        operator = session.get(Operator, viewer.operator_id)
        company = operator.company
        token = current_web_token(session, operator.id)
        view = {
            "refusal": refusal(operator, company),
            "client_id": company.api_client.client_id,
            "email": operator.email,
            "token": token,
            "token_expired": bool(
                token and token.expires_at and token.expires_at <= datetime.now(UTC)
            ),
        }

    # The full token exists only in this response; afterwards the page shows its hint.
    shown = new_token if new_token and token and token.jti == new_token.jti else None
    return page(
        request,
        "user_api.html",
        viewer=viewer,
        status=status,
        address=API_TAB,
        active="user-settings",
        tab="api",
        new_token=shown.token if shown else None,
        reauth_error=reauth_error,
        reauth_email=reauth_email,
        error=error,
        **view,
    )
