"""The checks of one document of a ``system apply -f`` file (``resources.documents``).

``DocumentChecker`` holds every field of every kind to the bounds the create commands
use (``resources.fields``) and builds the resource ``create`` would store
(``resources.build``): missing fields take create's defaults; ``status``, labels and
annotations are dropped (a file never sets conditions, nor the revocation annotation of a
grant, which is the site's to write). A field upstream has that this platform cannot
honour is refused rather than stored and silently ignored. The first problem is one
``DocumentError`` naming the document (its place, kind and name) and the field. No I/O.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from skupper.base.durations import parse_duration
from skupper.base.errors import SkupperError
from skupper.base.text import printable
from skupper.resources.build import service_resource, site_resource
from skupper.resources.fields import (
    LABEL_LENGTH,
    LINK_ACCESS_TYPES,
    SERVICE_TYPES,
    host_problem,
    port_number,
    routing_key_problem,
)
from skupper.resources.model import API_VERSION, MAX_LINK_COST, Resource, new_resource, valid_name
from skupper.resources.site import LINK_ACCESS_HOST_SETTING, is_site_credential

# A Secret's value is one PEM certificate or key (a CA bundle at most): a few KiB.
MAX_SECRET_VALUE_BYTES = 64 * 1024
# Names that become Secrets and Links keep room for "-N" and the secret store's version
# folder, as a token's name does (grants.token_file.MAX_TOKEN_NAME).
MAX_CREDENTIAL_NAME = 200
MAX_SETTINGS = 64
MAX_SETTING_KEY = 253
MAX_SETTING_VALUE = 4096
MAX_ENDPOINTS = 16
MAX_STRING = 8192  # url, code, ca of an AccessToken; code of an AccessGrant

SECRET_API_VERSION = "v1"
TLS_SECRET_TYPE = "kubernetes.io/tls"
TLS_KEYS = ("ca.crt", "tls.crt", "tls.key")

# The kinds a file may hold, in the order they are applied (a Site first, tokens last:
# a redemption needs the site; Links need their Secrets). Deleted in the reverse order.
APPLY_ORDER = ("Site", "RouterAccess", "Secret", "Link", "AccessGrant", "Listener",
               "Connector", "AccessToken")

# spec fields each kind takes here. A field upstream has that this platform cannot honour
# is refused rather than stored and silently ignored (TLS to a server, pod selectors).
_SPEC_FIELDS = {
    "Site": {"linkAccess", "settings", "serviceAccount", "ha", "edge", "defaultIssuer"},
    "RouterAccess": {"roles", "bindHost", "subjectAlternativeNames", "accessType",
                     "generateTlsCredentials", "tlsCredentials", "issuer", "settings"},
    "Listener": {"routingKey", "host", "port", "type", "observer", "exposePodsByName",
                 "settings", "tlsCredentials"},
    "Connector": {"routingKey", "host", "port", "type", "selector", "includeNotReadyPods",
                  "exposePodsByName", "settings", "tlsCredentials", "useClientCert",
                  "verifyHostname"},
    "Link": {"endpoints", "tlsCredentials", "cost", "settings"},
    "AccessGrant": {"redemptionsAllowed", "expirationWindow", "code", "issuer", "settings"},
    "AccessToken": {"url", "code", "ca", "linkCost", "settings"},
}
_NOT_HERE = "is not supported on this platform"
OBSERVERS = ("auto", "none", "http1", "http2")

class DocumentError(SkupperError):
    """A file ``system apply`` or ``system delete`` refuses; nothing of it is applied."""


@dataclass(frozen=True)
class Document:
    index: int  # 1-based place in the file
    kind: str
    name: str
    resource: Resource  # what would be stored (a Secret: type and base64 data)

    @property
    def label(self) -> str:
        return f'{self.kind} "{self.name}"'

def document_error(source: str, index: int, label: str, why: str) -> DocumentError:
    return DocumentError(f"Cannot apply {source}", f"document {index} ({label}): {why}",
                         "Nothing of the file was applied.")


class DocumentChecker:
    """The checks of one document; ``fail`` names the document and the field."""

    def __init__(self, index: int, raw: Any, namespace: str, source: str) -> None:
        self.index = index
        self.raw = raw
        self.namespace = namespace
        self.source = source
        self.label = "no kind"

    def fail(self, why: str) -> DocumentError:
        return document_error(self.source, self.index, self.label, why)

    def envelope(self) -> tuple[str, str]:
        raw = self.raw
        if not isinstance(raw, dict):
            raise self.fail(f"it is a {type(raw).__name__}, not a resource")
        kind = raw.get("kind")
        if not isinstance(kind, str) or kind not in APPLY_ORDER:
            self.label = f"kind {printable(repr(kind), 40)}"
            raise self.fail("kind must be one of " + ", ".join(sorted(APPLY_ORDER)))
        self.label = kind
        wanted = SECRET_API_VERSION if kind == "Secret" else API_VERSION
        if raw.get("apiVersion") != wanted:
            raise self.fail(f"apiVersion is {printable(repr(raw.get('apiVersion')), 40)}, "
                            f"not {wanted}")
        meta = raw.get("metadata")
        if not isinstance(meta, dict):
            raise self.fail("metadata is missing")
        name = meta.get("name")
        limit = {"Site": LABEL_LENGTH, "Listener": LABEL_LENGTH, "Connector": LABEL_LENGTH,
                 "Secret": MAX_CREDENTIAL_NAME, "Link": MAX_CREDENTIAL_NAME,
                 "AccessToken": MAX_CREDENTIAL_NAME}.get(kind, 253)
        if not isinstance(name, str) or not valid_name(name) or len(name) > limit:
            raise self.fail(f"metadata.name {printable(repr(name), 80)} is not a valid name "
                            "(lower-case letters, digits, '-' and '.', starting and ending "
                            f"with a letter or digit, at most {limit} characters)")
        self.label = f'{kind} "{name}"'
        given = meta.get("namespace")
        if given not in (None, "") and given != self.namespace:
            raise self.fail(f'metadata.namespace is "{printable(given, 80)}", but the target '
                            f'namespace is "{self.namespace}"')
        if kind in ("Secret", "Link", "AccessToken") and is_site_credential(name):
            raise self.fail('metadata.name starts with "skupper-", which is reserved for the '
                            "site's own credentials")
        return kind, name

    def document(self) -> Document:
        kind, name = self.envelope()
        if kind == "Secret":
            return Document(self.index, kind, name, self.secret(name))
        spec = self.raw.get("spec")
        if spec is None and kind in ("Site", "RouterAccess"):
            spec = {}
        if not isinstance(spec, dict):
            raise self.fail("spec is missing or not a mapping")
        unknown = sorted(set(spec) - _SPEC_FIELDS[kind])
        if unknown:
            raise self.fail(f"spec.{printable(unknown[0], 60)} is not a field of {kind}")
        build = getattr(self, kind.lower())
        resource: Resource = build(name, spec)
        return Document(self.index, kind, name, resource)

    # --- field helpers ------------------------------------------------------------------

    def string(self, spec: dict[str, Any], key: str, *, limit: int = 253,
               required: bool = False) -> str | None:
        value = spec.get(key)
        if value is None:
            if required:
                raise self.fail(f"spec.{key} is required")
            return None
        if not isinstance(value, str) or len(value) > limit or (required and not value):
            raise self.fail(f"spec.{key} must be a string of at most {limit} characters")
        return value

    def flag(self, spec: dict[str, Any], key: str, *, allowed: bool = True) -> None:
        value = spec.get(key)
        if value is None:
            return
        if not isinstance(value, bool):
            raise self.fail(f"spec.{key} must be true or false")
        if value and not allowed:
            raise self.fail(f"spec.{key} {_NOT_HERE}")

    def absent(self, spec: dict[str, Any], key: str, why: str = _NOT_HERE) -> None:
        if spec.get(key) not in (None, "", [], {}):
            raise self.fail(f"spec.{key} {why}")

    def settings(self, spec: dict[str, Any]) -> dict[str, str] | None:
        value = spec.get("settings")
        if value is None:
            return None
        if not isinstance(value, dict) or len(value) > MAX_SETTINGS:
            raise self.fail(f"spec.settings must be a mapping of at most {MAX_SETTINGS} "
                            "strings")
        for key, item in value.items():
            if not isinstance(key, str) or not key or len(key) > MAX_SETTING_KEY:
                raise self.fail("spec.settings has a key that is not a short string")
            if not isinstance(item, str) or len(item) > MAX_SETTING_VALUE:
                raise self.fail(f"spec.settings.{printable(key, 60)} must be a string of at "
                                f"most {MAX_SETTING_VALUE} characters")
        return dict(value)

    def port(self, spec: dict[str, Any], key: str = "port") -> int:
        port = port_number(spec.get(key))
        if port is None:
            raise self.fail(f"spec.{key} must be a port number (1-65535)")
        return port

    def host(self, spec: dict[str, Any], key: str) -> str | None:
        host = spec.get(key)
        if host is None:
            return None
        problem = host_problem(host)
        if problem:
            raise self.fail(f"spec.{key} {printable(repr(host), 80)} is not valid: {problem}")
        return str(host)

    def cost(self, spec: dict[str, Any], key: str) -> int:
        cost = spec.get(key, 1)
        if isinstance(cost, bool) or not isinstance(cost, int) or not 1 <= cost <= MAX_LINK_COST:
            raise self.fail(f"spec.{key} must be a whole number from 1 to {MAX_LINK_COST}")
        return cost

    # --- the kinds -------------------------------------------------------------------------

    def site(self, name: str, spec: dict[str, Any]) -> Resource:
        access = self.string(spec, "linkAccess")
        if access not in (None, "", *LINK_ACCESS_TYPES):
            raise self.fail(f"spec.linkAccess must be one of {', '.join(LINK_ACCESS_TYPES)}")
        settings = self.settings(spec) or {}
        host = settings.get(LINK_ACCESS_HOST_SETTING)
        if host is not None and host_problem(host):
            raise self.fail(f"spec.settings.{LINK_ACCESS_HOST_SETTING} is not a valid IP "
                            "address or hostname")
        self.string(spec, "serviceAccount")  # a Kubernetes matter: taken, and ignored here
        self.flag(spec, "ha")
        self.flag(spec, "edge", allowed=False)
        issuer = self.string(spec, "defaultIssuer")
        if issuer not in (None, "", "skupper-site-ca"):
            raise self.fail(f"spec.defaultIssuer {_NOT_HERE} (the site's own CA issues)")
        resource = site_resource(name, access or None, None)
        if settings:
            resource["spec"]["settings"] = settings
        for key in ("serviceAccount", "ha"):
            if spec.get(key) not in (None, ""):
                resource["spec"][key] = spec[key]
        return resource

    def routeraccess(self, name: str, spec: dict[str, Any]) -> Resource:
        roles = spec.get("roles", [])
        if not isinstance(roles, list) or len(roles) > 2:
            raise self.fail("spec.roles must be a list of at most two roles")
        for role in roles:
            if not isinstance(role, dict) or role.get("name") not in ("inter-router", "edge"):
                raise self.fail('spec.roles[].name must be "inter-router" or "edge"')
            if "port" in role:
                self.port(role, "port")
        self.host(spec, "bindHost")
        names = spec.get("subjectAlternativeNames") or []
        if not isinstance(names, list) or len(names) > MAX_ENDPOINTS \
                or any(host_problem(item) for item in names):
            raise self.fail("spec.subjectAlternativeNames must be a list of host names or "
                            "addresses")
        self.flag(spec, "generateTlsCredentials")
        for key in ("accessType", "tlsCredentials", "issuer"):
            self.string(spec, key)
        self.settings(spec)
        return new_resource("RouterAccess", name, {})

    def _service(self, kind: str, name: str, spec: dict[str, Any]) -> Resource:
        key = self.string(spec, "routingKey")
        if key is not None and routing_key_problem(key):
            raise self.fail(f"spec.routingKey {printable(repr(key), 80)} is not valid: "
                            f"{routing_key_problem(key)}")
        host = self.host(spec, "host")
        port = self.port(spec)
        type_ = self.string(spec, "type")
        if type_ not in (None, "", *SERVICE_TYPES):
            raise self.fail(f"spec.type must be {' or '.join(SERVICE_TYPES)}")
        self.absent(spec, "tlsCredentials", f"{_NOT_HERE} (no TLS to clients or servers yet)")
        self.flag(spec, "exposePodsByName", allowed=False)
        settings = self.settings(spec)
        resource = service_resource(kind, name, port, routing_key=key or None,
                                    host=host or None, type_=type_ or None)
        if settings:
            resource["spec"]["settings"] = settings
        return resource

    def listener(self, name: str, spec: dict[str, Any]) -> Resource:
        observer = spec.get("observer")
        if observer is not None and observer not in OBSERVERS:
            raise self.fail(f"spec.observer must be one of {', '.join(OBSERVERS)}")
        resource = self._service("Listener", name, spec)
        if observer is not None:
            resource["spec"]["observer"] = observer
        return resource

    def connector(self, name: str, spec: dict[str, Any]) -> Resource:
        self.absent(spec, "selector", "needs the kubernetes platform; set spec.host")
        self.flag(spec, "includeNotReadyPods")
        self.flag(spec, "useClientCert", allowed=False)
        self.flag(spec, "verifyHostname")
        return self._service("Connector", name, spec)

    def link(self, name: str, spec: dict[str, Any]) -> Resource:
        endpoints = spec.get("endpoints")
        if not isinstance(endpoints, list) or not endpoints or len(endpoints) > MAX_ENDPOINTS:
            raise self.fail(f"spec.endpoints must be a list of 1 to {MAX_ENDPOINTS} endpoints")
        checked = []
        for number, endpoint in enumerate(endpoints):
            where = f"spec.endpoints[{number}]"
            if not isinstance(endpoint, dict):
                raise self.fail(f"{where} is not a mapping")
            role = endpoint.get("name")
            if not isinstance(role, str) or not valid_name(role) or len(role) > LABEL_LENGTH:
                raise self.fail(f"{where}.name must be a role name such as inter-router")
            if host_problem(endpoint.get("host")):
                raise self.fail(f"{where}.host must be a valid IP address or hostname")
            port = port_number(endpoint.get("port"))
            if port is None:
                raise self.fail(f"{where}.port must be a port number (1-65535)")
            group = endpoint.get("group")
            if group is not None and (not isinstance(group, str) or len(group) > LABEL_LENGTH):
                raise self.fail(f"{where}.group must be a short string")
            # As a redemption stores them: upstream's schema has the port as a string.
            item = {"name": role, "host": str(endpoint["host"]), "port": str(port)}
            if group is not None:
                item["group"] = group
            checked.append(item)
        if not any(item["name"] == "inter-router" for item in checked):
            raise self.fail("spec.endpoints has no inter-router endpoint")
        credentials = self.string(spec, "tlsCredentials", limit=MAX_CREDENTIAL_NAME,
                                  required=True)
        assert credentials is not None
        if not valid_name(credentials) or is_site_credential(credentials):
            raise self.fail(f'spec.tlsCredentials "{printable(credentials, 80)}" must name a '
                            'Secret of this file or of the site, not one starting with '
                            '"skupper-" (the site\'s own credentials)')
        result: dict[str, Any] = {"endpoints": checked, "cost": self.cost(spec, "cost"),
                                  "tlsCredentials": credentials}
        settings = self.settings(spec)
        if settings:
            result["settings"] = settings
        return new_resource("Link", name, result)

    def accessgrant(self, name: str, spec: dict[str, Any]) -> Resource:
        allowed = spec.get("redemptionsAllowed")
        if allowed is not None and (isinstance(allowed, bool) or not isinstance(allowed, int)):
            raise self.fail("spec.redemptionsAllowed must be a whole number")
        window = self.string(spec, "expirationWindow", limit=64)
        if window is not None:
            try:
                if parse_duration(window) <= 0:
                    raise ValueError("it must be longer than zero")
            except ValueError as exc:
                raise self.fail(f"spec.expirationWindow is not a duration ({exc})") from None
        self.string(spec, "code", limit=MAX_STRING)
        self.absent(spec, "issuer", f"{_NOT_HERE} (the site's own CA issues)")
        self.settings(spec)
        return new_resource("AccessGrant", name,
                            {key: spec[key] for key in _SPEC_FIELDS["AccessGrant"]
                             if spec.get(key) not in (None, "")})

    def accesstoken(self, name: str, spec: dict[str, Any]) -> Resource:
        for key in ("url", "code", "ca"):
            self.string(spec, key, limit=MAX_STRING, required=True)
        self.cost(spec, "linkCost")
        self.settings(spec)
        return new_resource("AccessToken", name,
                            {key: spec[key] for key in _SPEC_FIELDS["AccessToken"]
                             if key in spec})

    def secret(self, name: str) -> Resource:
        raw = self.raw
        if raw.get("type", TLS_SECRET_TYPE) != TLS_SECRET_TYPE:
            raise self.fail(f"type must be {TLS_SECRET_TYPE} (a link's credentials)")
        if raw.get("stringData"):
            raise self.fail("stringData is not taken; give the keys base64-encoded in data")
        data = raw.get("data")
        if not isinstance(data, dict):
            raise self.fail(f"data must hold {', '.join(TLS_KEYS)}")
        extra = sorted(set(data) - set(TLS_KEYS))
        if extra:
            raise self.fail(f"data.{printable(extra[0], 60)} is not a key of a link's "
                            f"credentials ({', '.join(TLS_KEYS)})")
        for key in TLS_KEYS:
            value = data.get(key)
            if not isinstance(value, str) or len(value) > MAX_SECRET_VALUE_BYTES * 4 // 3 + 4:
                raise self.fail(f"data.{key} is missing or too large")
            try:
                decoded = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise self.fail(f"data.{key} is not base64") from None
            marker = b"PRIVATE KEY-----" if key == "tls.key" else b"-----BEGIN CERTIFICATE-----"
            if marker not in decoded:
                raise self.fail(f"data.{key} is not a PEM "
                                + ("private key" if key == "tls.key" else "certificate"))
        return {"apiVersion": SECRET_API_VERSION, "kind": "Secret", "metadata": {"name": name},
                "type": TLS_SECRET_TYPE, "data": {key: data[key] for key in TLS_KEYS}}

def decoded_secret(resource: Resource) -> dict[str, bytes]:
    """A checked Secret's data, as the secret store keeps it."""
    return {key: base64.b64decode(value) for key, value in resource["data"].items()}
