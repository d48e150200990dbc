"""A hostile client cannot fill the disk through the daemon's log, nor forge its lines.

Issue 9, point 5: the daemon writes its own log, rotated by size into a few 0600
files, one line per record, rate-limited per message template; its folders are 0700.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import stat
from pathlib import Path

from tests_support import Skupper, table

# A smaller bound than the default 5 MiB, so a test flood shows rotation.
MAX_BYTES = 2048
BACKUPS = 3
LONGEST_LINE = 2500  # one record is bounded too (logs.MAX_MESSAGE plus its prefix)
FLOOD = 2000

_MALFORMED = (
    b"GARBAGE\r\n\r\n",
    b"GET /\x1b[31mred\r\nFAKE: 1 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 9000 + b"\r\n\r\n",
    b"GET /\x00\x01 HTTP/1.1\r\n\r\n",
    b"POST /\xff\xfe HTTP/1.1\r\nContent-Length: x\r\n\r\n",
)
_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")


def _flood(port: int, count: int) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the attacker has no reason to check anything
    for i in range(count):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                    context.wrap_socket(raw) as tls:
                tls.sendall(_MALFORMED[i % len(_MALFORMED)])
                tls.recv(1024)
        except OSError:
            pass  # the server may cut a request off: that is its right


def _log_files(skupper: Skupper) -> list[Path]:
    return sorted((skupper.namespace_dir() / "logs").glob("daemon.log*"))


def test_a_flood_of_malformed_requests_keeps_the_log_bounded_private_and_one_line(
    skupper: Skupper,
) -> None:
    skupper.env["SKUPPER_LOG_MAX_BYTES"] = str(MAX_BYTES)
    skupper.run("site", "create", "west", "--enable-link-access")
    ports = json.loads((skupper.namespace_dir() / "runtime" / "ports.json").read_text())

    _flood(ports["grant-server"], FLOOD)

    # The daemon still serves after the flood.
    (row,) = table(skupper.run("site", "status").stdout)
    assert row["STATUS"] == "Ready"
    skupper.run("system", "stop")  # a clean stop reports what was suppressed

    files = _log_files(skupper)
    names = [path.name for path in files]
    assert "daemon.log.1" in names, names  # it rotated...
    assert len(files) <= BACKUPS + 1, names  # ...into a few files only
    for path in [*files, *(skupper.namespace_dir() / "logs").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert path.stat().st_size <= MAX_BYTES + LONGEST_LINE, path
    text = "".join(path.read_text(errors="replace") for path in files)
    lines = text.splitlines()
    assert all(_RECORD.match(line) for line in lines), [
        line for line in lines if not _RECORD.match(line)][:3]
    assert "\x1b" not in text and "\r" not in text and "\x00" not in text
    assert "Traceback" not in text
    assert "suppressed" in text  # the flood was counted, not written
    malformed = [line for line in lines if "malformed HTTP request" in line]
    assert 0 < len(malformed) < FLOOD / 10


def test_the_data_folders_are_0700_and_the_log_0600(skupper: Skupper) -> None:
    skupper.run("site", "create", "west")
    data = skupper.home / "data" / "skupper"
    for folder in (data, data / "namespaces", skupper.namespace_dir(),
                   skupper.namespace_dir() / "logs", skupper.namespace_dir() / "runtime"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    logs = skupper.namespace_dir() / "logs"
    for name in ("daemon.log", "daemon-stderr.log"):
        assert stat.S_IMODE((logs / name).stat().st_mode) == 0o600, name
