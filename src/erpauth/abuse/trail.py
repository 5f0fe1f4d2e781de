"""Audit events that repeat (rate-limit hits, refusals during a lockout) without flooding.

Every occurrence gets a log line; the audit table gets the first one per key and period.
"""

import logging
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from erpauth.abuse.keys import key_part
from erpauth.abuse.storage import Backend, CounterStore
from erpauth.domain import audit
from erpauth.domain.audit import Origin
from erpauth.storage.db import Database
from erpauth.storage.models import ApiClient

log = logging.getLogger("erpauth.abuse")


class RepeatAudit:
    """Logs each occurrence of an event, and audits it at most once per period and key."""

    def __init__(self, store: CounterStore, database: Database, period_seconds: int) -> None:
        self._store = store
        self._database = database
        self._period = period_seconds

    def record(
        self,
        kind: str,
        outcome: str,
        origin: Origin,
        *,
        key: str,
        company_id: uuid.UUID | None = None,
        operator_id: uuid.UUID | None = None,
        client_id: str | None = None,
        **detail: Any,
    ) -> None:
        if not self._first_in_period(f"audit/{kind}/{key_part(key)}"):
            audit.log_event(kind, outcome, origin, company_id, None, operator_id, client_id, detail)
            return
        try:
            with self._database.session() as session:
                if client_id is not None:
                    # A client ID as presented may be made up; only a real one is kept as such.
                    found = session.execute(
                        select(ApiClient.client_id, ApiClient.company_id).where(
                            ApiClient.client_id == client_id
                        )
                    ).first()
                    if found is None:
                        detail["attempted_client_id"] = client_id[:64]
                        client_id = None
                    elif company_id is None:
                        company_id = found.company_id
                audit.record(
                    session,
                    kind,
                    outcome,
                    origin,
                    company_id=company_id,
                    operator_id=operator_id,
                    client_id=client_id,
                    **detail,
                )
        except SQLAlchemyError as exc:
            log.error(
                "could not write the audit event %s: %s",
                kind,
                type(exc).__name__,
                extra={"fields": {"event": kind, "outcome": outcome}},
            )

    def _first_in_period(self, key: str) -> bool:
        def count(backend: Backend) -> int:
            return backend.storage.incr(key, self._period)

        return self._store.run(count, fail_open=False) == 1
