"""`skupper link generate` and `link revoke` on the kubernetes platform, against the API
double: what generate prints is created, unchanged, through the real HTTP client (lightkube,
POSTing each document as `kubectl apply -f` would) in the receiving namespace; the
double's CRD schemas take it (a pruned field fails the fixture) and that namespace's
controller dials and reaches Ready. Then one of two generated links is revoked alone.
"""

from __future__ import annotations

from typing import Any

import yaml
from test_platform import (
    Cluster,
    _link_ready,
    _site,
    _wait,
    cluster,  # noqa: F401 (the fixture, used by name)
)


def _kubectl_apply(kube: Cluster, namespace: str, text: str) -> list[str]:
    """Create every document of ``text`` in ``namespace`` with lightkube, unchanged."""
    from lightkube import Client, KubeConfig, codecs
    from lightkube.generic_resource import create_namespaced_resource

    create_namespaced_resource("skupper.io", "v2alpha1", "Link", "links")
    client = Client(KubeConfig.from_file(str(kube.kubeconfig)), namespace=namespace)
    made = []
    try:
        for obj in codecs.load_all_yaml(text):
            created = client.create(obj, namespace=namespace)
            made.append(f"{created.kind}/{created.metadata.name}")  # type: ignore[union-attr]
    finally:
        client.close()
    return made


def _link(kube: Cluster, namespace: str, name: str) -> dict[str, Any]:
    (found,) = [lk for lk in kube.objects("links", namespace)
                if lk["metadata"]["name"] == name]
    return found


def test_generated_links_apply_unchanged_and_one_is_revoked_alone(
    cluster: Cluster,  # noqa: F811 (the fixture imported above)
) -> None:
    cluster.install("south")
    for namespace in ("west", "east", "south"):
        _site(cluster, namespace)
    texts = {}
    for peer in ("east", "south"):
        done = cluster.run("link", "generate", "--name", f"to-{peer}", "-n", "west")
        assert done.stderr.startswith(f'Link "to-{peer}" generated;'), done.stderr
        docs = [d for d in yaml.safe_load_all(done.stdout) if d]
        assert [d["kind"] for d in docs] == ["Secret", "Link"]
        texts[peer] = done.stdout
    for peer in ("east", "south"):
        assert _kubectl_apply(cluster, peer, texts[peer]) == [
            f"Secret/to-{peer}", f"Link/to-{peer}"]
    for peer in ("east", "south"):
        _wait(lambda peer=peer: _link_ready(cluster, peer, f"to-{peer}"),
              f"{peer}'s generated link Ready", 30)
    def incoming_ready() -> list[str]:
        lines = cluster.run("link", "status", "-n", "west").stdout.splitlines()
        ready = [line for line in lines if "incoming" in line and "Ready" in line]
        return ready if len(ready) == 2 else []

    assert "generated link to-east" in " ".join(_wait(incoming_ready, "west sees both"))
    (site,) = cluster.objects("sites", "west")
    assert [e["name"] for e in site["status"]["generatedLinks"]] == ["to-east", "to-south"]

    revoked = cluster.run("link", "revoke", "to-east", "-n", "west")
    assert revoked.stdout == ('Link "to-east" is revoked; its certificate is refused from '
                              "now on.\n")
    _wait(lambda: "revoked" in str((_link(cluster, "east", "to-east").get("status") or {})
                                   .get("message")), "east's link to say it was revoked")
    assert not _link_ready(cluster, "east", "to-east")
    assert _link_ready(cluster, "south", "to-south")
    (site,) = cluster.objects("sites", "west")
    assert [e.get("link") for e in site["status"]["revokedCertificates"]] == ["to-east"]
    rows = cluster.run("link", "status", "-n", "west").stdout
    assert any(line.split()[:3] == ["to-east", "incoming", "Revoked"]
               for line in rows.splitlines()), rows
    assert any(line.split()[:4] == ["to-south", "incoming", "Ready", "south"]
               for line in rows.splitlines()), rows
