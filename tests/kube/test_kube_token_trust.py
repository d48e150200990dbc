"""On Kubernetes too, a token never takes over the site that redeems it.

The controller's AccessToken reconciler redeems tokens applied with kubectl, which no
token-file check has seen: it runs those checks itself, before any POST, and never
writes over a Secret that is there (the site's own, or anyone's in the namespace).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from kubehelp import request
from test_platform import Cluster, _issue, _redemptions, _site, _wait, cluster

__all__ = ["cluster"]  # the fixture, shared with test_platform

TOKENS = "/apis/skupper.io/v2alpha1/namespaces/east/accesstokens"


def _secret(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    for secret in cluster.objects("secrets", namespace):
        if secret["metadata"]["name"] == name:
            return dict(secret.get("data") or {})
    return None


def _applied(cluster: Cluster, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Apply an AccessToken as kubectl would; its status once the controller settled it."""
    doc = {"apiVersion": "skupper.io/v2alpha1", "kind": "AccessToken",
           "metadata": {"name": name}, "spec": spec}
    status, answer = request(cluster.double.url, "POST", TOKENS, doc)
    assert status == 201, answer

    def settled() -> dict[str, Any] | None:
        for token in cluster.objects("accesstokens", "east"):
            if token["metadata"]["name"] == name and (token.get("status") or {}).get("status") \
                    in ("Error", "Ready"):
                return dict(token["status"])
        return None

    return dict(_wait(settled, f"the AccessToken {name} settles"))


def test_applied_access_tokens_cannot_take_over_the_site(cluster: Cluster,
                                                          tmp_path: Path) -> None:
    _site(cluster, "west")
    _site(cluster, "east")
    token = _issue(cluster, "west", tmp_path / "token.yaml")
    grant = token["metadata"]["name"]
    site_ca = _secret(cluster, "east", "skupper-site-ca")
    assert site_ca

    cases = {
        "skupper-site-ca": (token["spec"], "reserved for the site's own credentials"),
        "skupper-later": (token["spec"], "reserved for the site's own credentials"),
        "costly": ({**token["spec"], "linkCost": 2_000_000}, "spec.linkCost must be"),
        "userinfo": ({**token["spec"], "url": token["spec"]["url"].replace(
            "https://", "https://u:p@", 1)}, "user information"),
    }
    for name, (spec, fragment) in cases.items():
        status = _applied(cluster, name, spec)
        assert status["status"] == "Error" and fragment in status["message"], status
        assert "\n" not in status["message"]
    assert _redemptions(cluster, "west") == {grant: 0}  # nothing was spent
    assert _secret(cluster, "east", "skupper-site-ca") == site_ca
    assert cluster.objects("links", "east") == []


def test_redeem_never_replaces_a_secret_of_the_tokens_name(cluster: Cluster,
                                                           tmp_path: Path) -> None:
    _site(cluster, "west")
    _site(cluster, "east")
    path = tmp_path / "token.yaml"
    grant = _issue(cluster, "west", path)["metadata"]["name"]
    theirs = {"password": base64.b64encode(b"an app's own secret").decode()}
    status, answer = request(cluster.double.url, "POST", "/api/v1/namespaces/east/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": grant}, "data": theirs})
    assert status == 201, answer

    done = cluster.fails("access-token", "redeem", str(path), "-n", "east")
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("Error: "), done.stderr
    assert f'A secret named "{grant}" already exists' in done.stderr
    assert _secret(cluster, "east", grant) == theirs
    assert cluster.objects("links", "east") == []
    assert _redemptions(cluster, "west") == {grant: 0}
