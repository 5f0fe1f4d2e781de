"""Audit trail page: System Administrators read their company's security events."""

import re
from datetime import UTC, datetime, timedelta

from erpauth.domain import audit
from erpauth.domain.audit import Origin
from tests.support import LiveServer, Tenant
from tests.web_support import Browser

AUDIT = "/audit"


def kinds_on(page: str) -> list[str]:
    return re.findall(r'<tr data-kind="([^"]+)"', page)


def events_table(page: str) -> str:
    found = re.search(r'<table class="table table-events".*?</table>', page, re.S)
    return found.group(0) if found else ""


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
