"""What ``system apply -f`` takes: YAML and JSON files parsed, each document checked, the
first problem one line naming the document and the field (resources.documents)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml

from skupper.resources.build import service_resource, site_resource
from skupper.resources.documents import (
    MAX_INPUT_BYTES,
    DocumentError,
    envelopes,
    parse,
    validate,
)

NS = "west-ns"


def check(text: str | bytes, namespace: str = NS) -> list[Any]:
    raw = text.encode() if isinstance(text, str) else text
    return validate(parse(raw, "site.yaml"), namespace, "site.yaml")


def refused(text: str | bytes, *fragments: str, namespace: str = NS) -> str:
    with pytest.raises(DocumentError) as caught:
        check(text, namespace)
    line = caught.value.line()
    assert "\n" not in line
    for fragment in fragments:
        assert fragment in line, line
    return line


def dump(*documents: dict[str, Any]) -> str:
    return yaml.safe_dump_all(documents)


SITE = site_resource("west", "default", None)
LISTENER = service_resource("Listener", "backend", 8080)
CONNECTOR = service_resource("Connector", "backend", 9090, host="10.0.0.5")


def test_what_generate_prints_is_what_apply_stores() -> None:
    docs = check(dump(SITE, LISTENER, CONNECTOR))
    assert [d.resource for d in docs] == [SITE, LISTENER, CONNECTOR]
    assert [d.index for d in docs] == [1, 2, 3]


def test_missing_fields_take_the_create_commands_defaults() -> None:
    docs = check(dump({"apiVersion": "skupper.io/v2alpha1", "kind": "Site",
                       "metadata": {"name": "west"}},
                      {"apiVersion": "skupper.io/v2alpha1", "kind": "Listener",
                       "metadata": {"name": "db"}, "spec": {"port": 5432}}))
    assert docs[0].resource["spec"] == {"linkAccess": "none"}
    assert docs[1].resource["spec"] == {"routingKey": "db", "host": "0.0.0.0", "port": 5432}


def test_status_labels_and_annotations_are_not_taken_from_a_file() -> None:
    listener = {**LISTENER, "status": {"status": "Ready"},
                "metadata": {"name": "backend", "namespace": NS, "uid": "x",
                             "creationTimestamp": None,
                             "annotations": {"skupper.io/revoked": "now"}}}
    (doc,) = check(dump(listener))
    assert doc.resource == LISTENER


def test_json_object_json_list_and_yaml_list() -> None:
    assert [d.name for d in check(json.dumps(LISTENER))] == ["backend"]
    listing = {"apiVersion": "v1", "kind": "List", "items": [SITE, LISTENER]}
    assert [d.kind for d in check(json.dumps(listing, indent="\t"))] == ["Site", "Listener"]
    assert [d.kind for d in check(yaml.safe_dump(listing))] == ["Site", "Listener"]


def test_a_bad_document_in_the_middle_names_itself_and_its_field() -> None:
    bad = {**CONNECTOR, "metadata": {"name": "db"}, "spec": {"port": 99999}}
    line = refused(dump(SITE, bad, LISTENER), 'document 2 (Connector "db")', "spec.port",
                   "Nothing of the file was applied")
    assert line.startswith("Cannot apply site.yaml")


@pytest.mark.parametrize(("change", "fragment"), [
    ({"kind": "Deployment"}, "kind must be one of"),
    ({"apiVersion": "skupper.io/v1alpha1"}, "apiVersion"),
    ({"metadata": {"name": "Back_End"}}, "metadata.name"),
    ({"metadata": {"name": "x" * 64}}, "at most 63"),
    ({"metadata": {"name": "backend", "namespace": "east"}}, "metadata.namespace"),
    ({"spec": {"port": "http"}}, "spec.port"),
    ({"spec": {"port": True}}, "spec.port"),
    ({"spec": {"port": 80, "routingKey": "A B"}}, "spec.routingKey"),
    ({"spec": {"port": 80, "host": "-bad-"}}, "spec.host"),
    ({"spec": {"port": 80, "type": "udp"}}, "spec.type"),
    ({"spec": {"port": 80, "tlsCredentials": "tls"}}, "spec.tlsCredentials"),
    ({"spec": {"port": 80, "prot": 81}}, "spec.prot is not a field of Listener"),
    ({"spec": {"port": 80, "settings": {"a": 1}}}, "spec.settings.a"),
    ({"spec": "port 80"}, "spec is missing"),
])
def test_each_field_is_checked(change: dict[str, Any], fragment: str) -> None:
    refused(dump({**LISTENER, **change}), "document 1", fragment)


def test_site_fields() -> None:
    refused(dump({**SITE, "spec": {"linkAccess": "everywhere"}}), "spec.linkAccess")
    refused(dump({**SITE, "spec": {"edge": True}}), "spec.edge")
    refused(dump({**SITE, "spec": {"settings": {"link-access-host": "a b"}}}),
            "link-access-host")
    refused(dump(SITE, {**SITE, "metadata": {"name": "east"}}), "document 2", "one site")
    refused(dump(SITE, SITE), "document 2", "twice")


def test_connector_selector_needs_kubernetes() -> None:
    refused(dump({**CONNECTOR, "spec": {"port": 80, "selector": "app=backend"}}),
            "spec.selector needs the kubernetes platform")


def _secret(name: str = "peer", **data: str) -> dict[str, Any]:
    pem = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    key = base64.b64encode(b"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n")
    values = {"ca.crt": pem.decode(), "tls.crt": pem.decode(), "tls.key": key.decode(), **data}
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name}, "data": values}


LINK = {"apiVersion": "skupper.io/v2alpha1", "kind": "Link", "metadata": {"name": "peer"},
        "spec": {"endpoints": [{"name": "inter-router", "host": "10.0.0.1", "port": "55671"},
                               {"name": "edge", "host": "10.0.0.1", "port": 45671}],
                 "cost": 2, "tlsCredentials": "peer"}}


def test_link_and_secret_in_the_shape_a_redemption_stores() -> None:
    secret, link = check(dump(_secret(), LINK))
    assert secret.resource["type"] == "kubernetes.io/tls"
    assert link.resource["spec"]["endpoints"][1]["port"] == "45671"  # upstream: a string


@pytest.mark.parametrize(("document", "fragment"), [
    (_secret(**{"tls.key": "not base64!"}), "data.tls.key is not base64"),
    (_secret(**{"tls.crt": base64.b64encode(b"hello").decode()}), "data.tls.crt is not a PEM"),
    (_secret(**{"extra": "eA=="}), "data.extra"),
    ({**_secret(), "type": "Opaque"}, "type must be kubernetes.io/tls"),
    ({**_secret(), "apiVersion": "skupper.io/v2alpha1"}, "apiVersion"),
    (_secret("skupper-site-ca"), "reserved for the site's own credentials"),
    ({**LINK, "spec": {**LINK["spec"], "tlsCredentials": "skupper-site-server"}},
     "spec.tlsCredentials"),
    ({**LINK, "spec": {**LINK["spec"], "endpoints": [{"name": "edge", "host": "a",
                                                      "port": 1}]}}, "no inter-router"),
    ({**LINK, "spec": {**LINK["spec"], "cost": 0}}, "spec.cost"),
    ({**LINK, "spec": {"endpoints": [{"name": "inter-router", "host": "a", "port": 1}]}},
     "spec.tlsCredentials is required"),
])
def test_credentials_are_checked(document: dict[str, Any], fragment: str) -> None:
    refused(dump(document), fragment)


def test_upstream_router_access_turns_on_the_sites_link_access() -> None:
    # What upstream's non-Kubernetes `site generate west --enable-link-access` prints.
    text = """apiVersion: skupper.io/v2alpha1
kind: Site
metadata:
  name: west
  namespace: west-ns
spec:
  settings:
    name: west
---
apiVersion: skupper.io/v2alpha1
kind: RouterAccess
metadata:
  name: router-access-west
  namespace: west-ns
spec:
  roles:
  - name: inter-router
    port: 55671
  - name: edge
    port: 45671
"""
    site, access = check(text)
    assert site.resource["spec"] == {"linkAccess": "default", "settings": {"name": "west"}}
    assert access.kind == "RouterAccess"
    refused(text.split("---")[1], "taken with its Site")


def test_files_are_bounded() -> None:
    refused(b"#" * (MAX_INPUT_BYTES + 1), "over 1024 KiB")
    refused("a: &x [1]\nb: *x\n", "aliases")
    refused("[" * 50 + "]" * 50, "nested too deeply")
    refused("", "holds no resources")
    refused(b"\xff\xfe", "not UTF-8")
    refused("a: [", "not valid YAML or JSON")


def test_delete_needs_only_kind_and_name() -> None:
    docs = envelopes(parse(dump({**LISTENER, "spec": {"port": "not checked"}}).encode(), "f"),
                     NS, "f")
    assert [(d.kind, d.name) for d in docs] == [("Listener", "backend")]
    with pytest.raises(DocumentError, match="kind must be one of"):
        envelopes(parse(dump({"kind": "Pod", "metadata": {"name": "x"}}).encode(), "f"), NS, "f")


def test_what_apply_stores_fits_upstreams_schemas() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name("test_crd_schemas.py")
    spec = importlib.util.spec_from_file_location("_crd_schemas_for_documents", path)
    assert spec is not None and spec.loader is not None
    schemas = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(schemas)
    grant = {"apiVersion": "skupper.io/v2alpha1", "kind": "AccessGrant",
             "metadata": {"name": "g"},
             "spec": {"redemptionsAllowed": 3, "expirationWindow": "1h"}}
    docs = check(dump(SITE, LISTENER, CONNECTOR, LINK, grant,
                      {**SITE, "kind": "RouterAccess", "metadata": {"name": "ra"},
                       "spec": {"roles": [{"name": "edge", "port": 45671}]}}))
    for doc in docs:
        if doc.kind != "RouterAccess":  # folded into the Site, never stored
            schemas.check(doc.resource)
