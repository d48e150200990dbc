"""``system apply -f`` on the docker platform: the Site of the file starts its container,
the Listener listens on the host network, a second apply changes nothing, and ``system
delete -f`` removes the container with the site."""

from __future__ import annotations

import pytest
from docker_support import ContainerSkupper, EngineUnderTest

from tests_support import free_port, table

pytestmark = pytest.mark.e2e


def test_a_site_and_listener_file_applies_on_docker(dk: ContainerSkupper,
                                                    docker_engine: EngineUnderTest) -> None:
    port = free_port()
    text = (dk.run("site", "generate", "dk", "--enable-link-access").stdout + "---\n"
            + dk.run("listener", "generate", "backend", str(port)).stdout)
    done = dk.run("system", "apply", "-f", "-", "-n", "dk", "--platform", "docker", input=text,
                  timeout=120)
    assert done.stdout.splitlines()[:2] == ['Site "dk" created', 'Listener "backend" created']
    assert 'Listener "backend" is configured (No matching connectors).' in done.stdout
    info = docker_engine.inspect("skupper-dk")
    assert info is not None and info["State"]["Running"]  # type: ignore[index]
    assert table(dk.run("listener", "status", "-n", "dk").stdout)[0]["PORT"] == str(port)
    again = dk.run("system", "apply", "-f", "-", "-n", "dk", input=text)  # the namespace's own
    assert again.stdout.splitlines()[:2] == ['Site "dk" unchanged', 'Listener "backend" unchanged']
    gone = dk.run("system", "delete", "-f", "-", "-n", "dk", input=text, timeout=120)
    assert gone.stdout.splitlines() == ['Listener "backend" deleted', 'Site "dk" deleted']
    assert docker_engine.inspect("skupper-dk") is None
