"""Log lines: one event per line, whatever a caller puts in a path or a header."""

import json
import logging

import pytest
from starlette.requests import Request

from erpauth.http.errors import where
from erpauth.logs import JsonFormatter, TextFormatter
from tests.support import LiveServer

TEXT = TextFormatter("%(levelname)s %(name)s: %(message)s")


def record(message: str, *args: object, **fields: object) -> logging.LogRecord:
    entry = logging.LogRecord("erpauth.test", logging.INFO, __file__, 1, message, args, None)
    entry.fields = fields
    return entry


def test_a_newline_from_a_caller_cannot_start_a_log_line_of_its_own() -> None:
    forged = "x\n2026-01-01 00:00:00 INFO erpauth.security: token.issue success"
    line = TEXT.format(record("bearer token refused: %s", forged, path="/a\r\nb", ua="\u2028"))

    assert "\n" not in line and "\r" not in line and "\u2028" not in line
    assert line == (
        "INFO erpauth.test: bearer token refused: x\\x0a2026-01-01 00:00:00 INFO "
        'erpauth.security: token.issue success path="/a\\x0d\\x0ab" ua="\\u2028"'
    )


def test_terminal_escape_sequences_are_written_out() -> None:
    line = TEXT.format(record("seen", agent="\x1b[2J\x1b[31mred\x9b"))

    assert "\x1b" not in line and "\x9b" not in line
    assert line.endswith('agent="\\x1b[2J\\x1b[31mred\\x9b"')


def test_field_values_that_could_pose_as_two_fields_are_quoted() -> None:
    line = TEXT.format(
        record("seen", plain="abc", spaced="a b=c", quoted='say "hi" \\', empty="", gone=None)
    )

    assert line == (
        'INFO erpauth.test: seen plain=abc spaced="a b=c" quoted="say \\"hi\\" \\\\" empty=""'
    )


def test_a_traceback_still_spans_several_lines() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        entry = record("failed")
        entry.exc_info = __import__("sys").exc_info()

    lines = TEXT.format(entry).splitlines()

    assert lines[0] == "INFO erpauth.test: failed"
    assert lines[-1] == "ValueError: boom"


def test_json_lines_escape_the_same_characters() -> None:
    line = JsonFormatter().format(record("seen %s", "a\nb", path="/a\u2028b\x1b"))

    assert "\n" not in line and "\u2028" not in line and "\x1b" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "seen a\nb"
    assert parsed["path"] == "/a\u2028b\x1b"


def test_a_control_character_in_a_request_path_is_logged_escaped(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="erpauth"), live.client() as client:
        answer = client.delete(
            "/authentication/v1/tokens/abc%1B%5B2J%7F",
            headers={"Authorization": "Bearer not-a-token"},
        )
    assert answer.status_code == 401

    refused = [r for r in caplog.records if r.getMessage().startswith("bearer token refused")]
    assert refused, "the refusal was not logged"
    line = TEXT.format(refused[-1])
    assert "\x1b" not in line and "\x7f" not in line
    assert 'path="/authentication/v1/tokens/abc\\x1b[2J\\x7f"' in line


def test_a_request_path_is_a_quoted_field_not_part_of_the_message() -> None:
    request = Request(
        {
            "type": "http",
            "method": "POST",
            "path": "/x outcome=success kind=token.issue",
            "headers": [],
            "query_string": b"",
        }
    )
    entry = logging.LogRecord(
        "erpauth.http", logging.INFO, __file__, 1, "client disconnected", (), None
    )
    entry.__dict__.update(where(request))

    assert TEXT.format(entry) == (
        'INFO erpauth.http: client disconnected method=POST path="/x outcome=success '
        'kind=token.issue"'
    )
