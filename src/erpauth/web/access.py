"""Who is signed in, and whether a request may do what it asks: request dependencies."""

import uuid
from dataclasses import dataclass, replace
from typing import Annotated

from fastapi import Depends, Form, Request
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException

from erpauth.domain import audit
from erpauth.domain.errors import DomainError
from erpauth.domain.operators import lock_operator
from erpauth.http.origin import origin_of
from erpauth.security.secrets import equal
from erpauth.services import Services
from erpauth.storage.models import Operator
from erpauth.web.sessions import cookie_name, load_session, reauthenticated

CSRF_FIELD = "csrf_token"
ADMIN_ONLY = "Only System Administrators can open this page."
CHANGED_MEANWHILE = (
    "Your password or account was changed elsewhere just now, so nothing was saved. "
    "Reload the page and try again."
)


@dataclass(frozen=True)
class Viewer:
    """The signed-in operator of a request, as read at its start."""

    session_id: str
    csrf_token: str
    operator_id: uuid.UUID
    email: str
    display_name: str
    is_system_admin: bool
    api_permission: bool
    company_id: uuid.UUID
    company_name: str
    account_code: str
    api_enabled: bool


class SignInRequired(Exception):
    """No live session: the browser is sent to the sign-in page."""

    def __init__(self, next_path: str | None, *, session_ended: bool) -> None:
        super().__init__("sign-in required")
        self.next_path = next_path
        self.session_ended = session_ended


class CsrfRefused(HTTPException):
    def __init__(self) -> None:
        super().__init__(
            403,
            "This form did not come from a page of this site, or it has expired. "
            "Go back, reload the page and try again.",
        )


def services_of(request: Request) -> Services:
    return request.app.state.services


def session_id_of(request: Request) -> str:
    return request.cookies.get(cookie_name(services_of(request).settings), "")


def current_viewer(request: Request) -> Viewer | None:
    """The signed-in operator, or None; an expired session is ended on the way."""
    services = services_of(request)
    session_id = session_id_of(request)
    # Read once per request: an error page shown after this knows who is signed in.
    request.state.viewer = None
    if not session_id:
        return None

    with services.database.session() as session:
        loaded = load_session(session, services.settings, session_id)
        if loaded is None:
            return None
        web_session, operator = loaded
        company = operator.company
        viewer = Viewer(
            session_id=session_id,
            csrf_token=web_session.csrf_token,
            operator_id=operator.id,
            email=operator.email,
            display_name=operator.display_name,
            is_system_admin=operator.is_system_admin,
            api_permission=operator.api_permission,
            company_id=company.id,
            company_name=company.name,
            account_code=company.account_code,
            api_enabled=company.api_enabled,
        )
    request.state.viewer = viewer
    return viewer


def signed_in(request: Request) -> Viewer:
    viewer = current_viewer(request)
    if viewer is None:
        next_path = request.url.path if request.method == "GET" else None
        raise SignInRequired(next_path, session_ended=bool(session_id_of(request)))
    return viewer


def reauthenticate(
    request: Request, session: Session, viewer: Viewer, operator: Operator, checked_hash: str
) -> Viewer:
    """The viewer under the new session id and CSRF token they move to, now that they typed
    their password again; the page's answer must set the new cookie (``set_session_cookie``).

    ``checked_hash`` is the password hash the typed password was checked against. A password
    change or deactivation committed meanwhile ended every session of the operator; moving to
    a new session then would bring one back, so DomainError is raised instead. The operator
    is locked until the caller commits, so a change that comes later ends the new session too.
    """
    operator = lock_operator(session, operator.id) or operator
    if operator.password_hash != checked_hash or not operator.is_active:
        raise DomainError(CHANGED_MEANWHILE)
    services = services_of(request)
    session_id, csrf_token = reauthenticated(
        session, services.settings, operator, origin_of(request), viewer.session_id
    )
    viewer = replace(viewer, session_id=session_id, csrf_token=csrf_token)
    request.state.viewer = viewer
    return viewer


def checked_form(
    request: Request,
    viewer: Annotated[Viewer, Depends(signed_in)],
    csrf_token: Annotated[str, Form()] = "",
) -> Viewer:
    """The viewer of a state-changing form whose CSRF token matches their session's."""
    if not equal(csrf_token, viewer.csrf_token):
        audit.log_event(
            "web.csrf",
            "refused",
            origin_of(request),
            company_id=viewer.company_id,
            operator_id=viewer.operator_id,
            detail={"path": request.url.path},
        )
        raise CsrfRefused()
    return viewer


def system_admin(viewer: Annotated[Viewer, Depends(signed_in)]) -> Viewer:
    if not viewer.is_system_admin:
        raise HTTPException(403, ADMIN_ONLY)
    return viewer


def admin_form(viewer: Annotated[Viewer, Depends(checked_form)]) -> Viewer:
    if not viewer.is_system_admin:
        raise HTTPException(403, ADMIN_ONLY)
    return viewer


SignedIn = Annotated[Viewer, Depends(signed_in)]
CheckedForm = Annotated[Viewer, Depends(checked_form)]
SystemAdmin = Annotated[Viewer, Depends(system_admin)]
AdminForm = Annotated[Viewer, Depends(admin_form)]
