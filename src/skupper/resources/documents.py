"""The files ``skupper system apply -f`` and ``system delete -f`` take: parsed and checked.

A file is multi-document YAML, or JSON (one object, or a ``kind: List`` with ``items``,
in YAML too), of upstream's kinds, bounded in size, count and nesting. Every document is
checked (``resources.document_checks``: kind, apiVersion, name, namespace, each spec
field) and the file as a whole (one Site at most, nothing twice) before anything is
written; the first problem is one ``DocumentError`` naming the document and the field.
Checks that need the store, the certificates or the token rules live with the apply
logic (``controller.apply``). No I/O here.
"""

from __future__ import annotations

import json
from typing import Any

from skupper.base.text import printable
from skupper.resources.document_checks import (
    APPLY_ORDER,
    Document,
    DocumentChecker,
    DocumentError,
    decoded_secret,
    document_error,
)
from skupper.resources.model import new_resource

__all__ = ["APPLY_ORDER", "MAX_INPUT_BYTES", "Document", "DocumentError", "decoded_secret",
           "envelopes", "parse", "validate"]

# A site described as code is a few KiB; a file far larger is not one, and parsing it would
# only cost memory. The document count bounds the work of every later step.
MAX_INPUT_BYTES = 1024 * 1024
MAX_DOCUMENTS = 500
# YAML nests one collection per level; a resource is five levels deep at most.
MAX_NESTING = 20


def parse(raw: bytes, source: str) -> list[Any]:
    """The documents of a file (``kind: List`` items in place); a DocumentError if unreadable."""
    if len(raw) > MAX_INPUT_BYTES:
        raise DocumentError(f"Cannot apply {source}",
                            f"it is over {MAX_INPUT_BYTES // 1024} KiB; a site's resources "
                            "are a few KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DocumentError(f"Cannot apply {source}", "it is not UTF-8 text") from None
    documents = _load(text, source)
    flat: list[Any] = []
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == "List" \
                and isinstance(document.get("items"), list):
            flat.extend(document["items"])
        else:
            flat.append(document)
    if not flat:
        raise DocumentError(f"Cannot apply {source}", "it holds no resources")
    if len(flat) > MAX_DOCUMENTS:
        raise DocumentError(f"Cannot apply {source}",
                            f"it holds {len(flat)} resources; at most {MAX_DOCUMENTS} are taken")
    return flat


def _load(text: str, source: str) -> list[Any]:
    import yaml

    if text.lstrip().startswith(("{", "[")):
        try:  # JSON first: YAML reads most JSON, but not all of it (tabs)
            loaded = json.loads(text)
        except (ValueError, RecursionError):
            pass  # flow-style YAML, perhaps; YAML says what is wrong with it
        else:
            if _too_deep(loaded):
                raise DocumentError(f"Cannot apply {source}", "it is nested too deeply")
            return loaded if isinstance(loaded, list) else [loaded]

    class _NoAliases(yaml.SafeLoader):
        """Aliases have no place in resources; refusing them defuses alias bombs."""

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                raise yaml.YAMLError("YAML aliases are not allowed")
            if self.check_event(yaml.MappingStartEvent, yaml.SequenceStartEvent):
                self._depth = getattr(self, "_depth", 0) + 1
                if self._depth > MAX_NESTING:
                    raise yaml.YAMLError("it is nested too deeply")
                try:
                    return super().compose_node(parent, index)
                finally:
                    self._depth -= 1
            return super().compose_node(parent, index)

    try:
        return [doc for doc in yaml.load_all(text, Loader=_NoAliases) if doc is not None]
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid YAML"
        raise DocumentError(f"Cannot apply {source}",
                            f"it is not valid YAML or JSON ({printable(first, 120)})") from None
    except (ValueError, RecursionError) as exc:
        raise DocumentError(f"Cannot apply {source}",
                            f"a value in it cannot be read ({printable(exc, 120)})") from None


def _too_deep(value: Any) -> bool:
    """Whether ``value`` nests collections deeper than MAX_NESTING (iteratively: no recursion)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > MAX_NESTING:
                return True
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return False


def validate(documents: list[Any], namespace: str, source: str) -> list[Document]:
    """Check every document; the first problem is one DocumentError naming it and the field."""
    checked: list[Document] = []
    seen: set[tuple[str, str]] = set()
    for index, raw in enumerate(documents, start=1):
        doc = DocumentChecker(index, raw, namespace, source).document()
        if (doc.kind, doc.name) in seen:
            raise document_error(source, index, doc.label, "the same resource is given twice")
        seen.add((doc.kind, doc.name))
        checked.append(doc)
    sites = [doc for doc in checked if doc.kind == "Site"]
    if len(sites) > 1:
        raise document_error(source, sites[1].index, sites[1].label,
                     "a file describes one site; it holds more than one Site")
    for access in (doc for doc in checked if doc.kind == "RouterAccess"):
        if not sites:
            raise document_error(source, access.index, access.label,
                         "a RouterAccess is taken with its Site, in the same file")
        # Upstream's non-Kubernetes `site generate --enable-link-access` says "accept
        # links" with a RouterAccess beside the Site; here that is the Site's linkAccess.
        spec = sites[0].resource["spec"]
        if spec.get("linkAccess") in (None, "", "none"):
            spec["linkAccess"] = "default"
    return checked


def envelopes(documents: list[Any], namespace: str, source: str) -> list[Document]:
    """What ``system delete -f`` needs: kind, apiVersion, name and namespace checked."""
    checked = []
    for index, raw in enumerate(documents, start=1):
        checker = DocumentChecker(index, raw, namespace, source)
        kind, name = checker.envelope()
        checked.append(Document(index, kind, name, new_resource(kind, name)))
    return checked
