"""Companies, their licenses and token policy."""

import re
import uuid
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from erpauth.domain.errors import Conflict, DomainError, NotFound
from erpauth.security.secrets import SecretBox, new_client_secret
from erpauth.storage.db import hold_writer_lock_on_sqlite
from erpauth.storage.models import ApiClient, Company

MAX_TOKEN_EXPIRY_HOURS = 24 * 366
MAX_CALL_LIMIT = 1_000_000
# \Z, not $: "$" also matches before a final newline, which would let "acme\n" be a second
# company beside "ACME".
ACCOUNT_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def create_company(
    session: Session,
    box: SecretBox,
    *,
    name: str,
    account_code: str,
    api_enabled: bool = False,
    token_expiry_hours: int = 24,
    call_limit_per_minute: int = 200,
) -> Company:
    """Creates a company with its API client (a fresh client ID and two secrets).

    An account code that is taken is a Conflict, also when another writer commits it between
    the check here and the insert.
    """
    name = name.strip()
    if not name or len(name) > 200:
        raise DomainError("the company name must be 1 to 200 characters")
    if not ACCOUNT_CODE.match(account_code):
        raise DomainError("the account code must be 1 to 64 letters, digits, '.', '_' or '-'")
    key = account_code_key(account_code)
    _hold_writer_lock_on_sqlite(session, key)
    _refuse_taken_code(session, key, account_code)
    check_token_policy(token_expiry_hours, call_limit_per_minute)

    now = datetime.now(UTC)
    company = Company(
        name=name,
        account_code=account_code,
        account_code_key=key,
        api_enabled=api_enabled,
        token_expiry_hours=token_expiry_hours,
        call_limit_per_minute=call_limit_per_minute,
        created_at=now,
        updated_at=now,
    )
    company.api_client = ApiClient(
        client_id=str(uuid.uuid4()),
        primary_secret_encrypted=box.encrypt(new_client_secret()),
        primary_secret_updated_at=now,
        secondary_secret_encrypted=box.encrypt(new_client_secret()),
        secondary_secret_updated_at=now,
        provisioned_at=now,
    )
    try:
        # PostgreSQL: a writer that committed the code since the check makes the insert fail.
        # Rolling back to the savepoint keeps the transaction usable to say who has the code.
        with session.begin_nested():
            session.add(company)
            session.flush()
    except IntegrityError:
        _refuse_taken_code(session, key, account_code)
        raise  # some other constraint
    return company


def _hold_writer_lock_on_sqlite(session: Session, key: str) -> None:
    """On SQLite, the writer lock before the account code is checked, so that no other writer
    can commit the code before the insert. It also makes pysqlite begin the transaction: the
    savepoint in create_company would else be the outermost, and releasing it would commit the
    company apart from what the caller writes with it. The UPDATE matches at most the company
    that has the code already, and changes nothing. PostgreSQL needs neither."""
    no_op = update(Company).where(Company.account_code_key == key)
    hold_writer_lock_on_sqlite(session, no_op.values(account_code_key=Company.account_code_key))


def _refuse_taken_code(session: Session, key: str, typed: str) -> None:
    existing = session.scalar(select(Company.account_code).where(Company.account_code_key == key))
    if existing is not None:
        raise Conflict(code_taken(existing, typed))


def check_token_policy(token_expiry_hours: int, call_limit_per_minute: int) -> None:
    if not 0 <= token_expiry_hours <= MAX_TOKEN_EXPIRY_HOURS:
        raise DomainError(
            f"token expiry must be 0 (never expires) to {MAX_TOKEN_EXPIRY_HOURS} hours"
        )
    if not 1 <= call_limit_per_minute <= MAX_CALL_LIMIT:
        raise DomainError(f"the call limit must be 1 to {MAX_CALL_LIMIT} calls per minute")


def code_taken(existing: str, typed: str) -> str:
    """Why a new company cannot have the code typed: named as the company that has it stores
    it. Both match ACCOUNT_CODE, so neither needs quoting."""
    message = f"a company with account code {existing} exists already"
    if existing != typed:
        message += f"; account codes are matched whatever their case, so {typed} is the same code"
    return message


def account_code_key(account_code: str) -> str:
    """The account code as it is looked up: ``acme`` and ``ACME`` are one company."""
    return account_code.upper()


def get_company(session: Session, account_code: str) -> Company:
    """The company, whatever the case the account code is typed in."""
    company = None
    if ACCOUNT_CODE.match(account_code):  # anything else is no company's (a NUL is not stored)
        key = account_code_key(account_code)
        company = session.scalar(select(Company).where(Company.account_code_key == key))
    if company is None:
        raise NotFound(f"no company with account code {account_code!r}")
    return company


def set_api_enabled(session: Session, company: Company, enabled: bool) -> None:
    """Opens or closes the API in the company's license; closing it stops every token at once."""
    company.api_enabled = enabled
    session.flush()


def set_token_policy(
    session: Session, company: Company, *, token_expiry_hours: int, call_limit_per_minute: int
) -> None:
    check_token_policy(token_expiry_hours, call_limit_per_minute)
    company.token_expiry_hours = token_expiry_hours
    company.call_limit_per_minute = call_limit_per_minute
    session.flush()
