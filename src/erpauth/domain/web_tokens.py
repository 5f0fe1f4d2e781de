"""Access tokens operators make for themselves in the web application (User Settings → API).

An operator has at most one live web-made token. Making a new one revokes the one before in
the same transaction, so an old token stops working the moment its owner regenerates it.
"""

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from erpauth.domain.audit import Origin
from erpauth.domain.errors import DomainError
from erpauth.domain.operators import lock_operator
from erpauth.domain.tokens import IssuedAccessToken, TokenService, revoke_operator_tokens
from erpauth.storage.models import AccessToken, Company, Operator

WEB_SOURCE = "web"

LICENSE_CLOSED = (
    "Your company's license does not include API access, so access tokens cannot be made. "
    "Your System Administrator can have API access added to the license."
)
NO_PERMISSION = (
    "You do not have API permission, so you cannot make an access token. "
    "Your System Administrator can enable it for you on the Users page."
)


def refusal(operator: Operator, company: Company) -> str | None:
    """Why the operator may not hold a web-made token, in words for them; None when they may."""
    if not company.api_enabled:
        return LICENSE_CLOSED
    if not operator.is_active or not operator.api_permission:
        return NO_PERMISSION
    return None


def current_web_token(session: Session, operator_id: uuid.UUID) -> AccessToken | None:
    """The operator's newest web-made token that is not revoked (it may have expired)."""
    return session.scalar(
        select(AccessToken)
        .where(
            AccessToken.operator_id == operator_id,
            AccessToken.source == WEB_SOURCE,
            AccessToken.revoked_at.is_(None),
        )
        .order_by(AccessToken.issued_at.desc())
        .limit(1)
    )


def replace_web_token(
    session: Session, tokens: TokenService, operator: Operator, origin: Origin
) -> tuple[IssuedAccessToken, int]:
    """Revokes the operator's web-made tokens and issues a new one; returns it and the count."""
    # Two clicks racing must not leave two live tokens: the row lock queues the second. The
    # operator is read again under it: a deactivation or a permission taken away that
    # committed since it was loaded revoked their tokens, and must not miss this one.
    if lock_operator(session, operator.id) is None:  # refreshes ``operator`` in place
        raise DomainError("this operator no longer exists")
    company = operator.company
    problem = refusal(operator, company)
    if problem is not None:
        raise DomainError(problem)

    revoked = revoke_operator_tokens(session, operator.id, "web_regenerated", source=WEB_SOURCE)
    issued = tokens.issue(
        session,
        operator,
        company,
        company.api_client,
        source=WEB_SOURCE,
        ip_address=origin.ip_address,
        user_agent=origin.user_agent,
    )
    return issued, revoked


def delete_web_token(session: Session, operator_id: uuid.UUID) -> int:
    """Revokes the operator's web-made tokens; tokens from the token endpoint stay."""
    return revoke_operator_tokens(session, operator_id, "web_deleted", source=WEB_SOURCE)
