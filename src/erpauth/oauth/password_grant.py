"""Resource owner password credentials grant (RFC 6749 §4.3)."""

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlalchemy import and_, bindparam, select
from sqlalchemy.orm import Session

from erpauth.abuse import SignInAttempt
from erpauth.domain import audit
from erpauth.domain.audit import Origin
from erpauth.domain.clients import ClientSecrets, compare_with_no_client, secret_matches
from erpauth.domain.operators import email_key, hold_writer_lock_on_sqlite
from erpauth.domain.refresh_tokens import issue_token_pair, new_family_id
from erpauth.domain.tokens import IssuedAccessToken
from erpauth.oauth.client_auth import ClientCredentials, refuse_client
from erpauth.oauth.errors import InvalidGrant, InvalidRequest, OAuthError
from erpauth.oauth.scope import parse_scope
from erpauth.security.secrets import SecretBox
from erpauth.services import Services
from erpauth.storage.models import ApiClient, Company, Operator

log = logging.getLogger("erpauth.oauth")

WRONG_CREDENTIALS = "the e-mail or password is wrong"
LICENSE_CLOSED = "API access is not enabled in this company's license"
NO_PERMISSION = "this operator does not have API permission; ask your System Administrator"
DEACTIVATED = "this operator's account is deactivated; ask your System Administrator"


@dataclass(frozen=True)
class Candidate:
    """What the first read learned; the password is checked before the second one."""

    client_id: str
    company_id: uuid.UUID
    operator_id: uuid.UUID | None
    password_hash: str | None
    rehash: bool  # the hash is of other argon2 parameters than the current ones

    @classmethod
    def of(cls, found: "CandidateRow", services: Services) -> "Candidate":
        password_hash = found.password_hash
        return cls(
            client_id=found.client_id,
            company_id=found.company_id,
            operator_id=found.operator_id,
            password_hash=password_hash,
            rehash=password_hash is not None and services.hasher.needs_rehash(password_hash),
        )


class CandidateRow(Protocol):
    """What a candidate is made of: a row of this grant's first read, or the fast path's."""

    client_id: str
    company_id: uuid.UUID
    operator_id: uuid.UUID | None
    password_hash: str | None


def password_grant(
    services: Services, credentials: ClientCredentials, form: dict[str, str], origin: Origin
) -> IssuedAccessToken:
    username, password, scope = read_password_form(form)
    candidate = _find_candidate(services, credentials, username, origin)
    if isinstance(candidate, OAuthError):
        raise candidate

    attempt = sign_in_attempt(username, origin, candidate)
    guard = services.abuse.sign_in
    counted = guard.check(attempt)
    # The slow part, on purpose, without holding a database connection.
    password_ok = guard.verify(attempt, candidate.password_hash, password)
    return finish_grant(services, attempt, candidate, password_ok, counted, password, scope, origin)


def read_password_form(form: dict[str, str]) -> tuple[str, str, str]:
    """The username, password and scope of the request; raises when one is missing or wrong."""
    username, password = form.get("username"), form.get("password")
    if not username or not password:
        raise InvalidRequest("the password grant needs username (the e-mail) and password")
    return username, password, parse_scope(form.get("scope"))


def sign_in_attempt(username: str, origin: Origin, candidate: Candidate) -> SignInAttempt:
    return SignInAttempt(
        username,
        origin,
        channel="token_endpoint",
        company_id=candidate.company_id,
        operator_id=candidate.operator_id,
        client_id=candidate.client_id,
    )


def finish_grant(
    services: Services,
    attempt: SignInAttempt,
    candidate: Candidate,
    password_ok: bool,
    counted: bool,
    password: str,
    scope: str,
    origin: Origin,
) -> IssuedAccessToken:
    """After the password check: issues or refuses (and records which), then counts it."""
    with services.database.session() as session:
        outcome = _issue(session, services, candidate, password_ok, password, scope, origin)
    services.abuse.sign_in.record(attempt, password_ok, counted)
    if isinstance(outcome, OAuthError):
        raise outcome
    return outcome


# Client, company and the operator with this e-mail in that company, in one statement: the
# grant's first step needs no transaction, since the second one reads all three again under
# the operator's row lock before anything is issued.
_CANDIDATE = (
    select(
        ApiClient.client_id,
        ApiClient.company_id,
        ApiClient.primary_secret_encrypted,
        ApiClient.secondary_secret_encrypted,
        Company.api_enabled,
        Operator.id.label("operator_id"),
        Operator.password_hash,
    )
    .join(Company, Company.id == ApiClient.company_id)
    .outerjoin(
        Operator,
        and_(
            Operator.email_key == bindparam("email_key"),
            # Another company's operator is, to this client, no operator at all.
            Operator.company_id == ApiClient.company_id,
        ),
    )
    .where(ApiClient.client_id == bindparam("client_id"))
)


def _find_candidate(
    services: Services, credentials: ClientCredentials, username: str, origin: Origin
) -> Candidate | OAuthError:
    with services.database.autocommit.connect() as connection:
        found = connection.execute(
            _CANDIDATE,
            {"client_id": credentials.client_id, "email_key": email_key(username)},
        ).first()

    if client_refused(services.box, found, credentials.client_secret):
        company_id = None if found is None else found.company_id
        return refuse_wrong_client(services, credentials, origin, company_id)
    assert found is not None

    if not found.api_enabled:
        with services.database.session() as session:
            audit.record(
                session,
                "token.issue",
                "refused",
                origin,
                company_id=found.company_id,
                client_id=found.client_id,
                reason="license_api_disabled",
            )
        return InvalidGrant(LICENSE_CLOSED)

    return Candidate.of(found, services)


def client_refused(box: SecretBox, found: ClientSecrets | None, client_secret: str) -> bool:
    """Whether the first read refuses the client: no client with that ID (``found`` is None)
    or a wrong secret. An unknown ID costs the comparisons a wrong secret costs, so the time
    taken does not tell whether the ID exists. This grant and its fast path on PostgreSQL
    (password_fast_path) both decide here, on a row of their own first read."""
    if found is None:
        compare_with_no_client(box, client_secret)
        return True
    return not secret_matches(box, found, client_secret)


def refuse_wrong_client(
    services: Services,
    credentials: ClientCredentials,
    origin: Origin,
    company_id: uuid.UUID | None,
) -> OAuthError:
    """Records the refused client authentication, in a session of its own, in the trail of the
    company whose client ID was named (if any), and returns the invalid_client error; for this
    grant and its fast path alike, so both answer, record and log the same."""
    with services.database.session() as session:
        return refuse_client(session, credentials, "token.issue", origin, company_id)


def _issue(
    session: Session,
    services: Services,
    candidate: Candidate,
    password_ok: bool,
    password: str,
    scope: str,
    origin: Origin,
) -> IssuedAccessToken | OAuthError:
    company, client, operator = _current_state(session, services, candidate)
    if operator is not None and operator.password_hash != candidate.password_hash:
        # Changed while the old password was checked: a token for it would outlive the change.
        password_ok = False
    ids = {
        "company_id": candidate.company_id,
        "client_id": candidate.client_id,
        "operator_id": candidate.operator_id,
    }

    error = _refusal(company, client, operator, password_ok)
    if error is not None:
        audit.record(session, "token.issue", "refused", origin, reason=error[0], **ids)
        return InvalidGrant(error[1])
    assert company is not None and client is not None and operator is not None

    if candidate.rehash:
        operator.password_hash = services.hasher.hash(password)

    family_id = new_family_id()
    issued = issue_token_pair(
        session,
        services.tokens,
        operator,
        company,
        client,
        source="token_endpoint",
        scope=scope,
        origin=origin,
        family_id=family_id,
        refresh_ttl=timedelta(hours=services.settings.refresh_token_ttl_hours),
    )
    audit.record(
        session, "token.issue", "success", origin, jti=issued.jti, family_id=family_id, **ids
    )
    return issued


def _current_state(
    session: Session, services: Services, candidate: Candidate
) -> tuple[Company | None, ApiClient | None, Operator | None]:
    """Company, client and operator as they are now, in one query, the operator's row locked.

    The lock lasts until this transaction ends, so a password change, deactivation or loss of
    API permission cannot slip between this read and the tokens' insert: it either commits
    first (and we see it) or waits for our commit (and its revocation then sees our tokens).
    A shared lock is enough for that, since each of those changes updates the row, and it
    lets concurrent grants of one operator run side by side. A grant that will rehash the
    password updates the row itself, so it takes the exclusive lock from the start: two
    shared holders that both wanted to update would deadlock.
    """
    if candidate.operator_id is None:
        found = session.execute(
            select(Company, ApiClient)
            .join(ApiClient, ApiClient.company_id == Company.id)
            .where(Company.id == candidate.company_id)
        ).first()
        return (found.Company, found.ApiClient, None) if found else (None, None, None)

    hold_writer_lock_on_sqlite(session, candidate.operator_id)  # where FOR SHARE holds nothing

    found = session.execute(
        select(Operator, Company, ApiClient)
        .join(Company, Company.id == Operator.company_id)
        .join(ApiClient, ApiClient.company_id == Company.id)
        .where(Operator.id == candidate.operator_id, Company.id == candidate.company_id)
        .with_for_update(read=not candidate.rehash, of=Operator)
    ).first()
    if found is not None:
        return found.Company, found.ApiClient, found.Operator

    # Something was deleted meanwhile; only the reason given in the log depends on what.
    company = session.get(Company, candidate.company_id)
    return company, company.api_client if company else None, None


def _refusal(
    company: Company | None, client: ApiClient | None, operator: Operator | None, password_ok: bool
) -> tuple[str, str] | None:
    """Why no token may be issued, as (reason for the log, description for the caller)."""
    if company is None or client is None:
        return "client_gone", WRONG_CREDENTIALS
    if operator is None or not password_ok:
        return "wrong_credentials", WRONG_CREDENTIALS
    # From here on the caller has proven the password, so telling more reveals nothing.
    if not company.api_enabled:
        return "license_api_disabled", LICENSE_CLOSED
    if not operator.is_active:
        return "operator_inactive", DEACTIVATED
    if not operator.api_permission:
        return "no_api_permission", NO_PERMISSION
    return None
