"""A strict Kubernetes API double: kmock 0.8's emulator with the API server's rules added.

Plain kmock keeps objects as loose dicts: no resourceVersion, uid or generation, no 409
on a stale version, no PUT, 200 on create, PATCH that ignores its Content-Type, a
``/status`` that merges the whole body, and watches that ignore ``resourceVersion``.
Clients that rely on optimistic concurrency cannot be tested against that, so this
subclass keeps kmock's server, routing, discovery and ``objects`` view and replaces its
handlers with ones that follow the API server:

- one cluster-wide resourceVersion counter (as etcd's revision); every write is a new
  version and a watch event; a list carries the version it was taken at;
- create answers 201 and sets uid, resourceVersion, generation 1, creationTimestamp;
  an existing name is 409 AlreadyExists; a missing namespace is 404;
- PUT replaces the object: custom resources need ``metadata.resourceVersion`` (422
  without it, 409 Conflict when stale); spec changes bump generation; a no-op write is
  not a new version; with the status subresource, PUT and PATCH on the object ignore
  ``status`` and ``/status`` changes nothing but status;
- PATCH by Content-Type: merge-patch (RFC 7386) and json-patch (RFC 6902); strategic
  merge and apply are 415 for custom resources, as on a real server; a resourceVersion
  in a patch is a precondition;
- DELETE honours preconditions and finalizers (deletionTimestamp first);
- watches start from a resourceVersion (events after it), from "" or "0" (the current
  objects as ADDED, then changes), answer 410 Expired in the stream for a version older
  than the kept history, end after ``timeoutSeconds`` (with a BOOKMARK when allowed);
- custom resources exist only while their CustomResourceDefinition does; objects are
  checked against its schema (422 on a wrong type or a missing required field) and
  unknown fields are pruned, as the API server does (recorded in ``pruned``);
- optional bearer-token authentication (401) and TLS.

Everything runs on the double's own event loop: ``DoubleThread`` runs it in a thread so
that subprocesses (the CLI, the controller) reach it over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import copy
import json
import re
import ssl
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock

Obj = dict[str, Any]

# Kinds a bare API server serves without any CRD: (group, version, plural) -> (kind, namespaced).
BUILTIN: dict[tuple[str, str, str], tuple[str, bool]] = {
    ("", "v1", "namespaces"): ("Namespace", False),
    ("", "v1", "secrets"): ("Secret", True),
    ("", "v1", "configmaps"): ("ConfigMap", True),
    ("", "v1", "services"): ("Service", True),
    ("", "v1", "serviceaccounts"): ("ServiceAccount", True),
    ("apps", "v1", "deployments"): ("Deployment", True),
    ("rbac.authorization.k8s.io", "v1", "roles"): ("Role", True),
    ("rbac.authorization.k8s.io", "v1", "rolebindings"): ("RoleBinding", True),
    ("rbac.authorization.k8s.io", "v1", "clusterroles"): ("ClusterRole", False),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings"): ("ClusterRoleBinding", False),
    ("coordination.k8s.io", "v1", "leases"): ("Lease", True),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions"):
        ("CustomResourceDefinition", False),
}
CRD_KEY = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")
_CRD_RESOURCE = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


class ApiStatus(Exception):
    """An API error, rendered as the API server renders it: a v1 Status object."""

    def __init__(self, code: int, reason: str, message: str,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> Obj:
        body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                     "status": "Failure", "message": self.message, "reason": self.reason,
                     "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    custom: bool
    status_subresource: bool
    schema: Obj | None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> kmock.resource:
        return kmock.resource(self.group, self.version, self.plural)

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def details(self, name: str) -> Obj:
        return {"name": name, "group": self.group, "kind": self.plural}

    def not_found(self, name: str) -> ApiStatus:
        return ApiStatus(404, "NotFound", f'{self.qualified} "{name}" not found',
                         self.details(name))

    def conflict(self, name: str) -> ApiStatus:
        return ApiStatus(
            409, "Conflict",
            f'Operation cannot be fulfilled on {self.qualified} "{name}": the object has been '
            "modified; please apply your changes to the latest version and try again",
            self.details(name))

    def invalid(self, name: str, causes: list[str]) -> ApiStatus:
        return ApiStatus(
            422, "Invalid",
            f'{self.kind}.{self.group or "core"} "{name}" is invalid: ' + ", ".join(causes),
            dict(self.details(name), causes=[{"message": c} for c in causes]))


@dataclass(frozen=True)
class Event:
    version: int
    key: tuple[str, str, str]
    namespace: str | None
    type: str
    obj: Obj


def _rbac_verb(request: kmock.Request) -> str:
    if request.action == kmock.action.WATCH:
        return "watch"
    if request.method == kmock.method.GET:
        return "get" if request.name else "list"
    return {kmock.method.POST: "create", kmock.method.PUT: "update",
            kmock.method.PATCH: "patch", kmock.method.DELETE: "delete"}.get(
        request.method, str(request.method).lower())  # type: ignore[call-overload]


def _json_response(body: Obj, status: int) -> aiohttp.web.Response:
    return aiohttp.web.Response(body=json.dumps(body).encode(), status=status,
                                headers={"Content-Type": "application/json"})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unsupported_resource() -> ApiStatus:
    # What a real API server answers for a group/version/plural it does not serve.
    return ApiStatus(404, "NotFound", "the server could not find the requested resource", {})


@attrs.define(kw_only=True)
class StrictKubernetes(kmock.KubernetesEmulator):
    """kmock's KubernetesEmulator with the API server's consistency rules (see module doc)."""

    # Watch events kept for resuming watches; older versions get 410 Expired.
    history_limit: int = 10_000
    # When set, requests need "Authorization: Bearer <token>" (401 otherwise).
    token: str | None = None
    # When set, authorize(token, verb, group, resource, namespace, name) decides each
    # request (403 when False); resource is "plural" or "plural/subresource", verb is
    # RBAC's (get, list, watch, create, update, patch, delete).
    authorize: Callable[[str | None, str, str, str, str | None, str | None], bool] | None = None
    # Requests that authorize refused, as "token verb group/resource namespace/name".
    forbidden: list[str] = attrs.field(factory=list, init=False)

    _version: int = attrs.field(default=0, init=False)
    _builtin_payloads: int = attrs.field(default=0, init=False)
    _shutting_down: bool = attrs.field(default=False, init=False)
    _compacted: int = attrs.field(default=0, init=False)  # events up to here are gone
    _events: collections.deque[Event] = attrs.field(factory=collections.deque, init=False)
    _tick: asyncio.Future[None] | None = attrs.field(default=None, init=False)
    # How many writes were refused with 409 Conflict (a stale resourceVersion).
    conflicts: int = attrs.field(default=0, init=False)
    # Unknown fields dropped from custom resources, as "Kind/name: path" lines.
    pruned: list[str] = attrs.field(factory=list, init=False)
    # Called in the loop before a write is applied: hook(verb, kind, namespace, name).
    # A hook returns True to be removed. Tests use it to interleave a competing writer.
    before_write: list[Callable[[str, Kind, str | None, str], bool]] = attrs.field(
        factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # kmock guesses no action for PUT; the emulator's other fallbacks resolve to the
        # strict _serve_* methods below (bound at registration, so overriding works).
        self.fallback[kmock.method.PUT] << self._serve_put
        self._builtin_payloads = len(self._payloads)
        for namespace in ("default", "kube-system"):
            self.create_namespace(namespace)

    # --- request plumbing -----------------------------------------------------------------

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if self.token is not None:
            given = {k.lower(): v for k, v in request.headers.items()}.get("authorization")
            if given != f"Bearer {self.token}":
                return _json_response(ApiStatus(401, "Unauthorized", "Unauthorized").status(), 401)
        if self.authorize is not None and request.resource is not None:
            header = {k.lower(): v for k, v in request.headers.items()}.get("authorization")
            token = header[len("Bearer "):] if header and header.startswith("Bearer ") else None
            res = request.resource
            plural = (res.plural or "") + (f"/{request.subresource}" if request.subresource
                                           else "")
            verb = _rbac_verb(request)
            if not self.authorize(token, verb, res.group or "", plural, request.namespace,
                                  request.name):
                self.forbidden.append(f"{token} {verb} {res.group}/{plural} "
                                      f"{request.namespace}/{request.name}")
                return _json_response(ApiStatus(
                    403, "Forbidden", f'{plural}.{res.group} is forbidden: "{token}" cannot '
                    f"{verb} it").status(), 403)
        # Fast path while no test added reactions of its own: kmock matches a request by
        # filtering every request it ever served (O(n) each, O(n^2) in all), far too slow
        # for a controller's thousands of requests.
        handler = self._route(request)
        if handler is not None and len(self._payloads) == self._builtin_payloads:
            return await kmock.Response(payload=handler)(request)
        # Skip KubernetesEmulator._handle: it writes every request into its objects
        # loosely (merging dicts, no versions) before any handler runs.
        return await kmock.RawHandler._handle(self, request)

    def _route(self, request: kmock.Request) -> Callable[[kmock.Request], Any] | None:
        if request.resource is None:
            return None
        if request.method == kmock.method.PUT:
            return self._serve_put
        return {
            kmock.action.WATCH: self._serve_watch,
            kmock.action.LIST: self._serve_list,
            kmock.action.FETCH: self._serve_fetch,
            kmock.action.CREATE: self._serve_create,
            kmock.action.UPDATE: self._serve_update,
            kmock.action.DELETE: self._serve_delete,
        }.get(request.action)  # type: ignore[arg-type]

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, ApiStatus):
            return _json_response(exc.status(), exc.code)
        return await super()._render_error(exc)

    def _get_resources(self) -> list[kmock.resource]:
        found = [kmock.resource(*key) for key in BUILTIN]
        for crd in self._live(CRD_KEY):
            spec = crd.get("spec") or {}
            for version in spec.get("versions") or []:
                if version.get("served"):
                    res = kmock.resource(spec["group"], version["name"], spec["names"]["plural"])
                    info = self._resources[res]
                    info.kind = spec["names"]["kind"]
                    info.namespaced = spec.get("scope") == "Namespaced"
                    info.verbs = {"get", "list", "watch", "create", "update", "patch", "delete"}
                    if "status" in (version.get("subresources") or {}):
                        info.subresources = {"status"}
                    found.append(res)
        return found

    def _kind(self, request: kmock.Request) -> Kind:
        res = request.resource
        if res is None or res.plural is None:
            raise _unsupported_resource()
        return self.kind_of((res.group or "", res.version or "", res.plural))

    def kind_of(self, key: tuple[str, str, str]) -> Kind:
        if key in BUILTIN:
            kind, namespaced = BUILTIN[key]
            return Kind(*key, kind=kind, namespaced=namespaced, custom=False,
                        status_subresource=key[2] in ("deployments", "services"), schema=None)
        group, version, plural = key
        obj = self._objects_get(CRD_KEY, None, f"{plural}.{group}")
        if obj is not None and obj["spec"].get("group") == group:
            for served in obj["spec"].get("versions") or []:
                if served.get("name") == version and served.get("served"):
                    return Kind(
                        group, version, plural, kind=obj["spec"]["names"]["kind"],
                        namespaced=obj["spec"].get("scope") == "Namespaced", custom=True,
                        status_subresource="status" in (served.get("subresources") or {}),
                        schema=(served.get("schema") or {}).get("openAPIV3Schema"))
        raise _unsupported_resource()

    def _scope(self, kind: Kind, request: kmock.Request) -> str | None:
        if kind.namespaced:
            return request.namespace  # None: across all namespaces (list and watch only)
        if request.namespace is not None:
            raise _unsupported_resource()
        return None

    @staticmethod
    def _body(request: kmock.Request) -> Any:
        try:
            return json.loads(request.body or b"null")
        except ValueError:
            raise ApiStatus(400, "BadRequest", "the request body is not valid JSON") from None

    # --- the store ------------------------------------------------------------------------

    def _objects_get(self, key: tuple[str, str, str], namespace: str | None,
                     name: str) -> Obj | None:
        full = (kmock.resource(*key), namespace, name)
        if full not in self._objects:
            return None
        stored = self._objects[full]
        return None if stored.deleted else copy.deepcopy(stored.raw)

    def _live(self, key: tuple[str, str, str], namespace: str | None = None) -> list[Obj]:
        res = kmock.resource(*key)
        found = []
        for (r, ns, _name), stored in self._objects.items():
            if r == res and not stored.deleted and (namespace is None or ns == namespace):
                found.append(copy.deepcopy(stored.raw))
        found.sort(key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))
        return found

    def _record(self, kind: Kind, namespace: str | None, type_: str, obj: Obj) -> Obj:
        """Give ``obj`` the next version, store it (or drop it), and publish the event."""
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        key = (kind.group, kind.version, kind.plural)
        full = (kind.resource, namespace, obj["metadata"]["name"])
        if type_ == "DELETED":
            self._objects[full].delete()
        elif full in self._objects:
            self._objects[full].create(copy.deepcopy(obj))  # a new version in its history
        else:
            self._objects[full] = copy.deepcopy(obj)
        self._events.append(Event(self._version, key, namespace, type_, copy.deepcopy(obj)))
        while len(self._events) > self.history_limit:
            self._compacted = self._events.popleft().version
        if self._tick is not None and not self._tick.done():
            self._tick.set_result(None)
        self._tick = None
        return obj

    def end_watches(self) -> None:
        """End every open watch (the server cannot stop while handlers wait)."""
        self._shutting_down = True
        if self._tick is not None and not self._tick.done():
            self._tick.set_result(None)

    def create_namespace(self, name: str) -> None:
        """kmock's path parser cannot route /api/v1/namespaces (it takes "namespaces" for
        the namespace prefix), so namespaces are made here, as a cluster admin would."""
        if self._objects_get(("", "v1", "namespaces"), None, name) is None:
            self.put_object(("", "v1", "namespaces"), None,
                            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def put_object(self, key: tuple[str, str, str], namespace: str | None, obj: Obj) -> Obj:
        """Create an object directly (no HTTP), as the API server would: for test setup."""
        return self._create(self.kind_of(key), namespace, copy.deepcopy(obj))

    def _hooks(self, verb: str, kind: Kind, namespace: str | None, name: str) -> None:
        for hook in list(self.before_write):
            if hook(verb, kind, namespace, name):
                self.before_write.remove(hook)

    def _check_namespace(self, kind: Kind, namespace: str | None) -> None:
        if kind.namespaced and self._objects_get(("", "v1", "namespaces"), None,
                                                 namespace or "") is None:
            raise ApiStatus(404, "NotFound", f'namespaces "{namespace}" not found',
                            {"name": namespace, "kind": "namespaces"})

    def _validate(self, kind: Kind, obj: Obj) -> None:
        name = str((obj.get("metadata") or {}).get("name") or "")
        if obj.get("apiVersion") != kind.api_version or obj.get("kind") != kind.kind:
            raise ApiStatus(400, "BadRequest",
                            f"the API version in the data ({obj.get('apiVersion')}) and the "
                            f"kind ({obj.get('kind')}) do not match {kind.api_version} "
                            f"{kind.kind}")
        if kind.schema is None:
            return
        causes: list[str] = []
        for part in ("spec", "status"):
            schema = (kind.schema.get("properties") or {}).get(part)
            if part in obj and schema is not None:
                obj[part] = _prune(obj[part], schema, part, causes,
                                   self.pruned, f"{kind.kind}/{name}")
        if "spec" in (kind.schema.get("required") or []) and "spec" not in obj:
            causes.append("spec: Required value")
        if causes:
            raise kind.invalid(name, causes)

    def _create(self, kind: Kind, namespace: str | None, obj: Obj) -> Obj:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name")
        if not name:
            raise kind.invalid("", ["metadata.name: Required value: name or generateName is "
                                    "required"])
        if kind.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise ApiStatus(400, "BadRequest", "the namespace of the provided object does "
                                "not match the namespace sent on the request")
            meta["namespace"] = namespace
        self._validate(kind, obj)
        self._check_namespace(kind, namespace)
        if self._objects_get((kind.group, kind.version, kind.plural), namespace, name):
            raise ApiStatus(409, "AlreadyExists", f'{kind.qualified} "{name}" already exists',
                            kind.details(name))
        self._hooks("create", kind, namespace, name)
        for field in ("resourceVersion", "deletionTimestamp"):
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["generation"] = 1
        meta["creationTimestamp"] = _now()
        if kind.status_subresource:
            obj.pop("status", None)  # status is written through /status only
        return self._record(kind, namespace, "ADDED", obj)

    def _current(self, kind: Kind, namespace: str | None, name: str) -> Obj:
        stored = self._objects_get((kind.group, kind.version, kind.plural), namespace, name)
        if stored is None:
            raise kind.not_found(name)
        return stored

    def _write(self, kind: Kind, namespace: str | None, name: str, new: Obj,
               subresource: str | None, *, need_version: bool) -> Obj:
        """Replace ``name`` with ``new`` as PUT does (PATCH computes ``new`` first)."""
        if subresource not in (None, "status") or (
                subresource == "status" and not kind.status_subresource):
            raise _unsupported_resource()
        meta = new.get("metadata")
        if not isinstance(meta, dict):
            raise kind.invalid(name, ["metadata: Required value"])
        if meta.get("name") not in (None, name):
            raise ApiStatus(400, "BadRequest", "the name of the object "
                            f"({meta.get('name')}) does not match the name on the URL ({name})")
        if kind.namespaced and meta.get("namespace") not in (None, "", namespace):
            raise ApiStatus(400, "BadRequest", "the namespace of the provided object does "
                            "not match the namespace sent on the request")
        self._hooks("update", kind, namespace, name)
        stored = self._current(kind, namespace, name)
        given = meta.get("resourceVersion")
        if given in (None, ""):
            if need_version and kind.custom:
                raise kind.invalid(name, ["metadata.resourceVersion: Invalid value: 0x0: "
                                          "must be specified for an update"])
        elif str(given) != stored["metadata"]["resourceVersion"]:
            self.conflicts += 1
            raise kind.conflict(name)
        if meta.get("uid") not in (None, "", stored["metadata"]["uid"]):
            raise ApiStatus(409, "Conflict", f"Precondition failed: UID in precondition: "
                            f"{meta.get('uid')}, UID in object meta: {stored['metadata']['uid']}",
                            kind.details(name))
        result = copy.deepcopy(stored)
        if subresource == "status":
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
        else:
            for key in list(result):
                if key not in ("metadata", "status") or (
                        key == "status" and not kind.status_subresource):
                    result.pop(key)
            for key, value in new.items():
                if key == "metadata" or (key == "status" and kind.status_subresource):
                    continue
                result[key] = value
            system = ("uid", "resourceVersion", "generation", "creationTimestamp",
                      "deletionTimestamp", "namespace", "name")
            result["metadata"] = {k: v for k, v in stored["metadata"].items() if k in system}
            result["metadata"].update({k: v for k, v in meta.items() if k not in system})
            before = {k: v for k, v in stored.items() if k not in ("metadata", "status")}
            after = {k: v for k, v in result.items() if k not in ("metadata", "status")}
            if before != after:
                result["metadata"]["generation"] = int(stored["metadata"]["generation"]) + 1
        self._validate(kind, result)
        if result == stored:
            return stored  # a no-op write is not a new version
        if result["metadata"].get("deletionTimestamp") and not result["metadata"].get(
                "finalizers"):
            return self._record(kind, namespace, "DELETED", result)
        return self._record(kind, namespace, "MODIFIED", result)

    # --- handlers -------------------------------------------------------------------------

    def _respond(self, status: int, body: Obj) -> kmock.Response:
        # Always an explicit status: kmock copies it onto the (shared) reaction. Bytes, not
        # a dict: kmock would add "; charset=utf-8", and clients (lightkube) compare the
        # Content-Type with "application/json" exactly, as the API server sends it.
        return kmock.Response(status=status, payload=json.dumps(body).encode(),
                              headers={"Content-Type": "application/json"})

    async def _serve_fetch(self, request: kmock.Request) -> kmock.Response:
        kind = self._kind(request)
        namespace = self._scope(kind, request)
        if request.subresource not in (None, "status") or (
                request.subresource == "status" and not kind.status_subresource):
            raise _unsupported_resource()
        return self._respond(200, self._current(kind, namespace, request.name or ""))

    async def _serve_list(self, request: kmock.Request) -> kmock.Response:
        kind = self._kind(request)
        namespace = self._scope(kind, request)
        items = [o for o in self._live((kind.group, kind.version, kind.plural), namespace)
                 if _selected(o, request.params)]
        meta: Obj = {"resourceVersion": str(self._version)}
        start = 0
        if request.params.get("continue"):
            start = int(base64.b64decode(request.params["continue"]))
        limit = int(request.params.get("limit") or 0)
        page = items[start:start + limit] if limit else items[start:]
        if limit and start + limit < len(items):
            meta["continue"] = base64.b64encode(str(start + limit).encode()).decode()
            meta["remainingItemCount"] = len(items) - start - limit
        return self._respond(200, {"apiVersion": kind.api_version, "kind": f"{kind.kind}List",
                                   "metadata": meta, "items": page})

    async def _serve_create(self, request: kmock.Request) -> kmock.Response:
        kind = self._kind(request)
        if request.subresource is not None:
            raise ApiStatus(405, "MethodNotAllowed", "the server does not allow this method")
        namespace = self._scope(kind, request)
        if kind.namespaced and namespace is None:
            raise ApiStatus(405, "MethodNotAllowed", "create needs a namespace in the URL")
        body = self._body(request)
        if not isinstance(body, dict):
            raise ApiStatus(400, "BadRequest", "the body must be an object")
        return self._respond(201, self._create(kind, namespace, body))

    async def _serve_put(self, request: kmock.Request) -> kmock.Response:
        kind = self._kind(request)
        namespace = self._scope(kind, request)
        if request.name is None:
            raise ApiStatus(405, "MethodNotAllowed", "PUT needs an object name")
        body = self._body(request)
        if not isinstance(body, dict):
            raise ApiStatus(400, "BadRequest", "the body must be an object")
        if request.subresource is None:
            self._validate(kind, copy.deepcopy(body))  # apiVersion/kind of the whole object
        written = self._write(kind, namespace, request.name, body, request.subresource,
                              need_version=True)
        return self._respond(200, written)

    async def _serve_update(self, request: kmock.Request) -> kmock.Response:  # PATCH
        kind = self._kind(request)
        namespace = self._scope(kind, request)
        name = request.name or ""
        content_type = {k.lower(): v for k, v in request.headers.items()}.get(
            "content-type", "").split(";")[0].strip()
        patch = self._body(request)
        stored = self._current(kind, namespace, name)
        if content_type == MERGE_PATCH or (content_type == STRATEGIC_PATCH and not kind.custom):
            # Strategic merge on built-in kinds is approximated by a merge patch.
            if not isinstance(patch, dict):
                raise ApiStatus(400, "BadRequest", "a merge patch must be a JSON object")
            new = _merge_patch(copy.deepcopy(stored), patch)
        elif content_type == JSON_PATCH:
            try:
                new = jsonpatch.JsonPatch(patch).apply(copy.deepcopy(stored))
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException,
                    TypeError, KeyError) as exc:
                raise ApiStatus(422, "Invalid", f"the json patch failed: {exc}") from None
        else:
            raise ApiStatus(415, "UnsupportedMediaType",
                            f'the body of the request was in an unknown format - accepted '
                            f'media types include: {JSON_PATCH}, {MERGE_PATCH}'
                            + ("" if kind.custom else f", {STRATEGIC_PATCH}"))
        if not isinstance(new, dict):
            raise ApiStatus(422, "Invalid", "the patched object is not an object")
        # A version in the patch is a precondition; otherwise the patch applies to "now".
        patched_meta = new.setdefault("metadata", {})
        if patched_meta.get("resourceVersion") == stored["metadata"]["resourceVersion"]:
            patched_meta.pop("resourceVersion")
        if request.subresource is None and kind.status_subresource:
            new["status"] = stored.get("status")
            if new["status"] is None:
                new.pop("status")
        written = self._write(kind, namespace, name, new, request.subresource,
                              need_version=False)
        return self._respond(200, written)

    async def _serve_delete(self, request: kmock.Request) -> kmock.Response:
        kind = self._kind(request)
        namespace = self._scope(kind, request)
        name = request.name or ""
        options = self._body(request) or {}
        self._hooks("delete", kind, namespace, name)
        stored = self._current(kind, namespace, name)
        preconditions = options.get("preconditions") or {}
        for field in ("uid", "resourceVersion"):
            wanted = preconditions.get(field)
            if wanted not in (None, "") and wanted != stored["metadata"].get(field):
                raise ApiStatus(409, "Conflict", f"Precondition failed: {field} in "
                                f"precondition: {wanted}, {field} in object meta: "
                                f"{stored['metadata'].get(field)}", kind.details(name))
        if stored["metadata"].get("finalizers"):
            if not stored["metadata"].get("deletionTimestamp"):
                stored["metadata"]["deletionTimestamp"] = _now()
                stored = self._record(kind, namespace, "MODIFIED", stored)
            return self._respond(200, stored)
        self._record(kind, namespace, "DELETED", stored)
        return self._respond(200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                   "status": "Success",
                                   "details": dict(kind.details(name),
                                                   uid=stored["metadata"]["uid"])})

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        kind = self._kind(request)
        namespace = self._scope(kind, request)
        key = (kind.group, kind.version, kind.plural)
        params = request.params
        since = params.get("resourceVersion") or ""
        if since not in ("", "0") and not since.isdigit():
            raise ApiStatus(400, "BadRequest", f"invalid resource version: {since}")
        timeout = float(params.get("timeoutSeconds") or 1800)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        yield b""  # send the headers now: the stream is open even while nothing happens
        if since in ("", "0"):
            last = self._version
            for obj in self._live(key, namespace):
                if _selected(obj, params):
                    yield {"type": "ADDED", "object": obj}
        else:
            last = int(since)
            if last < self._compacted:
                yield {"type": "ERROR", "object": ApiStatus(
                    410, "Expired",
                    f"too old resource version: {last} ({self._compacted + 1})").status()}
                return
        while True:
            for event in [e for e in self._events if e.version > last]:
                last = event.version
                if event.key == key and namespace in (None, event.namespace) and _selected(
                        event.obj, params):
                    yield {"type": event.type, "object": event.obj}
            last = max(last, self._version)
            remaining = deadline - loop.time()
            if remaining <= 0 or self._shutting_down:
                break
            if self._tick is None:
                self._tick = loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._tick), remaining)
            except TimeoutError:
                break
        if params.get("allowWatchBookmarks") == "true":
            yield {"type": "BOOKMARK", "object": {
                "apiVersion": kind.api_version, "kind": kind.kind,
                "metadata": {"resourceVersion": str(last)}}}


# --- schema pruning and checking (the subset of structural schemas the CRDs use) -----------

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "integer": (int,),
    "boolean": (bool,), "number": (int, float),
}


def _prune(value: Any, schema: Obj, path: str, causes: list[str], pruned: list[str],
           who: str) -> Any:
    kind = schema.get("type")
    if kind is not None:
        ok = isinstance(value, _TYPES[kind]) and not (
            kind in ("integer", "number") and isinstance(value, bool))
        if not ok:
            causes.append(f'{path}: Invalid value: "{type(value).__name__}": {path} in body '
                          f"must be of type {kind}")
            return value
    if "enum" in schema and value not in schema["enum"]:
        causes.append(f"{path}: Unsupported value: {value!r}")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"],
                                                                       value):
        causes.append(f"{path}: Invalid value: {value!r}: must match {schema['pattern']}")
    if isinstance(value, dict):
        for required in schema.get("required") or []:
            if required not in value:
                causes.append(f"{path}.{required}: Required value")
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return value
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        kept = {}
        for key, item in value.items():
            child = f"{path}.{key}"
            if key in properties:
                kept[key] = _prune(item, properties[key], child, causes, pruned, who)
            elif isinstance(extra, dict):
                kept[key] = _prune(item, extra, child, causes, pruned, who)
            elif extra is True:
                kept[key] = item
            else:
                pruned.append(f"{who}: {child}")
        return kept
    if isinstance(value, list) and "items" in schema:
        return [_prune(item, schema["items"], f"{path}[{i}]", causes, pruned, who)
                for i, item in enumerate(value)]
    return value


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge_patch(target.get(key), value)
    return target


def _selected(obj: Obj, params: dict[str, str]) -> bool:
    """Equality-based fieldSelector (metadata.name/namespace) and labelSelector."""
    meta = obj.get("metadata") or {}
    for term in filter(None, (params.get("fieldSelector") or "").split(",")):
        field, _, wanted = term.partition("=")
        negate = field.endswith("!")
        field = field.rstrip("!=")
        actual = {"metadata.name": meta.get("name"),
                  "metadata.namespace": meta.get("namespace")}.get(field)
        if (actual == wanted.lstrip("=")) == negate:
            return False
    labels = meta.get("labels") or {}
    for term in filter(None, (params.get("labelSelector") or "").split(",")):
        if "!=" in term:
            label, wanted = term.split("!=", 1)
            if labels.get(label) == wanted:
                return False
        elif "=" in term:
            label, wanted = term.replace("==", "=").split("=", 1)
            if labels.get(label) != wanted:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


# --- running it for other processes ---------------------------------------------------------


class DoubleThread:
    """The double on its own event loop in a thread, serving http(s)://127.0.0.1:<port>."""

    def __init__(self, *, token: str | None = None, tls: ssl.SSLContext | None = None,
                 history_limit: int = 10_000,
                 authorize: Callable[..., bool] | None = None) -> None:
        self._token = token
        self._authorize = authorize
        self._tls = tls
        self._history_limit = history_limit
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kube-double",
                                        daemon=True)
        self._stop: asyncio.Event | None = None
        self._done: concurrent.futures.Future[None] | None = None
        self.api: StrictKubernetes
        self.url = ""

    def __enter__(self) -> DoubleThread:
        self._thread.start()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._done = asyncio.run_coroutine_threadsafe(self._serve(ready), self._loop)
        ready.result(timeout=10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        self.api = StrictKubernetes(token=self._token, history_limit=self._history_limit,
                                    authorize=self._authorize)
        self._stop = asyncio.Event()
        server_cls = _tls_server(self._tls) if self._tls else None
        kwargs = {"server_cls": server_cls} if server_cls else {}
        try:
            async with self.api, kmock.Server(self.api, **kwargs) as server:
                self.url = str(server.url).rstrip("/")
                ready.set_result(None)
                await self._stop.wait()
                self.api.end_watches()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the double's loop (where its state lives) and return its result."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    def close(self) -> None:
        if self._stop is not None and self._done is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            try:
                self._done.result(timeout=10)
            finally:
                self._stop = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        if not self._loop.is_closed() and not self._loop.is_running():
            self._loop.close()


def _tls_server(context: ssl.SSLContext) -> type:
    from aiohttp.test_utils import RawTestServer

    class TlsRawTestServer(RawTestServer):
        async def start_server(self, **kwargs: Any) -> None:
            await super().start_server(ssl=context, **kwargs)

    return TlsRawTestServer
