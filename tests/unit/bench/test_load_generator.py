"""The benches' own measuring parts, run for real on loopback: the load generator every
path of bench_services.py is measured with, and the fold of py-spy's stacks."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests_support import stop_pid

BENCH = Path(__file__).resolve().parents[3] / "bench"
sys.path.insert(0, str(BENCH))

import profiles  # noqa: E402
import traffic  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    from service_sites import bench_pki

    pki = tmp_path_factory.mktemp("pki")
    bench_pki(pki)
    child = subprocess.Popen([sys.executable, str(BENCH / "traffic.py"), "server",
                              "--pki", str(pki)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        ports = json.loads(child.stdout.readline())
        ports["pki"] = pki  # type: ignore[assignment]
        yield ports
    finally:
        stop_pid(child.pid)
        child.wait(5)
        if child.stdout is not None:
            child.stdout.close()


def test_throughput_waits_for_the_sink_to_have_every_byte(server: dict[str, int]) -> None:
    client = traffic.Client(server["sink"], None, cap=10)
    assert traffic.throughput(client, streams=4, mib=8) > 0


def test_tls_paths_speak_mutual_tls(server: dict[str, int]) -> None:
    tls = traffic.client_tls(Path(server["pki"]))  # type: ignore[arg-type]
    client = traffic.Client(server["tls-echo"], tls, cap=10)
    samples = traffic.latency(client, requests=20)
    assert len(samples) == 20 and all(s > 0 for s in samples)
    with pytest.raises(OSError):  # without the client certificate the server refuses
        bare = traffic.Client(server["tls-echo"], None, cap=10)
        with bare.connect() as sock:
            sock.sendall(b"x" * traffic.ECHO_SIZE)
            if traffic.recv_exact(sock, 1) is None:
                raise ConnectionResetError("closed")


def test_connection_rate_counts_every_connection(server: dict[str, int]) -> None:
    client = traffic.Client(server["echo"], None, cap=10)
    assert traffic.connection_rate(client, clients=4, total=40) > 0


def test_a_sink_that_never_answers_fails_the_run_instead_of_hanging() -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as silent:
        client = traffic.Client(silent.getsockname()[1], None, cap=0.5)
        with pytest.raises(RuntimeError, match="threads failed"):
            traffic.throughput(client, streams=1, mib=1)


def test_fold_charges_each_sample_to_its_innermost_function(tmp_path: Path) -> None:
    raw = tmp_path / "x.pyspy.txt"
    raw.write_text(
        "<module> (a.py:1);run (loop.py:10);select (selectors.py:5) 7\n"
        "<module> (a.py:1);run (loop.py:10);write (t.py:3) 2\n"
        "<module> (a.py:1);run (loop.py:11);write (t.py:4) 1\n"
    )
    total, by_function, by_file = profiles.fold(raw)
    assert total == 10
    assert by_function == {"select (selectors.py)": 7, "write (t.py)": 3}
    assert by_file == {"selectors.py": 7, "t.py": 3}
