"""Status fields this project adds to upstream's kinds, as OpenAPI schema fragments.

Upstream's schemas stay untouched for everything else; these additions carry the grant
ledger, wrong-code counts and revocation. The Kubernetes CRDs in deploy/ declare them, and the
schema tests allow exactly these beyond upstream's.
"""

from __future__ import annotations

from typing import Any

_STRING = {"type": "string"}
_STRINGS = {"type": "array", "items": _STRING}

STATUS_EXTENSIONS: dict[str, dict[str, Any]] = {
    "AccessGrant": {
        "ledger": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    key: _STRING
                    for key in ("time", "remote", "name", "subject", "outcome", "serial")
                },
            },
        },
        "ledgerDropped": {"type": "integer"},
        "wrongCodes": {"type": "integer"},
        "rateLimited": {"type": "integer"},
        "distrustedCertificates": _STRINGS,
    },
    "Site": {
        # Every link of the network once (from the adverts): dialing and accepting site
        # ids, the link's cost and, where the dialer advertised it, its name.
        "networkLinks": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"from": _STRING, "to": _STRING, "name": _STRING,
                               "cost": {"type": "integer"}, "dialed": {"type": "boolean"}},
            },
        },
        "revokedGrants": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {key: _STRING for key in ("uid", "name", "time")},
            },
        },
        # Links other sites made to this one, by the identity their certificates prove.
        "incomingLinks": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    **{key: _STRING
                       for key in ("name", "remoteSiteId", "remoteSiteName", "certificate",
                                   "grant", "message")},
                    # false (with a message) for a link the heartbeat gave up on
                    "operational": {"type": "boolean"},
                },
            },
        },
        # A revoked certificate names what it was issued for: a grant or a generated link.
        "revokedCertificates": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {key: _STRING for key in ("serial", "grant", "link", "time")},
            },
        },
        # Links generated here (skupper link generate), each with its own certificate;
        # revoked ones are kept, and the site first linked with each is bound to it.
        "generatedLinks": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {key: _STRING for key in (
                    "name", "serial", "expires", "time", "revoked", "remoteSiteId",
                    "remoteSiteName")},
            },
        },
    },
}
