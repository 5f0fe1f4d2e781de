"""Property-based fuzzing of the OpenAPI surface over real HTTP (schemathesis).

Every operation gets generated requests, valid and invalid, with an Authorization header that
is absent, a valid access token, or made up; no answer may be a server error and every answer
must match the operation's declared responses (status, headers, content type, body schema).
"""

import base64
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig

from erpauth.app import create_app
from erpauth.config import Settings
from tests.conftest import StartServer
from tests.lifecycle import INTROSPECT_PATH, REVOKE_PATH
from tests.support import LiveServer

CONFIG = """
seed = 20261204
[generation]
mode = "all"
max-examples = 25
deterministic = true
"""
# The document the servers serve, read from the application itself: schemathesis's loader
# from a pytest fixture does not work with pytest 9 (it sets a node attribute pytest removed).
DOCUMENT = create_app(Settings()).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=SchemathesisConfig.from_str(CONFIG))
# Custom strategies cannot be combined with the document's own examples.
without_examples = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=SchemathesisConfig.from_str(CONFIG + "[phases.examples]\nenabled = false\n"),
)

VALID_TOKEN = "<a valid access token>"
_VISIBLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120)
AUTHORIZATION = st.one_of(
    st.none(),
    st.just(VALID_TOKEN),
    _VISIBLE,
    _VISIBLE.map(lambda text: f"Bearer {text}"),
    _VISIBLE.map(lambda text: "Basic " + base64.b64encode(text.encode()).decode()),
)


@pytest.fixture
def fuzz_server(start_server: StartServer) -> Iterator[LiveServer]:
    yield start_server(
        token_requests_per_client_per_minute=100_000, signin_failures_before_delay=100
    )


@pytest.fixture
def fuzz_token(fuzz_server: LiveServer) -> str:
    return fuzz_server.access_token(fuzz_server.tenant(call_limit_per_minute=100_000))


BOUNDED = settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@schema.parametrize()
@BOUNDED
def test_generated_requests_with_a_valid_token_get_answers_within_the_schema(
    case: schemathesis.Case, fuzz_server: LiveServer, fuzz_token: str
) -> None:
    case.call_and_validate(
        base_url=fuzz_server.url, headers={"Authorization": f"Bearer {fuzz_token}"}
    )


@without_examples.given(authorization=AUTHORIZATION)
@without_examples.parametrize()
@BOUNDED
def test_generated_requests_with_any_authorization_get_answers_within_the_schema(
    case: schemathesis.Case, fuzz_server: LiveServer, fuzz_token: str, authorization: str | None
) -> None:
    headers = {}
    if authorization == VALID_TOKEN:
        headers["Authorization"] = f"Bearer {fuzz_token}"
    elif authorization is not None:
        headers["Authorization"] = authorization

    # A made-up Authorization header is outside what the document models, so a request the
    # document calls valid may rightly be refused (RFC 6750 §3.1: malformed is 400).
    case.call_and_validate(
        base_url=fuzz_server.url, headers=headers, excluded_checks=[positive_data_acceptance]
    )


@pytest.fixture
def fuzz_client(fuzz_server: LiveServer) -> str:
    """A company's HTTP Basic client credentials, so that requests get past client auth."""
    tenant = fuzz_server.tenant(call_limit_per_minute=100_000)
    pair = f"{tenant.client_id}:{tenant.primary_secret}".encode()
    return "Basic " + base64.b64encode(pair).decode()


@schema.include(path=[REVOKE_PATH, INTROSPECT_PATH]).parametrize()
@BOUNDED
def test_generated_revocations_and_introspections_by_a_real_client_get_answers_within_the_schema(
    case: schemathesis.Case, fuzz_server: LiveServer, fuzz_client: str
) -> None:
    if case.meta is not None and case.meta.generation.mode.is_positive:
        # The client authenticates with Basic; credentials in the body as well would be two
        # methods at once, which RFC 6749 §2.3 forbids and the document says only in words.
        assert isinstance(case.body, dict)
        case.body.pop("client_id", None)
        case.body.pop("client_secret", None)

    case.call_and_validate(base_url=fuzz_server.url, headers={"Authorization": fuzz_client})
