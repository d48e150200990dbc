"""Upstream's status model: conditions, and ``status``/``message`` derived from them.

``Ready`` is derived: the first required condition that is not True gives its reason
and message to Ready, and the resource's status is Ready, Pending or Error.
"""

from __future__ import annotations

from typing import Any

from skupper.resources.model import Resource, now_rfc3339

READY = "Ready"
PENDING = "Pending"
ERROR = "Error"


def get_condition(resource: Resource, ctype: str) -> dict[str, Any] | None:
    for cond in resource.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return None


def set_condition(
    resource: Resource,
    ctype: str,
    ok: bool,
    reason: str,
    message: str,
    *,
    pending: bool = False,
) -> bool:
    """Set one condition; return whether anything changed.

    ``lastTransitionTime`` moves only when the True/False status flips, as in Kubernetes.
    A False condition that is merely ``pending`` is recorded with reason ``Pending``
    so that Ready can report Pending rather than Error.
    """
    status = resource.setdefault("status", {})
    conditions: list[dict[str, Any]] = status.setdefault("conditions", [])
    generation = int(resource.get("metadata", {}).get("generation", 0) or 0)
    value = "True" if ok else "False"
    if pending and not ok:
        reason = "Pending"
    for cond in conditions:
        if cond.get("type") == ctype:
            changed = (
                cond.get("status") != value
                or cond.get("reason") != reason
                or cond.get("message") != message
                or cond.get("observedGeneration") != generation
            )
            if cond.get("status") != value:
                cond["lastTransitionTime"] = now_rfc3339()
            cond.update(status=value, reason=reason, message=message,
                        observedGeneration=generation)
            return changed
    conditions.append(
        {
            "type": ctype,
            "status": value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now_rfc3339(),
            "observedGeneration": generation,
        }
    )
    return True


def derive_ready(resource: Resource, required: tuple[str, ...],
                 outcomes: dict[str, str] | None = None) -> bool:
    """Compute condition Ready and the top-level status/message from ``required``.

    ``outcomes`` maps the reasons that are expected ends, not failures (a grant used
    up, expired), to the neutral top-level status shown for them instead of Error.
    """
    status = resource.setdefault("status", {})
    for ctype in required:
        cond = get_condition(resource, ctype)
        if cond is None or cond.get("status") != "True":
            reason = cond.get("reason", "Pending") if cond else "Pending"
            message = cond.get("message", f"{ctype} pending") if cond else f"{ctype} pending"
            changed = set_condition(resource, READY, False, reason, message)
            top = PENDING if reason == "Pending" else (outcomes or {}).get(reason, ERROR)
            changed |= bool(status.get("status") != top or status.get("message") != message)
            status["status"] = top
            status["message"] = message
            return changed
    changed = set_condition(resource, READY, True, READY, "OK")
    changed |= bool(status.get("status") != READY or status.get("message") != "OK")
    status["status"] = READY
    status["message"] = "OK"
    return changed


def is_ready(resource: Resource) -> bool:
    cond = get_condition(resource, READY)
    return bool(cond and cond.get("status") == "True")


def status_message(resource: Resource) -> str:
    status = resource.get("status") or {}
    return str(status.get("message") or status.get("status") or "no status yet")
