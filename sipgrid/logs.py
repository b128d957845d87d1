"""Logging set-up for every sipgrid process: plain text (the default) or one JSON object
per line (LOG_FORMAT=json), with what a line is about (call_id, method, aor, status...)
as fields of its own; level from --log-level or LOG_LEVEL. Quiet (warning) by default."""

from __future__ import annotations

import json
import logging
import sys
import time

# attributes every LogRecord has; anything else came in ``extra=`` and is a field
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line |= {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def setup(level: str | None = None, log_format: str = "text") -> None:
    """Log to stderr at ``level`` (warning by default), as JSON lines or as text."""
    level = (level or "warning").upper()
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
