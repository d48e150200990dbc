"""The Listener and Connector reconcilers: check the spec, configure the router, report.

Status follows upstream: ``Configured`` (the router applied the spec: for a listener,
its port is bound), ``Matched`` (a reachable connector, or listener, with the same
routing key exists somewhere in the network; Pending "No matching connectors" or
"No matching listeners" otherwise) and the derived ``Ready``; plus
``hasMatchingConnector`` / ``hasMatchingListener``.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from skupper.resources import Resource
from skupper.resources.status import derive_ready, set_condition
from skupper.store.interface import NotFound, Store

log = logging.getLogger(__name__)

SERVICE_REQUIRED = ("Configured", "Matched")
SUPPORTED_TYPES = ("", "tcp")



PORT_IN_USE = "another process holds the port"


def listen_problem(host: str, port: int, exc: OSError) -> str:
    """Why a listener cannot listen, in words that say what to do."""
    import errno

    where = f"cannot listen on {host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return f"{where}: {PORT_IN_USE}; pick another port"
    if exc.errno == errno.EACCES:
        return f"{where}: ports below 1024 need privileges; pick a port of 1024 or above"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{where}: {host} is not an address of this machine"
    return f"{where}: {exc.strerror or exc}"

class ServiceRuntime(Protocol):
    async def ensure_listener(self, name: str, key: str, host: str, port: int) -> None: ...
    async def remove_listener(self, name: str) -> None: ...
    def ensure_connector(self, name: str, key: str, host: str, port: int) -> None: ...
    def remove_connector(self, name: str) -> None: ...
    def has_connector(self, key: str) -> bool: ...
    def has_listener(self, key: str) -> bool: ...


def spec_problem(spec: dict[str, Any], kind: str) -> str:
    """What is wrong with a Listener or Connector spec, or "" if nothing."""
    key, port, host = spec.get("routingKey"), spec.get("port"), spec.get("host")
    if not isinstance(key, str) or not key:
        return "spec.routingKey is required"
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        return "spec.port must be a port number (1-65535)"
    if not isinstance(host, str) or not host:
        if kind == "Connector" and spec.get("selector"):
            return "spec.selector needs the kubernetes platform; set spec.host"
        return "spec.host is required"
    if str(spec.get("type") or "") not in SUPPORTED_TYPES:
        return f'spec.type "{spec.get("type")}" is not supported (only tcp)'
    return ""


class ServiceReconciler:
    def __init__(self, store: Store, runtime: ServiceRuntime) -> None:
        self._store = store
        self._runtime = runtime

    async def reconcile_listener(self, name: str) -> None:
        try:
            listener = await self._store.get("Listener", name)
        except NotFound:
            await self._runtime.remove_listener(name)
            return
        spec = listener.get("spec") or {}
        problem = spec_problem(spec, "Listener")
        if not problem:
            try:
                await self._runtime.ensure_listener(name, spec["routingKey"], spec["host"],
                                                    int(spec["port"]))
            except OSError as exc:
                problem = listen_problem(spec["host"], int(spec["port"]), exc)
        if problem:
            await self._runtime.remove_listener(name)
        matched = not problem and self._runtime.has_connector(spec["routingKey"])
        await self._store.mutate_status(
            "Listener", name,
            lambda r: _report(r, problem, matched, "hasMatchingConnector",
                              "No matching connectors"))

    async def reconcile_connector(self, name: str) -> None:
        try:
            connector = await self._store.get("Connector", name)
        except NotFound:
            self._runtime.remove_connector(name)
            return
        spec = connector.get("spec") or {}
        problem = spec_problem(spec, "Connector")
        if problem:
            self._runtime.remove_connector(name)
        else:
            self._runtime.ensure_connector(name, spec["routingKey"], spec["host"],
                                           int(spec["port"]))
        matched = not problem and self._runtime.has_listener(spec["routingKey"])
        await self._store.mutate_status(
            "Connector", name,
            lambda r: _report(r, problem, matched, "hasMatchingListener",
                              "No matching listeners"))


def _report(resource: Resource, problem: str, matched: bool, flag: str, pending: str) -> None:
    status = resource.setdefault("status", {})
    if problem:
        set_condition(resource, "Configured", False, "Error", problem)
    else:
        set_condition(resource, "Configured", True, "Ready", "OK")
    if matched:
        status[flag] = True
        set_condition(resource, "Matched", True, "Ready", "OK")
    else:
        status.pop(flag, None)  # upstream omits false (omitempty)
        set_condition(resource, "Matched", False, "Pending", pending, pending=True)
    derive_ready(resource, SERVICE_REQUIRED)
