"""The contract the API double must keep, checked with plain HTTP (no Kubernetes client).

Each check is a rule of the real API server that the Kubernetes store relies on. If the
double ever drifts from one, these fail before a store test can pass for a wrong reason.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from double import DoubleThread
from kubehelp import create_namespace, request

from skupper.certs.issue import generate_ca, issue_certificate

SITES = "/apis/skupper.io/v2alpha1/namespaces/default/sites"
SECRETS = "/api/v1/namespaces/default/secrets"


def site(name: str = "west", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "skupper.io/v2alpha1", "kind": "Site", "metadata": {"name": name},
            "spec": dict(spec)}


def create(double: DoubleThread, name: str = "west", **spec: Any) -> dict[str, Any]:
    status, body = request(double.url, "POST", SITES, site(name, **spec))
    assert status == 201, body
    return body


def test_create_is_201_with_uid_version_generation(double: DoubleThread) -> None:
    body = create(double, linkAccess="default")
    meta = body["metadata"]
    assert meta["uid"] and meta["generation"] == 1 and meta["creationTimestamp"].endswith("Z")
    assert meta["namespace"] == "default" and int(meta["resourceVersion"]) > 0
    status, again = request(double.url, "POST", SITES, site())
    assert (status, again["reason"]) == (409, "AlreadyExists")
    assert again["details"] == {"name": "west", "group": "skupper.io", "kind": "sites"}


def test_status_in_a_create_is_dropped(double: DoubleThread) -> None:
    doc = site()
    doc["status"] = {"status": "Ready"}
    status, body = request(double.url, "POST", SITES, doc)
    assert status == 201 and "status" not in body


def test_get_missing_object_versus_missing_kind(double: DoubleThread) -> None:
    status, body = request(double.url, "GET", f"{SITES}/nope")
    assert (status, body["reason"], body["details"]["name"]) == (404, "NotFound", "nope")
    status, body = request(double.url, "GET", "/apis/nope.io/v1/namespaces/default/nopes")
    assert (status, body["message"]) == (404, "the server could not find the requested resource")


def test_custom_resources_exist_only_with_their_crd(bare_double: DoubleThread) -> None:
    status, _ = request(bare_double.url, "GET", SITES)
    assert status == 404


def test_put_needs_a_current_version(double: DoubleThread) -> None:
    body = create(double)
    version = body["metadata"]["resourceVersion"]
    body["spec"] = {"ha": True}
    missing = json.loads(json.dumps(body))
    del missing["metadata"]["resourceVersion"]
    status, answer = request(double.url, "PUT", f"{SITES}/west", missing)
    assert (status, answer["reason"]) == (422, "Invalid")
    status, updated = request(double.url, "PUT", f"{SITES}/west", body)
    assert status == 200
    assert updated["metadata"]["generation"] == 2
    assert int(updated["metadata"]["resourceVersion"]) > int(version)
    status, answer = request(double.url, "PUT", f"{SITES}/west", body)  # stale now
    assert (status, answer["reason"]) == (409, "Conflict")


def test_put_without_spec_change_keeps_generation_and_noop_keeps_version(
        double: DoubleThread) -> None:
    body = create(double)
    body["metadata"]["labels"] = {"a": "b"}
    status, labelled = request(double.url, "PUT", f"{SITES}/west", body)
    assert status == 200 and labelled["metadata"]["generation"] == 1
    status, same = request(double.url, "PUT", f"{SITES}/west", labelled)
    assert same["metadata"]["resourceVersion"] == labelled["metadata"]["resourceVersion"]


def test_status_subresource_separates_spec_and_status(double: DoubleThread) -> None:
    body = create(double)
    body["status"] = {"status": "Ready"}
    body["spec"] = {"ha": True}
    status, written = request(double.url, "PUT", f"{SITES}/west/status", body)
    assert status == 200
    assert written["status"] == {"status": "Ready"} and written["spec"] == {}
    assert written["metadata"]["generation"] == 1
    written["status"] = {"status": "Error"}
    written["spec"] = {"ha": True}
    status, main = request(double.url, "PUT", f"{SITES}/west", written)
    assert main["status"] == {"status": "Ready"} and main["spec"] == {"ha": True}
    status, _ = request(double.url, "PUT", f"{SITES}/west/status", written)  # stale
    assert status == 409


def test_patch_by_content_type(double: DoubleThread) -> None:
    create(double, ha=False, linkAccess="default")
    status, merged = request(double.url, "PATCH", f"{SITES}/west",
                             {"spec": {"ha": True, "linkAccess": None}},
                             content_type="application/merge-patch+json")
    assert status == 200 and merged["spec"] == {"ha": True}
    status, patched = request(double.url, "PATCH", f"{SITES}/west",
                              [{"op": "add", "path": "/spec/edge", "value": True}],
                              content_type="application/json-patch+json")
    assert status == 200 and patched["spec"] == {"ha": True, "edge": True}
    status, _failed = request(double.url, "PATCH", f"{SITES}/west",
                             [{"op": "test", "path": "/spec/ha", "value": False}],
                             content_type="application/json-patch+json")
    assert status == 422
    for kind in ("application/strategic-merge-patch+json", "application/json"):
        status, _ = request(double.url, "PATCH", f"{SITES}/west", {"spec": {}},
                            content_type=kind)
        assert status == 415
    stale = {"metadata": {"resourceVersion": "1"}, "spec": {"ha": False}}
    status, _ = request(double.url, "PATCH", f"{SITES}/west", stale,
                        content_type="application/merge-patch+json")
    assert status == 409  # a version in a patch is a precondition
    status, ignored = request(double.url, "PATCH", f"{SITES}/west", {"status": {"x": "y"}},
                              content_type="application/merge-patch+json")
    assert "status" not in ignored  # the object's PATCH ignores status
    status, st = request(double.url, "PATCH", f"{SITES}/west/status",
                         {"status": {"status": "Ready"}, "spec": {"ha": False}},
                         content_type="application/merge-patch+json")
    assert st["status"] == {"status": "Ready"} and st["spec"]["ha"] is True


def test_schema_checks_types_and_prunes_unknown_fields(double: DoubleThread) -> None:
    status, body = request(double.url, "POST", SITES, site(ha="yes"))
    assert (status, body["reason"]) == (422, "Invalid")
    status, body = request(double.url, "POST", SITES, site(colour="red"))
    assert status == 201 and body["spec"] == {}
    assert double.call(lambda: double.api.pruned) == ["Site/west: spec.colour"]
    double.call(double.api.pruned.clear)


def test_delete_with_preconditions_and_finalizers(double: DoubleThread) -> None:
    body = create(double)
    status, _answer = request(double.url, "DELETE", f"{SITES}/west",
                             {"preconditions": {"uid": "someone-else"}})
    assert status == 409
    body["metadata"]["finalizers"] = ["keep"]
    status, _kept = request(double.url, "PUT", f"{SITES}/west", body)
    status, marked = request(double.url, "DELETE", f"{SITES}/west")
    assert status == 200 and marked["metadata"]["deletionTimestamp"]
    marked["metadata"]["finalizers"] = []
    status, _ = request(double.url, "PUT", f"{SITES}/west", marked)
    assert status == 200
    assert request(double.url, "GET", f"{SITES}/west")[0] == 404


def test_unconditional_update_is_allowed_for_builtin_kinds(double: DoubleThread) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
              "data": {"a": "YQ=="}}
    assert request(double.url, "POST", SECRETS, secret)[0] == 201
    secret["data"] = {"a": "Yg=="}
    status, body = request(double.url, "PUT", f"{SECRETS}/s", secret)
    assert status == 200 and body["data"] == {"a": "Yg=="}


def test_missing_namespace(double: DoubleThread) -> None:
    status, body = request(double.url, "POST", "/apis/skupper.io/v2alpha1/namespaces/x/sites",
                           site())
    assert (status, body["message"]) == (404, 'namespaces "x" not found')
    create_namespace(double, "x")
    assert request(double.url, "POST", "/apis/skupper.io/v2alpha1/namespaces/x/sites",
                   site())[0] == 201


def watch(url: str, path: str, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        events = []
        while len(events) < count:
            line = response.readline()
            if not line:
                break
            if line.strip():
                events.append(json.loads(line))
        return events
    finally:
        conn.close()


def test_list_version_and_watch_from_it(double: DoubleThread) -> None:
    create(double, "a")
    _status, listing = request(double.url, "GET", SITES)
    version = listing["metadata"]["resourceVersion"]
    assert [i["metadata"]["name"] for i in listing["items"]] == ["a"]
    create(double, "b")
    create(double, "c")
    events = watch(double.url, f"{SITES}?watch=true&resourceVersion={version}", 2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "b"), ("ADDED", "c")]
    current = watch(double.url, f"{SITES}?watch=true&resourceVersion=0", 3)
    assert {e["object"]["metadata"]["name"] for e in current} == {"a", "b", "c"}


def test_watch_is_live_and_times_out_with_a_bookmark(double: DoubleThread) -> None:
    _status, listing = request(double.url, "GET", SITES)
    version = listing["metadata"]["resourceVersion"]

    def later() -> None:
        time.sleep(0.3)
        create(double, "live")

    threading.Thread(target=later).start()
    started = time.monotonic()
    events = watch(double.url, f"{SITES}?watch=true&resourceVersion={version}"
                   "&timeoutSeconds=2&allowWatchBookmarks=true", 5)
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert 1.5 < time.monotonic() - started < 5


def test_watch_from_a_compacted_version_is_410() -> None:
    with DoubleThread(history_limit=2) as small:
        from kubehelp import kubectl_apply, manifests

        kubectl_apply(small.url, "default", manifests())
        for name in ("a", "b", "c", "d"):
            create(small, name)
        (event,) = watch(small.url, f"{SITES}?watch=true&resourceVersion=1", 1)
        assert event["type"] == "ERROR" and event["object"]["code"] == 410


def test_bearer_token_and_tls(tmp_path: Any) -> None:
    ca = generate_ca("double CA")
    server = issue_certificate(ca, "127.0.0.1", usage="server", hosts=["127.0.0.1"])
    (tmp_path / "tls.crt").write_bytes(server.cert_pem)
    (tmp_path / "tls.key").write_bytes(server.key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    with DoubleThread(token="s3cret", tls=context) as secure:
        assert secure.url.startswith("https://127.0.0.1:")
        client = ssl.create_default_context(cadata=ca.cert_pem.decode())
        parts = urlsplit(secure.url)
        for token, expected in ((None, 401), ("wrong", 401), ("s3cret", 200)):
            conn = http.client.HTTPSConnection(parts.hostname or "", parts.port,
                                               context=client, timeout=10)
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            conn.request("GET", SECRETS, headers=headers)
            assert conn.getresponse().status == expected
            conn.close()


@pytest.mark.parametrize("path", ["/api", "/apis", "/version"])
def test_discovery_answers(double: DoubleThread, path: str) -> None:
    assert request(double.url, "GET", path)[0] == 200
