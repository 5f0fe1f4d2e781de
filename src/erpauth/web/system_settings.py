"""System Settings: the company, and its API client, secrets and token policy (administrators)."""

from typing import Annotated, Any, get_args

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from erpauth.abuse import Saturated, Throttled
from erpauth.domain import audit
from erpauth.domain.clients import SecretSlot, regenerate_secret, reveal_secret
from erpauth.domain.companies import check_token_policy, set_token_policy
from erpauth.domain.errors import DomainError, NotFound
from erpauth.http.origin import origin_of
from erpauth.storage.models import ApiClient, Company, Operator
from erpauth.web.access import AdminForm, SystemAdmin, Viewer, reauthenticate, services_of
from erpauth.web.defences import check_password_again, held_back
from erpauth.web.render import page, redirect, redirect_with_notice, sentence
from erpauth.web.sessions import set_session_cookie

router = APIRouter(include_in_schema=False)

SYSTEM_SETTINGS = "/settings/system"
GENERAL_TAB = SYSTEM_SETTINGS + "/general"
API_TAB = SYSTEM_SETTINGS + "/api"
SLOTS: tuple[SecretSlot, ...] = get_args(SecretSlot)
WRONG_PASSWORD = "The password is wrong."


@router.get(SYSTEM_SETTINGS)
def system_settings(viewer: SystemAdmin) -> Response:
    """System Settings opens on its first tab, which has an address of its own."""
    return redirect(GENERAL_TAB)


@router.get(GENERAL_TAB)
def general_tab(request: Request, viewer: SystemAdmin) -> Response:
    services = services_of(request)
    with services.database.session() as session:
        company = session.get(Company, viewer.company_id)
        created_at = company.created_at
    return page(
        request,
        "system_general.html",
        viewer=viewer,
        address=GENERAL_TAB,
        active="system-settings",
        tab="general",
        created_at=created_at,
    )


@router.get(API_TAB)
def api_tab(request: Request, viewer: SystemAdmin) -> Response:
    return _api_tab(request, viewer)


@router.post(API_TAB + "/policy")
def save_policy(
    request: Request,
    viewer: AdminForm,
    token_expiry_hours: Annotated[str, Form()] = "",
    call_limit_per_minute: Annotated[str, Form()] = "",
) -> Response:
    typed = {
        "token_expiry_hours": token_expiry_hours,
        "call_limit_per_minute": call_limit_per_minute,
    }
    expiry = _whole_number(token_expiry_hours)
    limit = _whole_number(call_limit_per_minute)
    problem = _policy_problem(expiry, limit)
    if problem is not None:
        return _api_tab(request, viewer, policy_form=typed, policy_error=problem, status=400)
    assert expiry is not None and limit is not None

    services = services_of(request)
    with services.database.session() as session:
        company = session.get(Company, viewer.company_id)
        before = {
            "token_expiry_hours": company.token_expiry_hours,
            "call_limit_per_minute": company.call_limit_per_minute,
        }
        set_token_policy(session, company, token_expiry_hours=expiry, call_limit_per_minute=limit)
        audit.record(
            session,
            "policy.change",
            "success",
            origin_of(request),
            company_id=company.id,
            actor_id=viewer.operator_id,
            token_expiry_hours=expiry,
            call_limit_per_minute=limit,
            before=before,
        )
    return redirect_with_notice(request, API_TAB, "policy-saved")


@router.post(API_TAB + "/secrets/{slot}/show")
def show_secret(
    request: Request, viewer: AdminForm, slot: str, password: Annotated[str, Form()] = ""
) -> Response:
    checked = _slot(slot)
    services = services_of(request)
    origin = origin_of(request)

    with services.database.session() as session:
        password_hash = session.get(Operator, viewer.operator_id).password_hash

    def refused() -> None:
        with services.database.session() as session:
            _record_show(session, request, viewer, checked, "refused")

    try:
        password_ok = check_password_again(
            services, viewer, origin, password_hash, password, on_wrong=refused
        )
    except (Throttled, Saturated) as exc:
        refused = held_back(exc)
        response = _api_tab(
            request, viewer, show_error=(checked, refused.message), status=refused.status
        )
        response.headers.update(refused.headers)
        return response
    if not password_ok:
        return _api_tab(request, viewer, show_error=(checked, WRONG_PASSWORD), status=400)

    try:
        with services.database.session() as session:
            operator = session.get(Operator, viewer.operator_id)
            viewer = reauthenticate(request, session, viewer, operator, password_hash)
            client = _record_show(session, request, viewer, checked, "success")
            secret = reveal_secret(services.box, client, checked)
    except DomainError as exc:
        return _api_tab(request, viewer, show_error=(checked, str(exc)), status=409)
    response = _api_tab(request, viewer, revealed={checked: secret})
    set_session_cookie(response, services.settings, viewer.session_id)
    return response


@router.post(API_TAB + "/secrets/{slot}/regenerate")
def regenerate(request: Request, viewer: AdminForm, slot: str) -> Response:
    checked = _slot(slot)
    services = services_of(request)
    with services.database.session() as session:
        client = session.get(Company, viewer.company_id).api_client
        regenerate_secret(session, services.box, client, checked)
        audit.record(
            session,
            "secret.regenerate",
            "success",
            origin_of(request),
            company_id=viewer.company_id,
            actor_id=viewer.operator_id,
            client_id=client.client_id,
            slot=checked,
        )
    return redirect_with_notice(request, API_TAB, f"{checked}-regenerated")


def _record_show(
    session: Session, request: Request, viewer: Viewer, slot: SecretSlot, outcome: str
) -> ApiClient:
    client = session.get(Company, viewer.company_id).api_client
    audit.record(
        session,
        "secret.show",
        outcome,
        origin_of(request),
        company_id=viewer.company_id,
        actor_id=viewer.operator_id,
        client_id=client.client_id,
        slot=slot,
    )
    return client


def _api_tab(
    request: Request,
    viewer: Viewer,
    *,
    revealed: dict[str, str] | None = None,
    show_error: tuple[str, str] | None = None,
    policy_form: dict[str, str] | None = None,
    policy_error: tuple[str, str] | None = None,
    status: int = 200,
) -> Response:
    services = services_of(request)
    with services.database.session() as session:
        company = session.get(Company, viewer.company_id)
        client = company.api_client
        view: dict[str, Any] = {
            "api_enabled": company.api_enabled,
            "client_id": client.client_id,
            "provisioned_at": client.provisioned_at,
            "secrets": [
                {
                    "slot": "primary",
                    "label": "Primary client secret",
                    "updated_at": client.primary_secret_updated_at,
                },
                {
                    "slot": "secondary",
                    "label": "Secondary client secret",
                    "updated_at": client.secondary_secret_updated_at,
                },
            ],
            "policy": policy_form
            or {
                "token_expiry_hours": str(company.token_expiry_hours),
                "call_limit_per_minute": str(company.call_limit_per_minute),
            },
        }
    return page(
        request,
        "system_api.html",
        viewer=viewer,
        status=status,
        address=API_TAB,
        active="system-settings",
        tab="api",
        revealed=revealed or {},
        show_error=show_error,
        policy_error=policy_error,
        **view,
    )


def _policy_problem(expiry: int | None, limit: int | None) -> tuple[str, str] | None:
    """The field at fault and what is wrong with it, or None when both values may be saved."""
    if expiry is None:
        return "token_expiry_hours", "Token expiry must be a whole number of hours, 0 or more."
    if limit is None:
        return "call_limit_per_minute", "Call limit must be a whole number of calls per minute."
    for field, values in [
        ("token_expiry_hours", (expiry, 1)),
        ("call_limit_per_minute", (0, limit)),
    ]:
        try:
            check_token_policy(*values)
        except DomainError as exc:
            return field, sentence(str(exc))
    return None


def _whole_number(text: str) -> int | None:
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        return None
    return int(text)


def _slot(slot: str) -> SecretSlot:
    if slot not in SLOTS:
        raise NotFound("there is no such client secret")
    return slot  # type: ignore[return-value]
