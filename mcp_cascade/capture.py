"""Library log records, Python warnings and uncaught exceptions, into the process's JSON log.

Without this, a library's warning, a ``warnings.warn`` or a traceback from a
worker thread would reach stderr as plain text, beside (or instead of) the
JSON lines an operator's tooling reads, and never reach ``log_file``.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from types import TracebackType

from mcp_cascade.events import Event, Observer


class _ToEvents(logging.Handler):
    """Each library record at WARNING or above becomes one event (``library_log`` or ``python_warning``)."""

    def __init__(self, observer: Observer) -> None:
        super().__init__(logging.WARNING)
        self._observer = observer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            reason = record.getMessage()
            if record.exc_info:
                reason += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            self._observer.emit(
                Event(
                    "python_warning" if record.name == "py.warnings" else "library_log",
                    level="error" if record.levelno >= logging.ERROR else "warning",
                    reason=reason,
                    fields={"logger": record.name},
                )
            )
        except Exception:
            self.handleError(record)


def _uncaught(observer: Observer, where: str, exc: BaseException | None, tb: TracebackType | None) -> None:
    text = "".join(traceback.format_exception(type(exc), exc, tb)).rstrip() if exc else "unknown"
    observer.emit(Event("uncaught", level="error", reason=text, fields={"where": where}))


def capture_into(observer: Observer) -> None:
    """Route library logging (WARNING and up), warnings and uncaught exceptions to ``observer``.

    Uncaught exceptions in asyncio tasks arrive through the ``asyncio``
    logger; in threads through :func:`threading.excepthook`; in the main
    thread through :func:`sys.excepthook`.
    """
    logging.captureWarnings(True)
    root = logging.getLogger()
    root.handlers[:] = [_ToEvents(observer)]
    root.setLevel(logging.WARNING)
    sys.excepthook = lambda kind, exc, tb: _uncaught(observer, "main", exc, tb)
    threading.excepthook = lambda args: _uncaught(
        observer, f"thread {args.thread.name if args.thread else '?'}", args.exc_value, args.exc_traceback
    )
