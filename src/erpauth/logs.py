"""Logging set-up: plain text for people, JSON lines for log collectors."""

import json
import logging
import re
from datetime import UTC, datetime

from erpauth.config import Settings


class JsonFormatter(logging.Formatter):
    """One JSON object per line. ``json.dumps`` (ASCII only) writes every control character,
    line break and non-ASCII character of a value as an escape, so a traceback or a caller's
    text cannot break the line."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        exception = _exception_text(self, record)
        if exception:
            line["exception"] = exception
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    """The record's traceback as the base class would append it: the cached ``exc_text``
    (shared by every handler of the record, and all there is when the record came from
    another process), else the formatted ``exc_info``, cached as the base class does."""
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    return record.exc_text or None


# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators. A request
# path or a User-Agent can carry any of them; written as they are, a newline would let a
# caller start a log line of its own making, and an escape sequence would rewrite a terminal.
_UNPRINTABLE = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
}
# logfmt: a value with any of these is quoted, so that one field cannot pose as two.
_NEEDS_QUOTES = re.compile(r'[\s="\\]')


def escape(text: str) -> str:
    """The text with every control character written out as an escape."""
    return text.translate(_UNPRINTABLE)


# Starts every line of a traceback or stack in the text format. A log line starts with its time
# (or, in another format, with whatever the format puts first), never with this, so however
# many lines an exception's message adds, none can pass as a log line of its own.
CONTINUATION = "| "


def continuation(text: str) -> str:
    """Multi-line text (a traceback) as continuation lines: split at its line feeds only,
    every other control character escaped (a carriage return, a terminal escape, a Unicode
    line separator), and each line prefixed with ``CONTINUATION``."""
    return "\n".join(CONTINUATION + escape(line) for line in text.split("\n"))


def logfmt_value(value: object) -> str:
    text = str(value)
    if text and not _NEEDS_QUOTES.search(text) and escape(text) == text:
        return text
    return '"' + escape(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


class TextFormatter(logging.Formatter):
    """One line per event: the message, then the fields as ``key=value`` pairs (logfmt).

    Whatever came from a request is escaped, so every event starts one line of its own.
    Only a traceback (``exc_info`` or a cached ``exc_text``) or a stack (``stack_info``) spans
    several: each of its lines starts with ``| `` and has its control characters escaped, since
    an exception's message can hold a caller's text (a newline followed by something that
    looks like a log line, a terminal escape). The traceback cached on the record stays as the
    base class makes it, for the other handlers of the record.
    """

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        lines = [self.formatMessage(record)]
        exception = _exception_text(self, record)
        if exception:
            lines.append(continuation(exception))
        if record.stack_info:
            lines.append(continuation(self.formatStack(record.stack_info)))
        return "\n".join(lines)

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = escape(super().formatMessage(record))
        fields = getattr(record, "fields", None)
        if fields:
            pairs = (f"{escape(k)}={logfmt_value(v)}" for k, v in fields.items() if v is not None)
            text = " ".join((text, *pairs))
        return text


# Every line of the text format starts with the time; a traceback's lines start with "| ".
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(TEXT_FORMAT))
    root = logging.getLogger("erpauth")
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    root.propagate = False
