"""What this project writes and prints must fit upstream's CRDs (openAPIV3Schema).

A small validator of our own: type, properties, required, items, additionalProperties,
enum, pattern, min/maxLength, minimum and the date-time/duration formats. Like
``kubectl --validate=strict``, a field the schema does not know is an error.
"""

from __future__ import annotations

import copy
import http.client
import json
import re
import ssl
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from skupper.base.durations import parse_duration

# The project's own copy of upstream's CRDs (deploy/00-crds.yaml: upstream's schemas
# unchanged plus the status fields this project declares; tests/kube/test_deploy.py keeps
# it equal to upstream's where ../shared is present), so these checks run in a plain clone.
CRDS_FILE = Path(__file__).resolve().parents[2] / "deploy" / "00-crds.yaml"

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
    "number": (int, float),
}
# Every Kubernetes object has these beside what its schema lists.
_IMPLICIT_ROOT = {"apiVersion", "kind", "metadata"}


def _format_ok(fmt: str, value: str) -> bool:
    try:
        if fmt == "date-time":
            return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None
        if fmt == "duration":
            parse_duration(value)
    except ValueError:
        return False
    return True


def validate(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Every way ``value`` breaks ``schema``, as ``path: reason`` lines."""
    where = path or "<root>"
    kind = schema.get("type")
    if kind is not None:
        ok = isinstance(value, _TYPES[kind])
        if kind in ("integer", "number") and isinstance(value, bool):
            ok = False
        if not ok:
            return [f"{where}: expected {kind}, got {type(value).__name__}"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{where}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{where}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
        if "format" in schema and not _format_ok(schema["format"], value):
            errors.append(f"{where}: {value!r} is not a {schema['format']}")
    if isinstance(value, int) and "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{where}: {value} is below {schema['minimum']}")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            errors += validate(item, schema["items"], f"{path}[{index}]")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{where}: missing required field {key!r}")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            if key in properties:
                errors += validate(item, properties[key], child)
            elif isinstance(extra, dict):
                errors += validate(item, extra, child)
            elif not (path == "" and key in _IMPLICIT_ROOT) and extra is not True:
                errors.append(f"{child}: unknown field")
    return errors


def crd_schema(kind: str) -> dict[str, Any]:
    """Upstream's schema of ``kind``: the deploy/ copy less this project's status fields."""
    from skupper.resources.extensions import STATUS_EXTENSIONS

    for crd in yaml.safe_load_all(CRDS_FILE.read_text()):
        if crd and crd["spec"]["names"]["kind"] == kind:
            (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v2alpha1"]
            schema: dict[str, Any] = copy.deepcopy(version["schema"]["openAPIV3Schema"])
            status = schema["properties"]["status"].get("properties", {})
            for name in STATUS_EXTENSIONS.get(kind, {}):
                status.pop(name)
            return schema
    raise LookupError(kind)


def with_extensions(kind: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Upstream's schema plus exactly the status fields this project declares."""
    from skupper.resources.extensions import STATUS_EXTENSIONS

    merged = copy.deepcopy(schema)
    status = merged["properties"]["status"].setdefault("properties", {})
    for name, fragment in STATUS_EXTENSIONS.get(kind, {}).items():
        assert name not in status, f"{kind} status.{name} is upstream's, not an extension"
        status[name] = fragment
    return merged


def check(resource: dict[str, Any]) -> None:
    assert resource.get("apiVersion") == "skupper.io/v2alpha1", resource.get("apiVersion")
    errors = validate(resource, with_extensions(resource["kind"], crd_schema(resource["kind"])))
    assert errors == [], f"{resource['kind']} breaks its CRD:\n" + "\n".join(errors)


# --- the validator itself -----------------------------------------------------------------

GOOD_TOKEN: dict[str, Any] = {
    "apiVersion": "skupper.io/v2alpha1",
    "kind": "AccessToken",
    "metadata": {"name": "t"},
    "spec": {"url": "https://h:1/x", "code": "c", "ca": "pem", "linkCost": 1},
}


def test_validator_accepts_a_good_token() -> None:
    assert validate(GOOD_TOKEN, crd_schema("AccessToken")) == []


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda t: t["spec"].update(linkCost="1"), "spec.linkCost: expected integer, got str"),
        (lambda t: t["spec"].update(linkCost=True), "spec.linkCost: expected integer, got bool"),
        (lambda t: t["spec"].pop("code"), "spec: missing required field 'code'"),
        (lambda t: t["spec"].pop("ca"), "spec: missing required field 'ca'"),
        (lambda t: t.update(spec=[]), "spec: expected object, got list"),
        (lambda t: t["spec"].update(settings={"a": 1}), "spec.settings.a: expected string"),
        (lambda t: t["spec"].update(colour="red"), "spec.colour: unknown field"),
        (lambda t: t.update(status={"redeemed": "yes"}), "status.redeemed: expected boolean"),
    ],
)
def test_validator_rejects(change: Any, error: str) -> None:
    token = json.loads(json.dumps(GOOD_TOKEN))
    change(token)
    errors = validate(token, crd_schema("AccessToken"))
    assert any(e.startswith(error) for e in errors), errors


def test_validator_checks_conditions() -> None:
    condition = {"type": "Ready", "status": "Maybe", "reason": "not ok!", "message": "m",
                 "lastTransitionTime": "yesterday", "observedGeneration": -1}
    grant = {"apiVersion": "skupper.io/v2alpha1", "kind": "AccessGrant",
             "metadata": {"name": "g"}, "status": {"conditions": [condition, {"type": "X"}]}}
    errors = validate(grant, crd_schema("AccessGrant"))
    for fragment in ("status.conditions[0].status: 'Maybe' is not one of",
                     "status.conditions[0].reason: 'not ok!' does not match",
                     "status.conditions[0].lastTransitionTime: 'yesterday' is not a date-time",
                     "status.conditions[0].observedGeneration: -1 is below 0",
                     "status.conditions[1]: missing required field 'reason'"):
        assert any(e.startswith(fragment) for e in errors), (fragment, errors)
    assert validate({"spec": {"expirationWindow": "banana"}}, crd_schema("AccessGrant"))


# --- what the project writes --------------------------------------------------------------


def _redeem(spec: dict[str, Any]) -> str:
    url = urlsplit(spec["url"])
    ctx = ssl.create_default_context(cadata=spec["ca"])
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    conn = http.client.HTTPSConnection(url.hostname or "", url.port, context=ctx, timeout=10)
    try:
        conn.request("POST", url.path, body=spec["code"].encode(),
                     headers={"name": "east-link", "subject": "east"})
        response = conn.getresponse()
        body = response.read().decode()
        assert response.status == 200, body
        return body
    finally:
        conn.close()


def test_resources_fit_upstream_crds(west: Any, tmp_path: Path) -> None:
    file = tmp_path / "token.yaml"
    west.run("access-token", "issue", str(file), "--cost", "3")
    token = yaml.safe_load(file.read_text())
    check(token)
    assert all(token["spec"][key] for key in ("url", "code", "ca"))

    # Site and grant as -o json prints them, conditions included.
    site = json.loads(west.run("site", "status", "-o", "json").stdout)
    check(site)
    assert {c["type"] for c in site["status"]["conditions"]} >= {
        "Configured", "Running", "Resolved", "Ready"}
    (grant,) = json.loads(west.run("access-grant", "status", "-o", "json").stdout)["items"]
    check(grant)
    assert {c["type"] for c in grant["status"]["conditions"]} >= {"Processed", "Resolved", "Ready"}

    answer = list(yaml.safe_load_all(_redeem(token["spec"])))
    links = [doc for doc in answer if doc["kind"] == "Link"]
    assert links
    for link in links:
        check(link)

    # A used-up grant (status Error) still fits.
    (used,) = json.loads(west.run("access-grant", "status", "-o", "json").stdout)["items"]
    assert used["status"]["redemptions"] == 1
    check(used)
    check(yaml.safe_load(west.run("site", "status", "-o", "yaml").stdout))
