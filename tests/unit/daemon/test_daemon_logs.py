"""The daemon's log handler: one line per record, 0600 rotated files, a rate limit."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.http_exceptions import LineTooLong

from skupper.daemon import logs

LINE_START = "2"  # every record starts with its timestamp (the year)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logger(tmp_path: Path) -> Iterator[tuple[logging.Logger, logs.PrivateRotatingFileHandler]]:
    """A private logger writing through the daemon's handler stack (not the root's)."""
    handler = logs.PrivateRotatingFileHandler(tmp_path / "daemon.log", maxBytes=2048,
                                              backupCount=logs.BACKUP_COUNT)
    handler.setFormatter(logs.OneLineFormatter())
    log = logging.getLogger(f"test-daemon-logs-{tmp_path.name}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    try:
        yield log, handler
    finally:
        log.removeHandler(handler)
        handler.close()


def _lines(folder: Path) -> list[str]:
    text = "".join(p.read_text() for p in sorted(folder.glob("daemon.log*")))
    return text.splitlines()


def test_a_record_with_cr_lf_esc_is_one_escaped_line(
    logger: tuple[logging.Logger, logs.PrivateRotatingFileHandler], tmp_path: Path
) -> None:
    log, _ = logger
    log.info("grant %s from %s", "abc\r\nFAKE 2026 INFO skupper: forged", "\x1b[31mred\u202e")
    try:
        raise ValueError("bad\nvalue\x1b[2J")
    except ValueError:
        log.exception("request %s failed", "x\ny")
    lines = _lines(tmp_path)
    assert len(lines) == 2, lines
    assert all(line.startswith(LINE_START) for line in lines)
    assert "\\x0d\\x0aFAKE" in lines[0] and "\\x1b[31m" in lines[0] and "\\u202e" in lines[0]
    assert "Traceback" not in lines[1]
    assert "ValueError: bad\\x0avalue\\x1b[2J" in lines[1]
    assert "test_daemon_logs.py" in lines[1]  # where it was raised, on the same line
    assert "\x1b" not in "".join(lines) and "\r" not in "".join(lines)


def test_a_huge_record_is_bounded(
    logger: tuple[logging.Logger, logs.PrivateRotatingFileHandler], tmp_path: Path
) -> None:
    log, _ = logger
    log.warning("name %s", "n" * 100_000)
    (line,) = _lines(tmp_path)
    assert len(line) < logs.MAX_MESSAGE + 300


def test_rotated_files_are_0600_and_few_even_with_an_open_umask(
    logger: tuple[logging.Logger, logs.PrivateRotatingFileHandler], tmp_path: Path
) -> None:
    log, _ = logger
    old = os.umask(0)
    try:
        for i in range(500):
            log.info("record %d %s", i, "x" * 80)
    finally:
        os.umask(old)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["daemon.log", "daemon.log.1", "daemon.log.2", "daemon.log.3"]
    for name in names:
        path = tmp_path / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
        assert path.stat().st_size <= 2048, name


def test_a_log_left_world_readable_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "daemon.log"
    path.write_text("old\n")
    path.chmod(0o644)
    handler = logs.PrivateRotatingFileHandler(path, maxBytes=4096, backupCount=1)
    handler.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_malformed_request_is_one_short_line_without_its_bytes(
    logger: tuple[logging.Logger, logs.PrivateRotatingFileHandler], tmp_path: Path
) -> None:
    from skupper.grants.server import quiet_protocol_errors

    quiet_protocol_errors()  # what the daemon's log set-up installs
    _, handler = logger
    aiohttp_log = logging.getLogger("aiohttp.server")
    aiohttp_log.addHandler(handler)
    aiohttp_log.propagate = False
    try:
        error = LineTooLong(b"GET /\x1b[31m" + b"a" * 5000, 4096)
        try:
            raise error
        except LineTooLong as exc:
            aiohttp_log.exception("Error handling request from %s", "127.0.0.1", exc_info=exc)
    finally:
        aiohttp_log.removeHandler(handler)
        aiohttp_log.propagate = True
    (line,) = _lines(tmp_path)
    assert " INFO aiohttp.server: malformed HTTP request from 127.0.0.1 refused: " \
           "LineTooLong (HTTP 400)" in line
    assert "aaaa" not in line and "\\x1b" not in line


def _record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, None)


def test_rate_limit_drops_after_a_burst_and_reports_the_count() -> None:
    clock = _Clock()
    reported: list[logging.LogRecord] = []
    limit = logs.RateLimit(reported.append, burst=5, refill_seconds=2.0, clock=clock)
    passed = sum(limit.filter(_record("aiohttp.server", "bad request from %s", i))
                 for i in range(1000))
    assert passed == 5
    assert reported == []  # counted, not yet reported
    # Another template is not held back by the first one's flood.
    assert limit.filter(_record("skupper.grants.server", "redeemed: grant=%s", "g"))
    clock.now += 2.5  # one refill later, the template gets one record through...
    assert limit.filter(_record("aiohttp.server", "bad request from %s", "x"))
    (summary,) = reported  # ...and the drops are reported first, in one line
    assert summary.getMessage().startswith("suppressed 995 similar messages of aiohttp.server")
    assert not limit.filter(_record("aiohttp.server", "bad request from %s", "y"))
    limit.flush()
    assert reported[-1].getMessage().startswith("suppressed 1 similar messages")


def test_rate_limit_reports_a_template_that_went_quiet() -> None:
    clock = _Clock()
    reported: list[logging.LogRecord] = []
    limit = logs.RateLimit(reported.append, burst=2, refill_seconds=1.0, clock=clock)
    for _ in range(10):
        limit.filter(_record("a", "flood %s", 1))
    clock.now += 5
    assert limit.filter(_record("b", "something else"))
    assert [r.getMessage().split(" of ")[0] for r in reported] == ["suppressed 8 similar messages"]


def test_rate_limit_treats_messages_that_differ_only_in_numbers_as_one_kind() -> None:
    reported: list[logging.LogRecord] = []
    limit = logs.RateLimit(reported.append, burst=3, clock=_Clock())
    passed = sum(limit.filter(_record(
        "asyncio", f"SSL handshake failed on port {i}\nprotocol: <object at 0x{i:x}>"))
        for i in range(100))
    assert passed == 3


def test_rate_limit_tracks_a_bounded_number_of_templates() -> None:
    reported: list[logging.LogRecord] = []
    limit = logs.RateLimit(reported.append, burst=1, max_keys=10, clock=_Clock())
    for i in range(10_000):
        key = "".join(chr(ord("a") + int(d)) for d in str(i))  # no digits: each its own kind
        limit.filter(_record("a", f"unique {key}"))
        limit.filter(_record("a", f"unique {key}"))
    assert len(limit._buckets) <= 10
    assert sum(int(r.getMessage().split()[1]) for r in reported) >= 9_990


def test_log_level_and_size_settings_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(logs.LEVEL_ENV, "\x1bnonsense")
    level, complaint = logs.log_level()
    assert level == logging.INFO and complaint and "\x1b" not in complaint
    monkeypatch.setenv(logs.MAX_BYTES_ENV, "9" * 5000)
    assert logs.max_bytes() == logs.MAX_BYTES  # never more than the documented bound
    monkeypatch.setenv(logs.MAX_BYTES_ENV, "1")
    assert logs.max_bytes() == 1024
