"""Users: the company's operators, who may sign in and who may use the API (administrators)."""

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from erpauth.domain import audit, operators
from erpauth.domain.errors import Conflict, DomainError, NotFound
from erpauth.domain.operators import (
    create_and_audit_operator,
    find_operator,
    password_version,
    set_active,
    set_api_permission,
)
from erpauth.domain.sessions import company_operator, count_sessions
from erpauth.http.origin import origin_of
from erpauth.security.secrets import new_password
from erpauth.storage.models import Company, Operator
from erpauth.web.access import AdminForm, SystemAdmin, Viewer, services_of
from erpauth.web.render import page, redirect_with_notice, sentence

router = APIRouter(include_in_schema=False)

USERS = "/users"
IN_USE = "This e-mail address is already in use. Choose another one."


@router.get(USERS)
def users_page(request: Request, viewer: SystemAdmin) -> Response:
    return _users_page(request, viewer)


@router.post(USERS)
def create(
    request: Request,
    viewer: AdminForm,
    email: Annotated[str, Form()] = "",
    display_name: Annotated[str, Form()] = "",
    is_system_admin: Annotated[str, Form()] = "",
    api_permission: Annotated[str, Form()] = "",
) -> Response:
    """Creates an operator with a generated password, shown once.

    Sending the same e-mail again (a double click, a reload) creates nothing more: the answer
    says the operator exists, whether found first or lost in a race on the unique e-mail.
    """
    services = services_of(request)
    typed = {
        "email": email.strip(),
        "display_name": display_name.strip(),
        "is_system_admin": bool(is_system_admin),
        "api_permission": bool(api_permission),
    }
    if not typed["email"]:
        problem = "Enter the new operator's e-mail address."
        return _users_page(request, viewer, create_form=typed, create_error=problem, status=400)
    password = new_password()

    try:
        with services.database.session() as session:
            created = _create_unless_exists(session, request, viewer, typed, password)
    except IntegrityError:
        created = None  # a concurrent request created the same e-mail first
    except DomainError as exc:
        return _users_page(
            request, viewer, create_form=typed, create_error=sentence(str(exc)), status=400
        )
    if created is not None:
        return _users_page(request, viewer, password_for={"email": created, "password": password})

    with services.database.session() as session:
        existing = find_operator(session, typed["email"])
        ours = existing is not None and existing.company_id == viewer.company_id
    if ours:
        return _users_page(request, viewer, exists=typed["email"])
    return _users_page(request, viewer, create_form=typed, create_error=IN_USE, status=409)


@router.post(USERS + "/{operator_id}/active")
def change_active(
    request: Request, viewer: AdminForm, operator_id: str, value: Annotated[str, Form()] = ""
) -> Response:
    active = _on_off(value)
    services = services_of(request)
    with services.database.session() as session:
        operator = _operator_of_company(session, viewer, operator_id)
        if operator.id == viewer.operator_id and not active:
            raise DomainError("you cannot deactivate your own account")
        set_active(session, operator, active)
        kind = "operator.activate" if active else "operator.deactivate"
        _record_change(session, request, viewer, operator, kind)
    notice = f"operator-{'activated' if active else 'deactivated'}"
    return redirect_with_notice(request, USERS, notice)


@router.post(USERS + "/{operator_id}/api-permission")
def change_api_permission(
    request: Request, viewer: AdminForm, operator_id: str, value: Annotated[str, Form()] = ""
) -> Response:
    allowed = _on_off(value)
    services = services_of(request)
    with services.database.session() as session:
        operator = _operator_of_company(session, viewer, operator_id)
        set_api_permission(session, operator, allowed)
        kind = "permission.grant" if allowed else "permission.revoke"
        _record_change(session, request, viewer, operator, kind)
    return redirect_with_notice(request, USERS, f"api-{'granted' if allowed else 'revoked'}")


@router.post(USERS + "/{operator_id}/password")
def force_password_change(
    request: Request,
    viewer: AdminForm,
    operator_id: str,
    password_version: Annotated[str, Form()] = "",
) -> Response:
    """Gives the operator a generated password, shown once; their tokens and sessions end.

    Only if the operator still has the password the administrator's page was made with: of
    two changes at once (two administrators, a double click) one wins, and the other is told
    so instead of being shown a password that is not the one stored.
    """
    services = services_of(request)
    try:
        with services.database.session() as session:
            operator = _operator_of_company(session, viewer, operator_id)
            if operator.id == viewer.operator_id:
                raise DomainError("change your own password in User Settings")
            password = operators.force_password_change(
                session, services.hasher, operator, seen_version=password_version[:64]
            )
            audit.record(
                session,
                "password.change",
                "success",
                origin_of(request),
                company_id=viewer.company_id,
                actor_id=viewer.operator_id,
                operator_id=operator.id,
                forced=True,
                via="web",
            )
            email = operator.email
    except Conflict as exc:
        return _users_page(request, viewer, conflict=sentence(str(exc)), status=409)
    forced = {"email": email, "password": password, "forced": True}
    return _users_page(request, viewer, password_for=forced)


def _create_unless_exists(
    session: Session, request: Request, viewer: Viewer, typed: dict[str, Any], password: str
) -> str | None:
    """The new operator's e-mail, or None when one with that e-mail exists already."""
    if find_operator(session, typed["email"]) is not None:
        return None
    operator = create_and_audit_operator(
        session,
        services_of(request).hasher,
        session.get(Company, viewer.company_id),
        origin_of(request),
        email=typed["email"],
        password=password,
        display_name=typed["display_name"] or None,
        is_system_admin=typed["is_system_admin"],
        api_permission=typed["api_permission"],
        actor_id=viewer.operator_id,
        detail={
            "system_admin": typed["is_system_admin"],
            "api_permission": typed["api_permission"],
        },
    )
    return operator.email


def _users_page(
    request: Request,
    viewer: Viewer,
    *,
    password_for: dict[str, Any] | None = None,
    exists: str | None = None,
    create_form: dict[str, Any] | None = None,
    create_error: str | None = None,
    conflict: str | None = None,
    status: int = 200,
) -> Response:
    services = services_of(request)
    with services.database.session() as session:
        operators = session.scalars(
            select(Operator)
            .where(Operator.company_id == viewer.company_id)
            .order_by(Operator.display_name, Operator.email_key)
        ).all()
        # Counted as the Tokens page lists them, so the two always agree.
        token_counts = count_sessions(session, viewer.company_id)
        versions = {operator.id: password_version(operator) for operator in operators}
    return page(
        request,
        "users.html",
        viewer=viewer,
        status=status,
        # A generated password is shown once: reloading fetches the page, never makes another.
        address=USERS,
        active="users",
        operators=operators,
        token_counts=token_counts,
        password_versions=versions,
        password_for=password_for,
        conflict=conflict,
        exists=exists,
        create_form=create_form or {},
        create_error=create_error,
    )


def _operator_of_company(session: Session, viewer: Viewer, operator_id: str) -> Operator:
    """The operator, if they belong to the administrator's company; others do not exist here."""
    try:
        return company_operator(session, viewer.company_id, operator_id)
    except NotFound as exc:
        raise NotFound("there is no such operator in your company") from exc


def _on_off(value: str) -> bool:
    if value not in ("on", "off"):
        raise DomainError("the request must say on or off")
    return value == "on"


def _record_change(
    session: Session, request: Request, viewer: Viewer, operator: Operator, kind: str
) -> None:
    """The administrator's change to an operator, in the audit trail."""
    audit.record(
        session,
        kind,
        "success",
        origin_of(request),
        company_id=viewer.company_id,
        actor_id=viewer.operator_id,
        operator_id=operator.id,
    )
