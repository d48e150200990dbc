"""The daemon's own log: bounded in size, private, one line per record, rate-limited.

Anyone who can reach the grant server or the link port can make the daemon log (a
malformed request, a refused handshake), so the log is built to survive a hostile
client:

- **Size.** ``daemon.log`` rotates at ``MAX_BYTES`` into ``BACKUP_COUNT`` numbered files
  (``daemon.log.1`` is the newest), so the log never takes more than
  ``MAX_BYTES * (BACKUP_COUNT + 1)`` on disk (20 MiB), whatever a client sends.
- **Privacy.** Every file is created 0600 (rotation renames, so rotated files keep it).
- **One line.** The final text of every record is escaped with ``base.text.printable``
  (no raw CR, LF, ESC or bidi mark) and bounded; an exception is summarised on the same
  line (type, message, innermost frame) instead of a multi-line traceback. Code that
  logs untrusted values escapes them itself too: this is the last line of defence.
- **Clients' mistakes are short.** A request aiohttp cannot parse is one WARNING
  naming the peer and the error's kind, not a traceback quoting the request.
- **Rate.** Records are limited per (logger, message template): after a burst of
  ``BURST`` the template gets one record every ``REFILL_SECONDS``; what is dropped is
  counted and reported later in one line ("suppressed N similar messages").
"""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import re
import sys
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from skupper.base.text import printable

MAX_BYTES = 5 * 1024 * 1024
BACKUP_COUNT = 3
BURST = 50  # records of one template written back to back before limiting starts
REFILL_SECONDS = 1.0  # then one record of that template per this many seconds
MAX_KEYS = 1024  # templates tracked at once (the oldest is forgotten first)
MAX_MESSAGE = 2000  # characters of one record's text, before escaping
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVEL_ENV = "SKUPPER_LOG_LEVEL"
MAX_BYTES_ENV = "SKUPPER_LOG_MAX_BYTES"  # a smaller bound, e.g. for a small disk

_SUMMARY_LOGGER = "skupper.daemon.logs"


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler whose files are 0600 from the moment they exist."""

    def _open(self) -> io.TextIOWrapper:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(self.baseFilename, flags, 0o600)
        try:
            os.fchmod(fd, 0o600)  # a log written by an older version may be wider
            return open(fd, "a", encoding=self.encoding or "utf-8",
                        errors="backslashreplace")
        except BaseException:
            os.close(fd)
            raise


class OneLineFormatter(logging.Formatter):
    """Every record as exactly one escaped, bounded line."""

    def converter(self, seconds: float | None) -> time.struct_time:
        return time.gmtime(seconds)  # timestamps in UTC, like the rest of the project

    def __init__(self) -> None:
        super().__init__(FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception as exc:  # a bad %-format must not lose the record
            message = f"{record.msg!r} (unformattable: {type(exc).__name__})"
        if record.exc_info and record.exc_info[0] is not None:
            message += f" [{exception_summary(record.exc_info)}]"
        record.message = printable(message, MAX_MESSAGE)
        record.asctime = self.formatTime(record, self.datefmt)
        return printable(self.formatMessage(record), MAX_MESSAGE + 200)


def exception_summary(
    exc_info: tuple[type[BaseException], BaseException, TracebackType | None]
    | tuple[None, None, None],
) -> str:
    """``Type: message (at file:line in function)``: the innermost frame only."""
    kind, value, tb = exc_info
    if kind is None:
        return ""
    text = f"{kind.__name__}: {value}" if str(value) else kind.__name__
    frames = traceback.extract_tb(tb) if tb is not None else []
    if frames:
        last = frames[-1]
        text += f" (at {os.path.basename(last.filename)}:{last.lineno} in {last.name})"
    return text


@dataclass
class _Bucket:
    tokens: float
    updated: float
    suppressed: int = 0
    first_suppressed: float = 0.0
    sample: str = ""


_VARYING = re.compile(r"0x[0-9a-fA-F]+|\d+")


def _template(msg: object) -> str:
    """What records of one kind share: the first line, numbers and addresses blanked.

    Most records carry their values as %-args, so ``msg`` is already the template; a
    message built beforehand (asyncio's "SSL handshake failed\nprotocol: <... at 0x...>")
    would otherwise make every record its own kind and escape the limit.
    """
    text = str(msg)[:MAX_MESSAGE].split("\n", 1)[0]
    return _VARYING.sub("#", text)[:200]


class RateLimit(logging.Filter):
    """Per (logger, template) token buckets; dropped records are counted, then reported.

    ``report`` receives the summary records ("suppressed N similar messages"); it is
    called when the template next gets a record through, when another template logs
    after this one went quiet, and at ``flush``.
    """

    def __init__(
        self,
        report: Any,
        *,
        burst: int = BURST,
        refill_seconds: float = REFILL_SECONDS,
        max_keys: int = MAX_KEYS,
        clock: Any = time.monotonic,
    ) -> None:
        super().__init__()
        self._report = report
        self._burst = burst
        self._refill = refill_seconds
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == _SUMMARY_LOGGER:
            return True
        now = self._clock()
        key = (record.name, _template(record.msg))
        summaries: list[logging.LogRecord] = []
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = _Bucket(tokens=float(self._burst), updated=now)
                self._buckets[key] = bucket
                while len(self._buckets) > self._max_keys:
                    old_key, old = self._buckets.popitem(last=False)
                    summaries += self._take_summary(old_key, old)
            else:
                self._buckets.move_to_end(key)
                bucket.tokens = min(float(self._burst),
                                    bucket.tokens + (now - bucket.updated) / self._refill)
                bucket.updated = now
            allowed = bucket.tokens >= 1.0
            if allowed:
                bucket.tokens -= 1.0
                summaries += self._take_summary(key, bucket)
            else:
                if not bucket.suppressed:
                    bucket.first_suppressed = now
                    bucket.sample = str(record.msg)
                bucket.suppressed += 1
            summaries += self._quiet_summaries(now, skip=key)
        for summary in summaries:
            self._report(summary)
        return allowed

    def flush(self) -> None:
        """Report every count not yet reported (the daemon is stopping)."""
        with self._lock:
            summaries = [s for key, bucket in self._buckets.items()
                         for s in self._take_summary(key, bucket)]
        for summary in summaries:
            self._report(summary)

    def _quiet_summaries(self, now: float, skip: tuple[str, str]) -> list[logging.LogRecord]:
        # A template that went quiet would otherwise never report what it dropped.
        found = []
        for key, bucket in self._buckets.items():
            if key != skip and bucket.suppressed and now - bucket.updated > self._refill:
                found += self._take_summary(key, bucket)
        return found

    @staticmethod
    def _take_summary(key: tuple[str, str], bucket: _Bucket) -> list[logging.LogRecord]:
        if not bucket.suppressed:
            return []
        count, bucket.suppressed = bucket.suppressed, 0
        record = logging.LogRecord(
            _SUMMARY_LOGGER, logging.WARNING, __file__, 0,
            "suppressed %d similar messages of %s since %s: %s",
            (count, key[0],
             datetime.now(UTC).strftime("%H:%M:%S") if bucket.first_suppressed else "-",
             printable(bucket.sample, 120)),
            None,
        )
        return [record]


def log_level() -> tuple[int, str | None]:
    """The level from SKUPPER_LOG_LEVEL (default INFO), and a complaint if it is invalid."""
    name = os.environ.get(LEVEL_ENV, "INFO").strip().upper() or "INFO"
    level = logging.getLevelName(name)
    if isinstance(level, int):
        return level, None
    return logging.INFO, f"{LEVEL_ENV}={printable(name, 40)} is not a log level; using INFO"


def max_bytes() -> int:
    try:
        wanted = int(os.environ.get(MAX_BYTES_ENV, "")[:12])
    except ValueError:
        return MAX_BYTES
    return min(max(wanted, 1024), MAX_BYTES)  # smaller only: never a bigger disk footprint


class DaemonLog:
    """The installed handler and its rate limit, so stopping can flush both."""

    def __init__(self, handler: logging.Handler, limit: RateLimit) -> None:
        self.handler = handler
        self.limit = limit

    def close(self) -> None:
        self.limit.flush()
        self.handler.flush()


def configure(log_file: Path) -> DaemonLog:
    """Send every record of this process to ``log_file``, rotated, 0600, rate-limited.

    Raises OSError when the file cannot be opened (the caller reports it on stderr).
    """
    return _install(PrivateRotatingFileHandler(
        log_file, maxBytes=max_bytes(), backupCount=BACKUP_COUNT, encoding="utf-8",
    ))


def configure_stream(stream: IO[str]) -> DaemonLog:
    """The same one-line, rate-limited records on ``stream`` (the cluster controller's
    stderr, which its container runtime keeps and rotates)."""
    return _install(logging.StreamHandler(stream))


def _install(handler: logging.Handler) -> DaemonLog:
    from skupper.grants.server import quiet_protocol_errors

    handler.setFormatter(OneLineFormatter())
    # What clients can make aiohttp and asyncio log (tracebacks, quoted requests) is one
    # short line, for the grant server and the observer alike.
    quiet_protocol_errors()
    limit = RateLimit(handler.handle)
    handler.addFilter(limit)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    level, complaint = log_level()
    root.setLevel(level)
    logging.captureWarnings(True)
    _route_uncaught_exceptions()
    if complaint:
        logging.getLogger("skupper.daemon").warning("%s", complaint)
    return DaemonLog(handler, limit)


def _route_uncaught_exceptions() -> None:
    """Uncaught exceptions in the main thread or a worker thread go to the log, one line."""
    log = logging.getLogger("skupper.daemon")

    def main_hook(kind: type[BaseException], value: BaseException,
                  tb: TracebackType | None) -> None:
        log.critical("uncaught exception", exc_info=(kind, value, tb))

    def thread_hook(args: Any) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        log.error("uncaught exception in thread %s", name,
                  exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    sys.excepthook = main_hook
    threading.excepthook = thread_hook
