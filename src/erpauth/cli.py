"""The erpauth command: set up the database, run the service, manage companies and operators."""

import argparse
import dataclasses
import getpass
import io
import json
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, BinaryIO, NoReturn

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError, OperationalError

from erpauth import allocator
from erpauth.config import MAX_HASHING_THREADS, Settings, available_cores
from erpauth.demo import ensure_demo
from erpauth.domain import audit
from erpauth.domain.audit import Origin
from erpauth.domain.clients import reveal_secret
from erpauth.domain.companies import (
    create_company,
    get_company,
    set_api_enabled,
    set_token_policy,
)
from erpauth.domain.errors import DomainError
from erpauth.domain.operators import (
    create_and_audit_operator,
    force_password_change,
    get_operator,
    set_active,
    set_api_permission,
    set_password,
)
from erpauth.domain.sessions import revoke_all_tokens
from erpauth.domain.signing_keys import (
    SigningKeyInfo,
    list_signing_keys,
    retire_signing_key,
    rotate_signing_key,
)
from erpauth.http.server import server_options
from erpauth.logs import configure_logging, logfmt_value
from erpauth.security.passwords import MAX_PASSWORD_LENGTH
from erpauth.security.secrets import UndecryptableSecret, new_password
from erpauth.services import Services, build_services

# A handler returns what to print, or None when it printed its output itself.
Handler = Callable[[argparse.Namespace, Services], dict[str, Any] | None]


# The company commands name the company with --code, or with --company as the operator and
# audit commands do.
ACCOUNT_CODE = "the company's account code"

# The commands that serve, and log as a service does: at ERPAUTH_LOG_LEVEL, INFO by default.
SERVING = ("serve", "demo")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    _Parser.json_errors = "--json" in (sys.argv[1:] if argv is None else argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # argparse would answer with the usage of `erpauth` itself; the command's shows its options.
        args.command_parser.error(_unrecognized(unknown))
    if argv is None and args.command in SERVING:
        allocator.with_huge_pages()  # the workers' password hashing, without page faults
    try:
        settings = Settings()
    except ValidationError as exc:
        return _fail(args, _settings_problem(exc))
    if args.command not in SERVING and "log_level" not in settings.model_fields_set:
        # A command's answer is what it prints; what it did is in the audit trail. Its log
        # lines (one per audit event) would only be noise around the answer, unless asked for.
        settings = settings.model_copy(update={"log_level": "WARNING"})
    configure_logging(settings)

    try:
        code = _run(args, settings)
        sys.stdout.flush()  # inside the try: a reader that went away is met here
        return code
    except (DomainError, UndecryptableSecret) as exc:
        return _fail(args, str(exc))
    except OperationalError as exc:
        return _fail(args, f"cannot reach the database: {exc.orig}")
    except IntegrityError:
        # Another command or request committed the same thing between the check and the write.
        return _fail(
            args,
            "someone else made the same change at the same moment, so nothing was changed; "
            "run the command again to see where things stand",
        )
    except BrokenPipeError:
        # The reader went away (`erpauth audit-export | head`); nothing is left to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        return _serve(args, settings)
    if args.command == "demo":
        return _demo(args, settings)

    services = build_services(settings, migrate=True)
    try:
        result = args.handler(args, services)
    finally:
        services.close()

    if result is not None:
        _print(args, result)
    return 0


def _unrecognized(unknown: list[str]) -> str:
    """What was not understood, naming the options but never repeating a value: a mistyped
    ``--pasword hunter2`` or a stray word may be a password."""
    names = [token.split("=", 1)[0] for token in unknown if token.startswith("-")]
    others = len(unknown) - len(names)
    parts = []
    if names:
        parts.append(f"unrecognized option{'s' if len(names) > 1 else ''}: {' '.join(names)}")
    if others:
        parts.append(f"{others} unexpected value{'s' if others > 1 else ''} (not repeated here)")
    return "; ".join(parts)


def _settings_problem(exc: ValidationError) -> str:
    # Name the variable and the rule, never the value: it may be a key.
    problems = [
        f"ERPAUTH_{'_'.join(str(part) for part in error['loc']).upper()}: {_rule(error)}"
        for error in exc.errors()
    ]
    return "invalid configuration: " + "; ".join(problems)


def _rule(error: Any) -> str:
    """What the setting must be: the allowed words of a pattern that lists them, else
    pydantic's own message."""
    pattern = str((error.get("ctx") or {}).get("pattern", ""))
    choices = re.fullmatch(r"(?:\(\?i\))?\^\(([\w|]+)\)\$", pattern)
    if error["type"] == "string_pattern_mismatch" and choices:
        return "must be one of " + ", ".join(choices[1].split("|"))
    return str(error["msg"])


class _Parser(argparse.ArgumentParser):
    """argparse's parser, except that with ``--json`` a usage error is JSON too.

    Scripts that pass ``--json`` read one JSON object, ``{"error": …}`` with exit code 1 on
    failure, whatever went wrong: a missing or malformed option included.
    """

    json_errors = False  # set by main() from the command line, for every subparser

    def error(self, message: str) -> NoReturn:
        if not _Parser.json_errors:
            super().error(message)
        print(json.dumps({"error": message}))
        print(f"{self.prog}: {message}", file=sys.stderr)
        sys.exit(1)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="erpauth", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler | None, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler, command_parser=sub)
        if handler is not None:
            sub.add_argument("--json", action="store_true", help="print one JSON object")
        return sub

    init = command("init", _init, "create or migrate the database (--demo: and the demo data)")
    init.add_argument("--demo", action="store_true", help="also create the demo company")

    serve = command("serve", None, "run the service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)

    demo = command("demo", None, "create the demo data, print its credentials and URLs, serve")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--workers", type=int, default=1)

    company = command("company-create", _company_create, "create a company and its API client")
    company.add_argument("--name", required=True)
    company.add_argument(
        "--code", "--company", dest="code", required=True, help="account code, unique"
    )
    company.add_argument("--api-enabled", action="store_true", help="license includes API access")
    company.add_argument("--token-expiry-hours", type=int, default=24, help="0 = never expires")
    company.add_argument("--call-limit", type=int, default=200, help="calls per minute")

    license_ = command("company-license", _company_license, "open or close a license's API access")
    license_.add_argument("--code", "--company", dest="code", required=True, help=ACCOUNT_CODE)
    license_.add_argument("--api", choices=["on", "off"], required=True)

    policy = command(
        "company-policy", _company_policy, "set token expiry and call limit (either or both)"
    )
    policy.add_argument("--code", "--company", dest="code", required=True, help=ACCOUNT_CODE)
    policy.add_argument("--token-expiry-hours", type=int, help="0 = never expires")
    policy.add_argument("--call-limit", type=int, help="calls per minute")

    creds = command(
        "company-credentials", _company_credentials, "show a company's client ID and secrets"
    )
    creds.add_argument("--code", "--company", dest="code", required=True, help=ACCOUNT_CODE)

    operator = command("operator-create", _operator_create, "create an operator")
    operator.add_argument("--company", required=True, help="the company's account code")
    operator.add_argument("--email", required=True)
    operator.add_argument("--name", help="display name")
    _password_options(operator)
    operator.add_argument("--admin", action="store_true", help="make a System Administrator")
    operator.add_argument("--api", action="store_true", help="grant API permission")

    for name, handler, text in [
        ("operator-grant-api", _grant_api, "grant an operator API permission"),
        ("operator-revoke-api", _revoke_api, "revoke an operator's API permission"),
        ("operator-activate", _activate, "activate an operator"),
        ("operator-deactivate", _deactivate, "deactivate an operator; their tokens stop working"),
    ]:
        command(name, handler, text).add_argument("email")

    reset = command("operator-set-password", _set_password, "set an operator's password")
    reset.add_argument("email")
    _password_options(reset)

    force = command(
        "operator-force-password-change",
        _force_password_change,
        "reset an operator's password to a generated one (printed once) and end every token "
        "and web session they have",
    )
    force.add_argument("email")
    sign_out = command(
        "operator-revoke-tokens",
        _revoke_tokens,
        "revoke every access and refresh token of an operator, keeping the password",
    )
    sign_out.add_argument("email")

    command("keys-list", _keys_list, "list the token signing keys")
    command("keys-rotate", _keys_rotate, "add a signing key; it signs every new token")
    retire = command(
        "keys-retire", _keys_retire, "retire a signing key; tokens it signed stop working"
    )
    retire.add_argument("kid")
    export = command("audit-export", _audit_export, "write the audit trail, oldest first")
    export.add_argument("--company", help="only this company's events (its account code)")
    export.add_argument("--kind", help="only events of this kind, e.g. signin.lockout")
    export.add_argument("--since", type=_timestamp, help="ISO 8601 time, inclusive; UTC if no zone")
    export.add_argument("--until", type=_timestamp, help="ISO 8601 time, exclusive; UTC if no zone")
    return parser


def _password_options(command: argparse.ArgumentParser) -> None:
    given = command.add_mutually_exclusive_group()
    given.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input, one line; without this or --password, "
        "a generated password is printed once",
    )
    given.add_argument(
        "--password",
        help="the password on the command line, where other users of the machine can read "
        "it; prefer --password-stdin",
    )


def _init(args: argparse.Namespace, services: Services) -> dict[str, Any]:
    if not args.demo:
        return {"database": "ready"}
    return dataclasses.asdict(ensure_demo(services))


def _company_create(args: argparse.Namespace, services: Services) -> dict[str, Any]:
    with services.database.session() as session:
        company = create_company(
            session,
            services.box,
            name=args.name,
            account_code=args.code,
            api_enabled=args.api_enabled,
            token_expiry_hours=args.token_expiry_hours,
            call_limit_per_minute=args.call_limit,
        )
        audit.record(session, "company.create", "success", Origin.cli(), company_id=company.id)
        return _company_view(services, company.account_code, session=session)


def _company_license(args: argparse.Namespace, services: Services) -> dict[str, Any]:
    with services.database.session() as session:
        company = get_company(session, args.code)
        set_api_enabled(session, company, args.api == "on")
        audit.record(
            session,
            "license.change",
            "success",
            Origin.cli(),
            company_id=company.id,
            api_enabled=company.api_enabled,
        )
        return {"account_code": company.account_code, "api_enabled": company.api_enabled}


def _company_policy(args: argparse.Namespace, services: Services) -> dict[str, Any]:
    if args.token_expiry_hours is None and args.call_limit is None:
        raise DomainError("give --token-expiry-hours, --call-limit or both")
    with services.database.session() as session:
        company = get_company(session, args.code)
        # What is not given stays as it is.
        set_token_policy(
            session,
            company,
            token_expiry_hours=(
                company.token_expiry_hours
                if args.token_expiry_hours is None
                else args.token_expiry_hours
            ),
            call_limit_per_minute=(
                company.call_limit_per_minute if args.call_limit is None else args.call_limit
            ),
        )
        audit.record(
            session,
            "policy.change",
            "success",
            Origin.cli(),
            company_id=company.id,
            token_expiry_hours=company.token_expiry_hours,
            call_limit_per_minute=company.call_limit_per_minute,
        )
        return {
            "account_code": company.account_code,
            "token_expiry_hours": company.token_expiry_hours,
            "call_limit_per_minute": company.call_limit_per_minute,
        }


def _company_credentials(args: argparse.Namespace, services: Services) -> dict[str, Any]:
    with services.database.session() as session:
        company = get_company(session, args.code)
        audit.record(
            session,
            "secret.show",
            "success",
            Origin.cli(),
            company_id=company.id,
            client_id=company.api_client.client_id,
            slot="both",
        )
        return _company_view(services, args.code, session=session, secrets=True)


def _company_view(
    services: Services, code: str, *, session: Any, secrets: bool = False
) -> dict[str, Any]:
    company = get_company(session, code)
    client = company.api_client
    view: dict[str, Any] = {
        "company": company.name,
        "account_code": company.account_code,
        "api_enabled": company.api_enabled,
        "token_expiry_hours": company.token_expiry_hours,
        "call_limit_per_minute": company.call_limit_per_minute,
        "client_id": client.client_id,
    }
    if secrets:
        view["client_secret_primary"] = reveal_secret(services.box, client, "primary")
        view["client_secret_secondary"] = reveal_secret(services.box, client, "secondary")
    return view


def _operator_create(args: argparse.Namespace, services: Services) -> dict[str, Any]:
    given = _given_password(args)
    password = new_password() if given is None else given
    with services.database.session() as session:
        company = get_company(session, args.company)
        operator = create_and_audit_operator(
            session,
            services.hasher,
            company,
            Origin.cli(),
            email=args.email,
            password=password,
            display_name=args.name,
            is_system_admin=args.admin,
            api_permission=args.api,
        )
        view = _operator_view(operator)
    if given is None:
        view["password"] = password
    return view


def _operator_change(kind: str, change: Callable[[Any, Any], None]) -> Handler:
    def handler(args: argparse.Namespace, services: Services) -> dict[str, Any]:
        with services.database.session() as session:
            operator = get_operator(session, args.email)
            change(session, operator)
            audit.record(
                session,
                kind,
                "success",
                Origin.cli(),
                company_id=operator.company_id,
                operator_id=operator.id,
            )
            return _operator_view(operator)

    return handler


_grant_api = _operator_change("permission.grant", lambda s, o: set_api_permission(s, o, True))
_revoke_api = _operator_change("permission.revoke", lambda s, o: set_api_permission(s, o, False))
_activate = _operator_change("operator.activate", lambda s, o: set_active(s, o, True))
_deactivate = _operator_change("operator.deactivate", lambda s, o: set_active(s, o, False))


def _set_password(args: argparse.Namespace, services: Services) -> dict[str, Any]:
    given = _given_password(args)
    password = new_password() if given is None else given
    with services.database.session() as session:
        operator = get_operator(session, args.email)
        set_password(session, services.hasher, operator, password)
        audit.record(
            session,
            "password.change",
            "success",
            Origin.cli(),
            company_id=operator.company_id,
            operator_id=operator.id,
        )
        view = _operator_view(operator)
    if given is None:
        view["password"] = password
    return view


def _given_password(args: argparse.Namespace) -> str | None:
    """The password given with --password-stdin or --password; None: generate one."""
    if args.password_stdin:
        if sys.stdin is None:  # started with its standard input closed
            raise DomainError("--password-stdin: the command has no standard input")
        if sys.stdin.isatty():
            # Typed by a person: not shown on the screen as it is typed.
            return _read_password(io.BytesIO(getpass.getpass("Password: ").encode() + b"\n"))
        return _read_password(sys.stdin.buffer)
    if args.password is not None:
        print(
            "erpauth: warning: a password given with --password can be read by other users of "
            "this machine while the command runs (ps, /proc) and may stay in your shell "
            "history; pipe it to --password-stdin instead",
            file=sys.stderr,
        )
    return args.password


# The longest line a password the policy allows can take: four bytes a character in UTF-8,
# and a CR LF.
_PASSWORD_LINE_BYTES = 4 * MAX_PASSWORD_LENGTH + 2


def _read_password(stream: BinaryIO) -> str:
    """The password on ``stream``: one line of UTF-8, without its line ending.

    Reading stops after the longest line allowed, so a long input is refused, never cut to a
    password nobody typed. The password policy itself is checked where the password is set.
    """
    line = stream.readline(_PASSWORD_LINE_BYTES + 1)
    if len(line) > _PASSWORD_LINE_BYTES:
        raise DomainError(f"the password must be at most {MAX_PASSWORD_LENGTH} characters long")
    # A pipe or file must end here (a terminal is read with getpass, one line).
    if stream.read(1):
        raise DomainError(
            "--password-stdin: standard input holds more than one line; give the password "
            "alone, on one line"
        )

    line = line.removesuffix(b"\n").removesuffix(b"\r")
    if not line:
        raise DomainError("--password-stdin: standard input holds no password")
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise DomainError("--password-stdin: the password is not UTF-8 text") from None


def _force_password_change(args: argparse.Namespace, services: Services) -> dict[str, Any]:
    with services.database.session() as session:
        operator = get_operator(session, args.email)
        password = force_password_change(session, services.hasher, operator)
        audit.record(
            session,
            "password.change",
            "success",
            Origin.cli(),
            company_id=operator.company_id,
            operator_id=operator.id,
            forced=True,
        )
        view = _operator_view(operator)
    view["password"] = password
    return view


def _revoke_tokens(args: argparse.Namespace, services: Services) -> dict[str, Any]:
    with services.database.session() as session:
        operator = get_operator(session, args.email)
        revoked = revoke_all_tokens(session, operator.id, "revoked_by_administrator")
        audit.record(
            session,
            "token.revoke",
            "success",
            Origin.cli(),
            company_id=operator.company_id,
            operator_id=operator.id,
            via="cli",
            access_tokens_revoked=revoked.access_tokens,
            refresh_tokens_revoked=revoked.refresh_tokens,
        )
        return {
            "email": operator.email,
            "access_tokens_revoked": revoked.access_tokens,
            "refresh_tokens_revoked": revoked.refresh_tokens,
        }


def _keys_list(args: argparse.Namespace, services: Services) -> dict[str, Any]:
    with services.database.session() as session:
        keys = list_signing_keys(session)
    if args.json:
        return {"keys": [_key_view(key) for key in keys]}
    return {
        f"key {number}": f"{key.kid}  {key.status}, created {key.created_at:%Y-%m-%d %H:%M} UTC"
        for number, key in enumerate(keys, start=1)
    }


def _keys_rotate(args: argparse.Namespace, services: Services) -> dict[str, Any]:
    with services.database.session() as session:
        key = rotate_signing_key(session, services.box)
        audit.record(session, "signing_key.rotate", "success", Origin.cli(), kid=key.kid)
    return _key_view(key)


def _keys_retire(args: argparse.Namespace, services: Services) -> dict[str, Any]:
    with services.database.session() as session:
        key = retire_signing_key(session, args.kid)
        audit.record(session, "signing_key.retire", "success", Origin.cli(), kid=key.kid)
    return _key_view(key)


def _key_view(key: SigningKeyInfo) -> dict[str, Any]:
    return {
        "kid": key.kid,
        "algorithm": key.algorithm,
        "status": key.status,
        "created_at": key.created_at.isoformat(),
        "retired_at": key.retired_at.isoformat() if key.retired_at else None,
    }


def _audit_export(args: argparse.Namespace, services: Services) -> None:
    """One event per line: JSON with --json, else readable text."""
    with services.database.session() as session:
        company_id = get_company(session, args.company).id if args.company else None
        events = audit.export_events(
            session, company_id, kind=args.kind, since=args.since, until=args.until
        )
        for event in events:
            view = audit.event_view(event)
            print(json.dumps(view) if args.json else _event_line(view))
    return None


def _event_line(view: dict[str, Any]) -> str:
    # Values are quoted and escaped as in the logs: some come from requests (an attempted
    # client ID), and one must not pose as another field or start a line of its own.
    who = " ".join(
        f"{name}={logfmt_value(view[name])}"
        for name in ("company_id", "operator_id", "client_id", "ip_address")
        if view[name]
    )
    detail = " ".join(f"{key}={logfmt_value(value)}" for key, value in view["detail"].items())
    return f"{view['occurred_at']} {view['kind']} {view['outcome']} {who} {detail}".rstrip()


def _timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _operator_view(operator: Any) -> dict[str, Any]:
    return {
        "email": operator.email,
        "display_name": operator.display_name,
        "active": operator.is_active,
        "system_admin": operator.is_system_admin,
        "api_permission": operator.api_permission,
    }


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    if "ERPAUTH_PUBLIC_URL" not in os.environ:
        # The issuer and the links we print should name the address actually served.
        host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host  # noqa: S104
        os.environ["ERPAUTH_PUBLIC_URL"] = f"http://{host}:{args.port}"
    share_cores_for_hashing(args.workers)
    services = build_services(settings, migrate=True)
    try:
        services.keys.reload()  # fail here, readably, rather than in every worker
    finally:
        services.close()
    print(
        f"erpauth: serving on http://{args.host}:{args.port} (Swagger UI at /docs)", file=sys.stderr
    )
    uvicorn.run(
        "erpauth.asgi:create",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        server_header=False,
        log_level="warning",
        **server_options(settings),
    )
    return 0


def share_cores_for_hashing(workers: int) -> None:
    """Gives each worker process its share of the cores as hashing threads, unless set.

    Hashing is all CPU: workers that each took every core would only make checks wait for
    each other, and keep more working memory.
    """
    if "ERPAUTH_HASHING_CONCURRENCY" not in os.environ:
        threads = max(1, min(available_cores() // max(workers, 1), MAX_HASHING_THREADS))
        os.environ["ERPAUTH_HASHING_CONCURRENCY"] = str(threads)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    services = build_services(settings, migrate=True)
    try:
        credentials = ensure_demo(services)
    finally:
        services.close()

    base = f"http://{args.host}:{args.port}"
    admin_password = _shown(credentials.admin_password)
    operator_password = _shown(credentials.operator_password)
    print(
        f"""
erpauth demo
  Web application   {base}/
  Swagger UI        {base}/docs   (click Authorize)
  Token endpoint    {base}/authentication/v1/authentication/token

  client_id         {credentials.client_id}
  client_secret     {credentials.client_secret}
  administrator     {credentials.admin_username}  password {admin_password}
  API operator      {credentials.operator_username}  password {operator_password}
""",
        file=sys.stderr,
    )
    return _serve(args, settings)


def _shown(password: str | None) -> str:
    if password is None:
        return "changed since the demo was made (erpauth operator-set-password sets a new one)"
    return password


def _print(args: argparse.Namespace, result: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(result))
        return
    width = max(len(key) for key in result) if result else 0
    for key, value in result.items():
        print(f"{key.replace('_', ' '):<{width}}  {value}")


def _fail(args: argparse.Namespace, message: str) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"error": message}))
    print(f"erpauth: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
