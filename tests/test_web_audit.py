"""Audit trail page: System Administrators read their company's security events."""

import html
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

import erpauth
from erpauth.domain import audit
from erpauth.domain.audit import Origin
from erpauth.storage.models import AuditEvent
from erpauth.web.audit_trail import REASONS, reason_label
from tests.support import LiveServer, Tenant
from tests.web_support import Browser

AUDIT = "/audit"


def kinds_on(page: str) -> list[str]:
    return re.findall(r'<tr data-kind="([^"]+)"', page)


def events_table(page: str) -> str:
    found = re.search(r'<table class="table table-events".*?</table>', page, re.S)
    return found.group(0) if found else ""


def steps_on(page: str) -> list[int]:
    return [int(step) for step in re.findall(r"<dd>step-([0-9]{4})</dd>", events_table(page))]


def link(page: str, rel: str) -> str | None:
    found = re.search(rf'href="([^"]+)" rel="{rel}"', page)
    return html.unescape(found.group(1)) if found else None


def long_history(
    live: LiveServer,
    tenant: Tenant,
    count: int,
    *,
    newest: datetime,
    kind: str = "policy.change",
    operator_id: uuid.UUID | None = None,
) -> None:
    """``count`` events, step 0 the newest, one second apart but three at a time sharing
    their time to the microsecond, so that pages also end between events of the same time.
    Written oldest first: among events of the same time, the newer step has the higher id."""
    rows = [
        {
            "occurred_at": newest - timedelta(seconds=step // 3),
            "kind": kind,
            "outcome": "success",
            "company_id": tenant.company_id,
            "operator_id": operator_id,
            "ip_address": "192.0.2.1",
            "detail": {"step": f"step-{step:04}"},
        }
        for step in reversed(range(count))
    ]
    with live.services.database.session() as session:
        session.execute(insert(AuditEvent), rows)


def walk(browser: Browser, start: str, rel: str) -> tuple[list[list[int]], list[str]]:
    """Follows the "Older" (rel=next) or "Newer" (rel=prev) links from a page to the end: the
    steps on each page, and the addresses visited."""
    pages: list[list[int]] = []
    addresses: list[str] = []
    address: str | None = start
    while address is not None:
        assert len(pages) < 100, "the links go round in circles"
        response = browser.get(address)
        assert response.status_code == 200, response.text
        pages.append(steps_on(response.text))
        addresses.append(address)
        address = link(response.text, rel)
    return pages, addresses


def busy_day(live: LiveServer, tenant: Tenant) -> None:
    """The admin and the operator sign in; the operator makes a token."""
    with Browser(live) as admin, Browser(live) as operator:
        admin.sign_in_as(tenant.admin)
        operator.sign_in_as(tenant.operator).generate_token(tenant.operator)


def test_audit_trail_shows_the_companys_events_newest_first(live: LiveServer) -> None:
    tenant = live.tenant()
    busy_day(live, tenant)
    with Browser(live) as browser:
        response = browser.sign_in_as(tenant.admin).get(AUDIT)

    assert response.status_code == 200
    assert kinds_on(response.text)[:4] == ["web.signin", "token.issue", "web.signin", "web.signin"]
    table = events_table(response.text)
    assert "Access token issued" in table
    assert tenant.operator.email in table
    assert "127.0.0.1" in table


def test_audit_trail_filters_by_kind(live: LiveServer) -> None:
    tenant = live.tenant()
    busy_day(live, tenant)
    with Browser(live) as browser:
        page = browser.sign_in_as(tenant.admin).get(f"{AUDIT}?kind=token.issue").text

    assert kinds_on(page) == ["token.issue"]
    assert '<option value="token.issue" selected>' in page


def test_audit_trail_filters_by_operator(live: LiveServer) -> None:
    tenant = live.tenant()
    busy_day(live, tenant)
    with Browser(live) as browser:
        page = browser.sign_in_as(tenant.admin).get(f"{AUDIT}?operator={tenant.operator.id}").text

    table = events_table(page)
    assert sorted(kinds_on(page)) == ["token.issue", "web.signin"]
    assert tenant.operator.email in table
    assert tenant.admin.email not in table


def test_audit_trail_filters_by_time_range(live: LiveServer) -> None:
    tenant = live.tenant()
    busy_day(live, tenant)
    today = datetime.now(UTC).date()
    yesterday, tomorrow = today - timedelta(days=1), today + timedelta(days=1)
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        within = browser.get(f"{AUDIT}?since={today}&until={today}").text
        before = browser.get(f"{AUDIT}?until={yesterday}").text
        after = browser.get(f"{AUDIT}?since={tomorrow}T00:00").text
        widest = browser.get(f"{AUDIT}?since=0001-01-01&until=9999-12-31T23:59:59")

    assert "token.issue" in kinds_on(within)
    assert widest.status_code == 200
    assert "token.issue" in kinds_on(widest.text)
    assert kinds_on(before) == kinds_on(after) == []
    assert "No events match these filters." in after
    assert f'value="{tomorrow}T00:00"' in after, "the filter is shown as typed"


def test_audit_trail_refuses_a_malformed_time_or_a_range_that_ends_before_it_starts(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        malformed = browser.get(f"{AUDIT}?since=31/12/2024")
        backwards = browser.get(f"{AUDIT}?since=2025-03-02&until=2025-03-01")

    assert malformed.status_code == backwards.status_code == 400
    assert "Enter the start as a date, or a date and time." in malformed.text
    assert "The end must come after the start." in backwards.text
    assert kinds_on(malformed.text) == []


def test_audit_trail_pages_through_events_newest_first(live: LiveServer) -> None:
    tenant = live.tenant()
    with live.services.database.session() as session:
        for step in range(60):
            audit.record(
                session,
                "policy.change",
                "success",
                Origin(ip_address="192.0.2.1"),
                company_id=tenant.company_id,
                step=f"step-{step:03}",
            )
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        first = browser.get(f"{AUDIT}?kind=policy.change").text
        older = re.search(r'href="([^"]+)" rel="next"', first)
        assert older, "a link to older events"
        second = browser.get(older.group(1).replace("&amp;", "&")).text

    assert len(kinds_on(first)) == 50
    assert first.index("step-059") < first.index("step-010")
    assert "step-009" not in first
    assert len(kinds_on(second)) == 10
    assert "step-009" in second and "step-000" in second and "step-010" not in second
    assert 'rel="prev"' in second and 'rel="next"' not in second


def test_audit_trail_never_shows_another_companys_events(live: LiveServer) -> None:
    ours, theirs = live.tenant(), live.tenant()
    busy_day(live, theirs)
    with Browser(live) as browser:
        browser.sign_in_as(ours.admin)
        page = browser.get(AUDIT).text
        theirs_by_filter = browser.get(f"{AUDIT}?operator={theirs.operator.id}")

    for operator in theirs.operators.values():
        assert operator.email not in page
        assert str(operator.id) not in page
    assert kinds_on(page) == ["web.signin"], "only our admin's own sign-in"
    assert theirs_by_filter.status_code == 400
    assert "There is no such operator in your company." in theirs_by_filter.text
    assert kinds_on(theirs_by_filter.text) == []


def test_audit_trail_is_for_system_administrators_only(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.operator)
        home = browser.get("/home").text
        response = browser.get(AUDIT)

    assert 'href="/audit"' not in home
    assert response.status_code == 403
    assert kinds_on(response.text) == []


def test_audit_trail_never_shows_a_password_secret_or_token(live: LiveServer) -> None:
    tenant = live.tenant()
    wrong = "my-wrong-guess-is-secret"
    with Browser(live) as browser:
        browser.sign_in(tenant.operator.email, wrong)
        token = browser.sign_in_as(tenant.operator).generate_token(tenant.operator)
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        browser.post("/settings/system/api/secrets/primary/show", {"password": wrong})
        browser.post(
            "/settings/system/api/secrets/primary/show", {"password": tenant.admin.password}
        )
        page = browser.get(AUDIT).text

    assert {"web.signin", "token.issue", "secret.show"} <= set(kinds_on(page))
    for secret in (
        wrong,
        tenant.operator.password,
        tenant.admin.password,
        tenant.primary_secret,
        tenant.secondary_secret,
        token,
    ):
        assert secret not in page


def test_older_links_reach_every_matching_event_beyond_the_first_thousand(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    newest = datetime.now(UTC).replace(microsecond=123456) - timedelta(days=1)
    long_history(live, tenant, 1130, newest=newest)
    # Events of another kind at the same times: the filter holds on every page.
    long_history(live, tenant, 200, newest=newest, kind="token.issue")
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        older, addresses = walk(browser, f"{AUDIT}?kind=policy.change", "next")
        newer, back = walk(browser, addresses[-1], "prev")

    assert [len(steps) for steps in older] == [50] * 22 + [30]
    assert [step for steps in older for step in steps] == list(range(1130)), "all, in order"
    assert all(
        "before=" in address and "kind=policy.change" in address for address in addresses[1:]
    )
    assert newer == older[::-1], "Newer leads back through the same pages to the newest"
    assert all("after=" in address for address in back[1:])


def test_paging_keeps_the_operator_and_time_filters(live: LiveServer) -> None:
    tenant = live.tenant()
    newest = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
    long_history(live, tenant, 1500, newest=newest, operator_id=tenant.operator.id)
    long_history(live, tenant, 300, newest=newest)  # the same times, no operator
    # From 480 s to 60 s before the newest ("To" includes the second it names): the events
    # whose time is step // 3 seconds back, for step // 3 from 60 to 480.
    query = f"operator={tenant.operator.id}&since=2025-06-30T11:52:00&until=2025-06-30T11:59:00"
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        older, addresses = walk(browser, f"{AUDIT}?{query}", "next")
        newer, _ = walk(browser, addresses[-1], "prev")

    assert [step for steps in older for step in steps] == list(range(180, 1443))
    for address in addresses:
        assert f"operator={tenant.operator.id}" in address
        assert "since=2025-06-30T11:52:00&until=2025-06-30T11:59:00" in address
    assert newer == older[::-1]


@pytest.mark.parametrize(
    "query",
    [
        "before=yesterday",
        "before=2026-02-30T00:00:00.000000Z,1",
        "before=2026-12-05T25:00:00.000000Z,1",
        "before=2026-12-05T02:04:24Z,1",
        "before=2026-12-05T02:04:24.123456,1",
        "before=2026-12-05T02:04:24.123456Z",
        "before=2026-12-05T02:04:24.123456Z,-1",
        "before=2026-12-05T02:04:24.123456Z,1e3",
        "before=2026-12-05T02:04:24.123456Z,1234567890123456789",
        "before=2026-12-05T02:04:24.123456Z,%D9%A3",
        "before=0000-01-01T00:00:00.000000Z,1",
        "before=2026-12-05T02:04:24.123456Z,1%00",
        "after=not-a-position",
        "before=2026-12-05T02:04:24.123456Z,1&after=2026-12-05T02:04:24.123456Z,1",
        "before=" + "9" * 5000,
    ],
)
def test_a_malformed_link_to_older_or_newer_events_is_a_400_page(
    live: LiveServer, query: str
) -> None:
    tenant = live.tenant()
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        response = browser.get(f"{AUDIT}?kind=web.signin&{query}")

    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "This link to older or newer events is not valid." in response.text
    assert kinds_on(response.text) == []


def test_a_position_before_all_events_or_after_them_is_answered_not_refused(
    live: LiveServer,
) -> None:
    tenant = live.tenant()
    long_history(live, tenant, 60, newest=datetime(2025, 1, 1, tzinfo=UTC))
    with Browser(live) as browser:
        browser.sign_in_as(tenant.admin)
        first = browser.get(f"{AUDIT}?kind=policy.change").text
        past_the_end = browser.get(
            f"{AUDIT}?kind=policy.change&before=0001-01-01T00:00:00.000000Z,1"
        )
        future = browser.get(f"{AUDIT}?kind=policy.change&after=9999-12-31T23:59:59.999999Z,1")
        from_the_start = browser.get(
            f"{AUDIT}?kind=policy.change&after=0001-01-01T00:00:00.000000Z,1"
        )

    assert past_the_end.status_code == 200
    assert kinds_on(past_the_end.text) == []
    assert "No events match these filters." in past_the_end.text
    assert link(past_the_end.text, "prev") is not None, "the way back to newer events"
    assert future.status_code == from_the_start.status_code == 200
    assert steps_on(future.text) == steps_on(first) == list(range(50)), "the newest page"
    assert "50 events, from 1 Jan 2025, 00:00:00 UTC back to 31 Dec 2024, 23:59:44 UTC." in first
    assert link(future.text, "prev") is None
    assert steps_on(from_the_start.text) == list(range(10, 60)), "the oldest 50"
    assert link(from_the_start.text, "next") is None
    assert link(from_the_start.text, "prev") is not None


def test_reasons_show_in_words_with_their_code_kept_as_a_title(live: LiveServer) -> None:
    tenant = live.tenant()
    with Browser(live) as stranger:
        stranger.sign_in(tenant.operator.email, "not-the-password-1")
    with live.services.database.session() as session:
        audit.record(
            session,
            "token.revoke",
            "success",
            Origin(ip_address="192.0.2.1"),
            company_id=tenant.company_id,
            reason="a_reason_added_later",
        )
    with Browser(live) as browser:
        table = events_table(browser.sign_in_as(tenant.admin).get(AUDIT).text)

    assert '<dd title="wrong_credentials" data-code="wrong_credentials">' in table
    assert "Wrong e-mail or password</dd>" in table
    assert "<dd>wrong_credentials</dd>" not in table
    assert '<dd title="a_reason_added_later" data-code="a_reason_added_later">' in table
    assert "A reason added later</dd>" in table


def test_every_reason_the_code_records_has_words_on_the_audit_trail() -> None:
    source = Path(erpauth.__file__).parent
    patterns = [
        r'\breason="([a-z_]+)"',  # audit.record(..., reason="...")
        r'"reason": "([a-z_]+)"',  # detail={"reason": "..."}
        r'return "([a-z_]+)", [A-Z_]+\b',  # (reason, message) of a refusal
        r'\brevoke_[a-z_]+\(\s*session, [^,()]+, "([a-z_]+)"',  # revoked_reason of a token
        r'"(revoked_by_[a-z]+)"',  # a reason handed on to _revoke
    ]
    found = {
        code
        for path in source.rglob("*.py")
        for pattern in patterns
        for code in re.findall(pattern, path.read_text())
    }

    assert len(found) >= 20, found  # the patterns still find what the code records
    assert sorted(found - REASONS.keys()) == []


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("operator_inactive", "The operator is deactivated"),
        ("new_kind_of_refusal", "New kind of refusal"),
        ("", ""),
    ],
)
def test_reason_label_names_known_codes_and_makes_unknown_ones_readable(
    code: str, words: str
) -> None:
    assert reason_label(code) == words
