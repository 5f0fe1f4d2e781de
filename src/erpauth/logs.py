"""Logging set-up: plain text for people, JSON lines for log collectors."""

import json
import logging
import re
from datetime import UTC, datetime

from erpauth.config import Settings


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


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


def logfmt_value(value: object) -> str:
    text = str(value)
    if text and not _NEEDS_QUOTES.search(text) and escape(text) == text:
        return text
    return '"' + escape(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


class TextFormatter(logging.Formatter):
    """One line per event: the message, then the fields as ``key=value`` pairs (logfmt).

    Whatever came from a request is escaped, so every event stays on one line of its own;
    only a traceback, appended by the base class, spans several.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = escape(super().formatMessage(record))
        fields = getattr(record, "fields", None)
        if fields:
            pairs = (f"{escape(k)}={logfmt_value(v)}" for k, v in fields.items() if v is not None)
            text = " ".join((text, *pairs))
        return text


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("erpauth")
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    root.propagate = False
