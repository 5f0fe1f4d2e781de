"""The erpauth command: demo set-up, companies, operators, credentials; JSON for scripts."""

import json
import os
import pty
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ME_PATH, TOKEN_PATH, live_server, make_settings, postgres_database


def run_erpauth(
    data_dir: Path, database_url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs the command on this data folder and database, as a person would from a shell."""
    return subprocess.run(
        [sys.executable, "-m", "erpauth.cli", *args],
        env=os.environ
        | {"ERPAUTH_DATA_DIR": str(data_dir), "ERPAUTH_DATABASE_URL": database_url}
        | (env or {}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def erpauth(
    data_dir: Path,
    database_url: str,
    *args: str,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> dict:
    env = os.environ | {
        "ERPAUTH_DATA_DIR": str(data_dir),
        "ERPAUTH_DATABASE_URL": database_url,
        **(env or {}),
    }
    done = subprocess.run(
        [sys.executable, "-m", "erpauth.cli", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check:
        assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {"returncode": done.returncode}


@pytest.fixture(scope="module")
def data_dir(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data folder (so one server key) per backend for all CLI tests."""
    return tmp_path_factory.mktemp("cli") / "data"


@pytest.fixture(scope="module")
def database_url(backend: str, data_dir: Path) -> Iterator[str]:
    """A database of the CLI tests' own: its stored keys are encrypted with their server key."""
    if backend == "sqlite":
        data_dir.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{data_dir / 'cli.db'}"
    else:
        with postgres_database() as url:
            yield url


def test_init_demo_prints_working_credentials_and_is_idempotent(
    data_dir: Path, database_url: str
) -> None:
    first = erpauth(data_dir, database_url, "init", "--demo")
    second = erpauth(data_dir, database_url, "init", "--demo")

    assert first == second
    assert set(first) == {
        "client_id",
        "client_secret",
        "admin_username",
        "admin_password",
        "operator_username",
        "operator_password",
    }
    with live_server(make_settings(data_dir, database_url)) as server, server.client() as http:
        for username, password in [
            (first["admin_username"], first["admin_password"]),
            (first["operator_username"], first["operator_password"]),
        ]:
            token = http.post(
                TOKEN_PATH,
                auth=(first["client_id"], first["client_secret"]),
                data={"grant_type": "password", "username": username, "password": password},
            )
            assert token.status_code == 200, token.text
            me = http.get(
                ME_PATH, headers={"Authorization": f"Bearer {token.json()['access_token']}"}
            )
            assert me.json()["operator"]["email"] == username


def test_init_demo_twice_creates_no_duplicates(data_dir: Path, database_url: str) -> None:
    from sqlalchemy import func, select

    from erpauth.services import build_services
    from erpauth.storage.models import ApiClient, AuditEvent, Company, Operator

    erpauth(data_dir, database_url, "init", "--demo")
    erpauth(data_dir, database_url, "init", "--demo")

    services = build_services(make_settings(data_dir, database_url))
    with services.database.session() as session:
        demo = session.scalar(select(Company).where(Company.account_code == "DEMO"))
        operators = session.scalar(
            select(func.count()).select_from(Operator).where(Operator.company_id == demo.id)
        )
        clients = session.scalar(
            select(func.count()).select_from(ApiClient).where(ApiClient.company_id == demo.id)
        )
        trail = session.execute(
            select(AuditEvent.kind, AuditEvent.user_agent, AuditEvent.detail)
            .where(
                AuditEvent.company_id == demo.id,
                AuditEvent.kind.in_(["company.create", "operator.create"]),
            )
            .order_by(AuditEvent.occurred_at, AuditEvent.kind)
        ).all()
    services.close()
    assert (operators, clients) == (2, 1)
    # What the demo set-up made is in the company's trail, once.
    assert [(kind, agent, detail) for kind, agent, detail in trail] == [
        ("company.create", "erpauth-cli", {"demo": True}),
        ("operator.create", "erpauth-cli", {"demo": True}),
        ("operator.create", "erpauth-cli", {"demo": True}),
    ]


def test_company_and_operator_commands_control_who_gets_a_token(
    data_dir: Path, database_url: str
) -> None:
    code = "CLI" + os.urandom(3).hex()
    company = erpauth(data_dir, database_url, "company-create", "--name", "Acme", "--code", code)
    operator = erpauth(
        data_dir,
        database_url,
        "operator-create",
        "--company",
        code,
        "--email",
        f"ann@{code}.example",
    )
    credentials = erpauth(data_dir, database_url, "company-credentials", "--code", code)

    assert company["api_enabled"] is False
    assert operator["api_permission"] is False
    assert credentials["client_id"] == company["client_id"]

    form = {
        "grant_type": "password",
        "username": operator["email"],
        "password": operator["password"],
    }
    auth = (credentials["client_id"], credentials["client_secret_secondary"])
    with live_server(make_settings(data_dir, database_url)) as server, server.client() as http:
        refused_license = http.post(TOKEN_PATH, auth=auth, data=form)
        erpauth(data_dir, database_url, "company-license", "--code", code, "--api", "on")
        refused_permission = http.post(TOKEN_PATH, auth=auth, data=form)
        erpauth(data_dir, database_url, "operator-grant-api", operator["email"])
        issued = http.post(TOKEN_PATH, auth=auth, data=form)
        token = issued.json().get("access_token", "")
        erpauth(data_dir, database_url, "operator-revoke-api", operator["email"])
        after_revoke = http.get(ME_PATH, headers={"Authorization": f"Bearer {token}"})

    assert "license" in refused_license.json()["error_description"]
    assert "API permission" in refused_permission.json()["error_description"]
    assert issued.status_code == 200
    assert after_revoke.status_code == 401


def test_cli_errors_are_reported_as_json_with_a_nonzero_exit(
    data_dir: Path, database_url: str
) -> None:
    code = "DUP" + os.urandom(3).hex()
    erpauth(data_dir, database_url, "company-create", "--name", "One", "--code", code)

    again = erpauth(
        data_dir, database_url, "company-create", "--name", "Two", "--code", code, check=False
    )
    missing = erpauth(data_dir, database_url, "operator-grant-api", "nobody@x.example", check=False)

    assert again["error"] == f"a company with account code {code} exists already"
    assert "no operator" in missing["error"]


def test_usage_errors_are_json_too_when_json_is_asked_for(
    data_dir: Path, database_url: str
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_erpauth(data_dir, database_url, *args)

    with_json = run("company-create", "--name", "X", "--json")
    plain = run("company-create", "--name", "X")

    assert with_json.returncode == 1
    required = "the following arguments are required: --code/--company"
    assert json.loads(with_json.stdout) == {"error": required}
    # Without --json, argparse's usage message and exit code, as people expect them.
    assert plain.returncode == 2
    assert plain.stderr.startswith("usage: erpauth company-create")


def test_an_unknown_option_is_answered_with_the_usage_of_its_command(
    data_dir: Path, database_url: str
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_erpauth(data_dir, database_url, *args)

    plain = run("audit-export", "--code", "DEMO")
    with_json = run("audit-export", "--code", "DEMO", "--json")

    assert plain.returncode == 2
    assert plain.stderr.startswith("usage: erpauth audit-export")
    assert "--company COMPANY" in plain.stderr
    unrecognized = "unrecognized option: --code; 1 unexpected value (not repeated here)"
    assert f"erpauth audit-export: error: {unrecognized}" in plain.stderr
    assert with_json.returncode == 1
    assert json.loads(with_json.stdout) == {"error": unrecognized}
    assert with_json.stderr.startswith("erpauth audit-export: ")


def test_company_policy_changes_only_what_is_given(data_dir: Path, database_url: str) -> None:
    code = "Pol" + os.urandom(3).hex()
    erpauth(
        data_dir,
        database_url,
        "company-create",
        "--name",
        "P",
        "--code",
        code,
        "--token-expiry-hours",
        "5",
        "--call-limit",
        "300",
    )

    limit_only = erpauth(
        data_dir, database_url, "company-policy", "--code", code, "--call-limit", "50"
    )
    expiry_only = erpauth(
        data_dir, database_url, "company-policy", "--code", code, "--token-expiry-hours", "0"
    )
    neither = erpauth(data_dir, database_url, "company-policy", "--code", code, check=False)

    assert limit_only["token_expiry_hours"] == 5
    assert limit_only["call_limit_per_minute"] == 50
    assert expiry_only["token_expiry_hours"] == 0
    assert expiry_only["call_limit_per_minute"] == 50
    assert neither["error"] == "give --token-expiry-hours, --call-limit or both"


def test_account_codes_are_one_company_whatever_their_case(
    data_dir: Path, database_url: str
) -> None:
    code = "Case" + os.urandom(3).hex()
    created = erpauth(data_dir, database_url, "company-create", "--name", "C", "--code", code)

    again = erpauth(
        data_dir, database_url, "company-create", "--name", "D", "--code", code.upper(), check=False
    )
    found = erpauth(data_dir, database_url, "company-credentials", "--code", code.lower())
    nul = erpauth(
        data_dir, database_url, "company-credentials", "--code", code + "\x01", check=False
    )

    newline = erpauth(
        data_dir, database_url, "company-create", "--name", "E", "--code", code + "\n", check=False
    )

    # The company that has the code is named by its code as stored, the clash explained.
    assert again["error"] == (
        f"a company with account code {code} exists already; account codes are matched "
        f"whatever their case, so {code.upper()} is the same code"
    )
    assert "account code must be" in newline["error"]
    assert found["client_id"] == created["client_id"]
    assert created["account_code"] == code  # shown as it was typed at creation
    assert "no company" in nul["error"]


def erpauth_fed(
    data_dir: Path, database_url: str, *args: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    """Runs the command with ``stdin`` as its standard input, as ``printf … | erpauth …``."""
    return subprocess.run(
        [sys.executable, "-m", "erpauth.cli", *args],
        env=os.environ | {"ERPAUTH_DATA_DIR": str(data_dir), "ERPAUTH_DATABASE_URL": database_url},
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )


def password_works(data_dir: Path, database_url: str, email: str, password: str) -> bool:
    """Whether the operator's stored hash takes ``password``, as signing in checks it."""
    from erpauth.domain.operators import get_operator
    from erpauth.services import build_services

    services = build_services(make_settings(data_dir, database_url))
    try:
        with services.database.session() as session:
            stored = get_operator(session, email).password_hash
        return services.hasher.verify(stored, password)
    finally:
        services.close()


@pytest.fixture(scope="module")
def stdin_operator(data_dir: Path, database_url: str) -> tuple[str, str]:
    """An operator (e-mail, password) whose password the refused inputs below must not change."""
    code = "Stdin" + os.urandom(3).hex()
    erpauth(data_dir, database_url, "company-create", "--name", "Stdin", "--code", code)
    made = erpauth(
        data_dir, database_url, "operator-create", "--company", code, "--email", f"o@{code}.example"
    )
    return made["email"], made["password"]


def test_operator_create_reads_the_password_from_standard_input(
    data_dir: Path, database_url: str
) -> None:
    code = "In" + os.urandom(3).hex()
    erpauth(data_dir, database_url, "company-create", "--name", "In", "--code", code)
    email = f"ann@{code}.example"
    password = "  spaces and ünïcode stay  "

    done = erpauth_fed(
        data_dir,
        database_url,
        "operator-create",
        "--company",
        code,
        "--email",
        email,
        "--password-stdin",
        "--json",
        stdin=f"{password}\n".encode(),
    )

    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    created = json.loads(line)
    assert created["email"] == email
    assert "password" not in created  # the caller has it already: it is not printed
    assert b"warning" not in done.stderr
    # Only the line ending is taken off: the spaces around the password are part of it.
    assert password_works(data_dir, database_url, email, password)
    assert not password_works(data_dir, database_url, email, password.strip())


@pytest.mark.parametrize("ending", ["\n", "\r\n", ""], ids=["lf", "crlf", "none"])
def test_operator_set_password_reads_the_password_from_standard_input(
    data_dir: Path, database_url: str, ending: str
) -> None:
    code = "Set" + os.urandom(3).hex()
    erpauth(data_dir, database_url, "company-create", "--name", "Set", "--code", code)
    made = erpauth(
        data_dir, database_url, "operator-create", "--company", code, "--email", f"b@{code}.example"
    )
    new = "new-password-" + os.urandom(4).hex()

    done = erpauth_fed(
        data_dir,
        database_url,
        "operator-set-password",
        made["email"],
        "--password-stdin",
        "--json",
        stdin=f"{new}{ending}".encode(),
    )

    assert done.returncode == 0, done.stderr
    assert "password" not in json.loads(done.stdout)
    assert password_works(data_dir, database_url, made["email"], new)
    assert not password_works(data_dir, database_url, made["email"], made["password"])


@pytest.mark.parametrize(
    ("stdin", "error"),
    [
        (b"", "--password-stdin: standard input holds no password"),
        (b"\n", "--password-stdin: standard input holds no password"),
        (b"\xffnot-utf-8-at-all\n", "--password-stdin: the password is not UTF-8 text"),
        (b"short\n", "the password must be at least 12 characters long"),
        (b"x" * 257 + b"\n", "the password must be at most 256 characters long"),
        (b"x" * 100_000, "the password must be at most 256 characters long"),
        (
            b"first-line-password\nsecond-line\n",
            "--password-stdin: standard input holds more than one line; give the password "
            "alone, on one line",
        ),
    ],
    ids=["empty", "empty-line", "not-utf-8", "too-short", "too-long", "endless", "two-lines"],
)
def test_password_stdin_refuses_what_is_not_one_acceptable_password(
    data_dir: Path, database_url: str, stdin_operator: tuple[str, str], stdin: bytes, error: str
) -> None:
    email, password = stdin_operator

    with_json = erpauth_fed(
        data_dir,
        database_url,
        "operator-set-password",
        email,
        "--password-stdin",
        "--json",
        stdin=stdin,
    )
    plain = erpauth_fed(
        data_dir, database_url, "operator-set-password", email, "--password-stdin", stdin=stdin
    )

    assert with_json.returncode == 1
    assert json.loads(with_json.stdout) == {"error": error}
    assert plain.returncode == 1
    assert plain.stdout == b""
    assert plain.stderr.decode().splitlines()[-1] == f"erpauth: {error}"
    assert b"Traceback" not in with_json.stderr + plain.stderr
    assert password_works(data_dir, database_url, email, password)


def test_password_stdin_refuses_a_weak_password_for_a_new_operator(
    data_dir: Path, database_url: str, stdin_operator: tuple[str, str]
) -> None:
    code = stdin_operator[0].split("@")[1].removesuffix(".example")
    email = f"weak@{code}.example"

    done = erpauth_fed(
        data_dir,
        database_url,
        "operator-create",
        "--company",
        code,
        "--email",
        email,
        "--password-stdin",
        "--json",
        stdin=b"too-short\n",
    )
    nobody = erpauth(data_dir, database_url, "operator-grant-api", email, check=False)

    assert done.returncode == 1
    assert json.loads(done.stdout) == {"error": "the password must be at least 12 characters long"}
    assert nobody["error"] == f"no operator with e-mail {email}"


def test_password_on_the_command_line_works_but_warns_that_others_can_read_it(
    data_dir: Path, database_url: str
) -> None:
    code = "Arg" + os.urandom(3).hex()
    erpauth(data_dir, database_url, "company-create", "--name", "Arg", "--code", code)
    email = f"c@{code}.example"
    first, second = "first-password-on-argv", "second-password-on-argv"

    created = erpauth_fed(
        data_dir,
        database_url,
        "operator-create",
        "--company",
        code,
        "--email",
        email,
        "--password",
        first,
        "--json",
    )
    created_works = password_works(data_dir, database_url, email, first)
    changed = erpauth_fed(
        data_dir, database_url, "operator-set-password", email, "--password", second, "--json"
    )
    empty = erpauth_fed(
        data_dir, database_url, "operator-set-password", email, "--password", "", "--json"
    )

    for done in (created, changed):
        assert done.returncode == 0, done.stderr
        [line] = done.stdout.splitlines()  # stdout is still the one JSON object
        assert json.loads(line)["email"] == email
        assert "password" not in json.loads(line)
        warning = done.stderr.decode()
        assert "erpauth: warning: a password given with --password can be read by other users" in (
            warning
        )
        assert "--password-stdin" in warning
    assert created_works
    assert password_works(data_dir, database_url, email, second)
    # An empty --password is a password the policy refuses, not a request to generate one.
    assert json.loads(empty.stdout) == {"error": "the password must be at least 12 characters long"}
    assert password_works(data_dir, database_url, email, second)


def test_password_and_password_stdin_together_are_a_usage_error(
    data_dir: Path, database_url: str, stdin_operator: tuple[str, str]
) -> None:
    email, password = stdin_operator

    done = erpauth_fed(
        data_dir,
        database_url,
        "operator-set-password",
        email,
        "--password-stdin",
        "--password",
        "another-password",
        "--json",
        stdin=b"yet-another-password\n",
    )

    assert done.returncode == 1
    assert json.loads(done.stdout) == {
        "error": "argument --password: not allowed with argument --password-stdin"
    }
    assert password_works(data_dir, database_url, email, password)


def test_unreachable_database_is_a_clear_cli_error(tmp_path: Path) -> None:
    result = erpauth(
        tmp_path, "postgresql+psycopg://postgres@127.0.0.1:9/none", "init", check=False
    )

    assert "cannot reach the database" in result["error"]


def test_a_database_url_without_a_usable_driver_is_named_without_its_password(
    tmp_path: Path,
) -> None:
    result = erpauth(tmp_path, "postgres://ann:hunter2@127.0.0.1:5432/erpauth", "init", check=False)

    assert "ERPAUTH_DATABASE_URL" in result["error"]
    assert "postgresql+psycopg://" in result["error"]
    assert "hunter2" not in result["error"]


def test_a_malformed_secret_key_is_named_without_its_value(tmp_path: Path) -> None:
    result = erpauth(
        tmp_path,
        f"sqlite:///{tmp_path / 'x.db'}",
        "init",
        check=False,
        env={"ERPAUTH_SECRET_KEY": "not-a-fernet-key-but-secret"},
    )

    assert "ERPAUTH_SECRET_KEY" in result["error"]
    assert "Fernet" in result["error"]
    assert "not-a-fernet-key-but-secret" not in result["error"]


def test_an_unknown_log_level_is_a_clear_cli_error(tmp_path: Path) -> None:
    result = erpauth(
        tmp_path,
        f"sqlite:///{tmp_path / 'x.db'}",
        "init",
        check=False,
        env={"ERPAUTH_LOG_LEVEL": "verbose"},
    )

    assert (
        "ERPAUTH_LOG_LEVEL: must be one of debug, info, warning, error, critical"
        in (result["error"])
    )


def test_a_reader_that_stops_early_gets_no_traceback(data_dir: Path, database_url: str) -> None:
    code = "PIPE" + os.urandom(3).hex()
    erpauth(data_dir, database_url, "company-create", "--name", "Pipe", "--code", code)
    env = os.environ | {"ERPAUTH_DATA_DIR": str(data_dir), "ERPAUTH_DATABASE_URL": database_url}
    export = subprocess.Popen(  # like `erpauth audit-export | head -0`
        [sys.executable, "-m", "erpauth.cli", "audit-export"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    export.stdout.close()
    _, errors = export.communicate(timeout=120)

    assert export.returncode == 0
    assert "Traceback" not in errors
    assert "BrokenPipeError" not in errors


def test_a_different_server_key_is_a_clear_cli_error(
    data_dir: Path, database_url: str, tmp_path: Path
) -> None:
    erpauth(data_dir, database_url, "init", "--demo")

    result = erpauth(
        tmp_path / "other", database_url, "company-credentials", "--code", "DEMO", check=False
    )

    assert "ERPAUTH_SECRET_KEY" in result["error"]


def test_console_script_is_installed() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "erpauth"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert "serve" in done.stdout


@pytest.mark.parametrize("workers", [1, 2, 64])
def test_serve_shares_the_cores_among_its_workers_as_hashing_threads(
    workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from erpauth.cli import share_cores_for_hashing
    from erpauth.config import Settings, available_cores

    # Set, then removed: the monkeypatch then removes what the command sets, after the test.
    monkeypatch.setenv("ERPAUTH_HASHING_CONCURRENCY", "1")
    monkeypatch.delenv("ERPAUTH_HASHING_CONCURRENCY")
    share_cores_for_hashing(workers)

    threads = Settings().hashing_concurrency
    assert threads == max(1, available_cores() // workers)
    assert threads * workers <= available_cores() or threads == 1


def test_serve_keeps_the_hashing_threads_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    from erpauth.cli import share_cores_for_hashing
    from erpauth.config import Settings

    monkeypatch.setenv("ERPAUTH_HASHING_CONCURRENCY", "3")
    share_cores_for_hashing(4)

    assert Settings().hashing_concurrency == 3


def test_demo_cli_and_users_page_record_the_same_operator_create_event(
    data_dir: Path, database_url: str
) -> None:
    """The three ways an operator is made each leave one ``operator.create`` event, each with
    the actor and details it always had."""
    from sqlalchemy import select

    from erpauth.domain.operators import find_operator
    from erpauth.services import build_services
    from erpauth.storage.models import AuditEvent
    from tests.web_support import Browser, new_password_on

    demo = erpauth(data_dir, database_url, "init", "--demo")
    code = "OPS" + os.urandom(3).hex()
    erpauth(data_dir, database_url, "company-create", "--name", "Ops", "--code", code)
    admin = erpauth(
        data_dir,
        database_url,
        "operator-create",
        "--company",
        code,
        "--email",
        f"admin@{code}.example",
        "--admin",
    )
    web_email = f"web@{code}.example"
    with live_server(make_settings(data_dir, database_url)) as server, Browser(server) as browser:
        assert browser.sign_in(admin["email"], admin["password"]).status_code == 303
        created = browser.post("/users", {"email": web_email, "api_permission": "on"})
        agent = browser.http.headers["user-agent"]
    assert new_password_on(created.text) is not None, created.text

    services = build_services(make_settings(data_dir, database_url))
    with services.database.session() as session:
        made = {
            name: find_operator(session, email)
            for name, email in [
                ("demo", demo["admin_username"]),
                ("cli", admin["email"]),
                ("web", web_email),
            ]
        }
        events = {
            name: session.scalars(
                select(AuditEvent).where(
                    AuditEvent.operator_id == operator.id, AuditEvent.kind.like("operator.%")
                )
            ).all()
            for name, operator in made.items()
        }
        seen = {
            name: [
                (
                    event.kind,
                    event.outcome,
                    event.company_id == made[name].company_id,
                    event.actor_id,
                    event.ip_address,
                    event.user_agent,
                    event.detail,
                )
                for event in found
            ]
            for name, found in events.items()
        }
    services.close()

    assert {kind for found in seen.values() for kind, *_ in found} == {"operator.create"}
    assert seen == {
        "demo": [("operator.create", "success", True, None, None, "erpauth-cli", {"demo": True})],
        "cli": [("operator.create", "success", True, None, None, "erpauth-cli", {})],
        "web": [
            (
                "operator.create",
                "success",
                True,
                made["cli"].id,
                "127.0.0.1",
                agent,
                {"system_admin": False, "api_permission": True},
            )
        ],
    }


def test_a_company_created_at_the_same_moment_is_a_clear_error(
    backend: str, data_dir: Path, database_url: str
) -> None:
    """The code is free when the command looks, and taken when it writes: no traceback."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL lets a second writer wait on the first one's unique entry")
    from sqlalchemy import create_engine, text

    code = "Race" + os.urandom(3).hex()
    erpauth(data_dir, database_url, "init")
    engine = create_engine(database_url)
    try:
        with engine.connect() as other:
            # Another writer has inserted the code but not committed it yet.
            other.execute(
                text(
                    "INSERT INTO companies (id, name, account_code, account_code_key, api_enabled,"
                    " token_expiry_hours, call_limit_per_minute, created_at, updated_at)"
                    " VALUES (:id, 'Other', :code, :key, false, 24, 200, now(), now())"
                ),
                {"id": os.urandom(16).hex(), "code": code, "key": code.upper()},
            )
            command = subprocess.Popen(
                [sys.executable, "-m", "erpauth.cli", "company-create", "--name", "Mine"]
                + ["--code", code.lower(), "--json"],
                env=os.environ
                | {"ERPAUTH_DATA_DIR": str(data_dir), "ERPAUTH_DATABASE_URL": database_url},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            with engine.connect() as watcher:
                for _ in range(600):  # until the command waits for this transaction
                    waiting = watcher.scalar(
                        text(
                            "SELECT count(*) FROM pg_stat_activity"
                            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                        )
                    )
                    watcher.rollback()  # the next look gets a fresh view of the activity
                    if waiting or command.poll() is not None:
                        break
                    time.sleep(0.05)
            assert waiting, "the command did not wait for the other writer"
            other.commit()
            stdout, stderr = command.communicate(timeout=60)
    finally:
        engine.dispose()

    assert command.returncode == 1
    assert "Traceback" not in stderr
    assert json.loads(stdout.strip().splitlines()[-1])["error"] == (
        f"a company with account code {code} exists already; account codes are matched "
        f"whatever their case, so {code.lower()} is the same code"
    )


def test_create_company_itself_refuses_a_code_committed_at_the_same_moment(
    backend: str, data_dir: Path, database_url: str
) -> None:
    """Every caller of the domain function, not only the command, gets the clear Conflict."""
    from sqlalchemy import create_engine, text

    from erpauth.domain.companies import create_company
    from erpauth.domain.errors import Conflict
    from erpauth.services import build_services

    code = "Dom" + os.urandom(3).hex()
    services = build_services(make_settings(data_dir, database_url), migrate=True)
    engine = create_engine(database_url)
    outcome: list[BaseException | str] = []

    def create() -> None:
        try:
            with services.database.session() as session:
                create_company(session, services.box, name="Mine", account_code=code.lower())
            outcome.append("created")
        except BaseException as exc:  # handed to the test, which asserts on it
            outcome.append(exc)

    try:
        with engine.connect() as other:
            # Another writer has inserted the code but not committed it yet.
            other.execute(
                text(
                    "INSERT INTO companies (id, name, account_code, account_code_key, api_enabled,"
                    " token_expiry_hours, call_limit_per_minute, created_at, updated_at)"
                    " VALUES (:id, 'Other', :code, :key, false, 24, 200,"
                    " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"id": os.urandom(16).hex(), "code": code, "key": code.upper()},
            )
            creator = threading.Thread(target=create)
            creator.start()
            # PostgreSQL: the insert waits on the other writer's unique entry; SQLite: the
            # function waits for the one writer lock, before it looks for the code.
            creator.join(timeout=1)
            assert creator.is_alive(), f"create_company did not wait: {outcome}"
            other.commit()
            creator.join(timeout=60)
    finally:
        engine.dispose()
        services.close()

    [result] = outcome
    assert isinstance(result, Conflict), repr(result)
    assert str(result) == (
        f"a company with account code {code} exists already; account codes are matched "
        f"whatever their case, so {code.lower()} is the same code"
    )


def test_create_company_commits_nothing_when_the_callers_transaction_fails(
    data_dir: Path, database_url: str
) -> None:
    """The company is written in the caller's transaction, savepoint or not, on every backend."""
    from erpauth.domain.companies import create_company, get_company
    from erpauth.domain.errors import NotFound
    from erpauth.services import build_services

    code = "Gone" + os.urandom(3).hex()
    services = build_services(make_settings(data_dir, database_url), migrate=True)
    try:
        with pytest.raises(RuntimeError), services.database.session() as session:
            create_company(session, services.box, name="Gone", account_code=code)
            raise RuntimeError("what the caller does next fails")
        with services.database.session() as session, pytest.raises(NotFound):
            get_company(session, code)
    finally:
        services.close()


def test_commands_log_only_warnings_unless_a_log_level_is_set(
    data_dir: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ERPAUTH_LOG_LEVEL", raising=False)

    def company_create(code: str, **env: str) -> subprocess.CompletedProcess[str]:
        args = ("company-create", "--name", f"Logging {code}", "--code", code)
        return run_erpauth(data_dir, database_url, *args, env=env)

    quiet = company_create("LOGQUIET")
    asked = company_create("LOGASKED", ERPAUTH_LOG_LEVEL="INFO")

    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""  # the answer alone: the audit event is in the database
    assert "LOGQUIET" in quiet.stdout
    assert asked.returncode == 0, asked.stderr
    assert "INFO erpauth.security: company.create success" in asked.stderr


def test_company_commands_take_the_account_code_as_company_too(
    data_dir: Path, database_url: str
) -> None:
    code = "ALIAS" + os.urandom(3).hex()
    made = erpauth(data_dir, database_url, "company-create", "--name", "Alias", "--company", code)
    credentials = erpauth(data_dir, database_url, "company-credentials", "--company", code)
    closed = erpauth(data_dir, database_url, "company-license", "--company", code, "--api", "off")

    assert made["account_code"] == code
    assert credentials["client_id"] == made["client_id"]
    assert closed["api_enabled"] is False


def test_a_mistyped_option_is_named_but_its_value_never_repeated(
    data_dir: Path, database_url: str
) -> None:
    secret = "typo-password-" + os.urandom(4).hex()

    for args in (
        ["--pasword", secret],
        [f"--pasword={secret}"],
        ["--password-stdn", secret, "--json"],
    ):
        done = run_erpauth(data_dir, database_url, "operator-set-password", "a@b.example", *args)
        assert done.returncode in (1, 2)
        assert "unrecognized option: --pas" in done.stderr
        assert secret not in done.stdout + done.stderr


def test_password_stdin_at_a_terminal_is_not_shown_as_it_is_typed(
    data_dir: Path, database_url: str
) -> None:
    code = "Tty" + os.urandom(3).hex()
    erpauth(data_dir, database_url, "company-create", "--name", "Tty", "--code", code)
    made = erpauth(
        data_dir, database_url, "operator-create", "--company", code, "--email", f"t@{code}.example"
    )
    typed = "typed-at-a-terminal-" + os.urandom(4).hex()
    env = os.environ | {"ERPAUTH_DATA_DIR": str(data_dir), "ERPAUTH_DATABASE_URL": database_url}
    command = [sys.executable, "-m", "erpauth.cli", "operator-set-password", made["email"]]

    # A real pseudo-terminal as the command's terminal, as when a person runs it.
    pid, terminal = pty.fork()
    if pid == 0:  # the child: becomes the command
        os.execve(sys.executable, [*command, "--password-stdin"], env)  # noqa: S606
    shown = _read_until(terminal, b"Password: ")
    os.write(terminal, typed.encode() + b"\n")
    shown += _read_until(terminal, None)
    _, status = os.waitpid(pid, 0)
    os.close(terminal)

    assert os.waitstatus_to_exitcode(status) == 0, shown
    assert typed.encode() not in shown
    assert password_works(data_dir, database_url, made["email"], typed)


def _read_until(terminal: int, wanted: bytes | None, seconds: float = 60) -> bytes:
    """What the terminal shows until ``wanted`` appears (None: until the command ends)."""
    shown = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (wanted is None or wanted not in shown):
        ready, _, _ = select.select([terminal], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # the command ended and closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    return shown
