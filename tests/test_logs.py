"""Log lines: one event per line, whatever a caller puts in a path or a header."""

import json
import logging
import re
import sys

import pytest
from starlette.requests import Request

from erpauth.http.errors import where
from erpauth.logs import CONTINUATION, TEXT_FORMAT, JsonFormatter, TextFormatter
from tests.support import LiveServer

TEXT = TextFormatter("%(levelname)s %(name)s: %(message)s")
LOGGED = TextFormatter(TEXT_FORMAT)  # as erpauth configures it


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


def failure(message: str) -> logging.LogRecord:
    """A record of an exception whose message holds a caller's text, logged with its traceback."""
    try:
        raise ValueError(message)
    except ValueError:
        entry = logging.LogRecord(
            "erpauth.test", logging.ERROR, __file__, 1, "unexpected error", (), sys.exc_info()
        )
    entry.fields = {"path": "/x"}
    return entry


FORGED = "bad input\n2026-01-01 ERROR forged\r2026-01-02 ERROR\u2028x\x1b[2J\x85"
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d ")


def assert_one_event(text: str) -> list[str]:
    """The text starts with one log line, and every further line is a marked continuation
    without a raw control character."""
    lines = text.split("\n")
    assert LOG_LINE.match(lines[0]), lines[0]
    for line in lines[1:]:
        assert line.startswith(CONTINUATION), line
        assert not LOG_LINE.match(line), line
    for raw in ("\r", "\x1b", "\x85", "\u2028"):
        assert raw not in text
    return lines


def test_a_traceback_still_spans_several_lines() -> None:
    lines = assert_one_event(LOGGED.format(failure("boom")))

    assert lines[0].endswith(" ERROR erpauth.test: unexpected error path=/x")
    assert lines[1] == "| Traceback (most recent call last):"
    assert lines[-1] == "| ValueError: boom"


def test_an_exception_message_cannot_forge_a_log_line_nor_reach_the_terminal() -> None:
    lines = assert_one_event(LOGGED.format(failure(FORGED)))

    assert lines[-2:] == [
        "| ValueError: bad input",
        "| 2026-01-01 ERROR forged\\x0d2026-01-02 ERROR\\u2028x\\x1b[2J\\x85",
    ]


def test_a_traceback_cached_by_another_formatter_is_made_safe_too() -> None:
    entry = failure(FORGED)
    plain = logging.Formatter().format(entry)
    assert "\n2026-01-01 ERROR forged" in plain and entry.exc_text

    assert_one_event(LOGGED.format(entry))
    # The cached traceback stays as the base class made it, for the other handlers.
    assert logging.Formatter().format(entry) == plain


def test_a_traceback_from_another_process_is_made_safe() -> None:
    # A record received over a socket or a queue has the traceback's text and no exc_info.
    entry = failure(FORGED)
    entry.exc_text = logging.Formatter().formatException(entry.exc_info)
    entry.exc_info = None

    lines = assert_one_event(LOGGED.format(entry))
    assert lines[-2] == "| ValueError: bad input"


def test_a_stack_is_made_safe() -> None:
    entry = record("seen")
    entry.stack_info = "Stack (most recent call last):\n  f(" + repr(FORGED) + ")\n" + FORGED

    lines = assert_one_event(LOGGED.format(entry))
    assert lines[1] == "| Stack (most recent call last):"


def test_json_lines_carry_a_traceback_and_a_stack_on_one_line() -> None:
    entry = failure(FORGED)
    entry.stack_info = "Stack (most recent call last):\n" + FORGED
    line = JsonFormatter().format(entry)

    assert "\n" not in line and "\r" not in line
    assert all(" " <= char <= "~" for char in line)
    parsed = json.loads(line)
    assert parsed["exception"].startswith("Traceback (most recent call last):\n")
    assert parsed["exception"].endswith("ValueError: " + FORGED)
    assert parsed["stack"].endswith(FORGED)

    entry.exc_info = None  # from another process: only the cached text
    assert json.loads(JsonFormatter().format(entry))["exception"] == parsed["exception"]


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
