"""Facts about a Site resource that the CLI and the controller both need; no I/O."""

from __future__ import annotations

from skupper.resources.model import Resource

# The conditions that make a Site Ready.
SITE_REQUIRED = ("Configured", "Running", "Resolved")

# spec.settings key: the name or address remote sites use to reach this site.
LINK_ACCESS_HOST_SETTING = "link-access-host"


def link_access_enabled(site: Resource) -> bool:
    return str(site.get("spec", {}).get("linkAccess") or "none") != "none"


# The site's own credentials (its CAs and server certificates) are Secrets named with
# this prefix, here and upstream (skupper-site-ca, skupper-service-ca, skupper-local-ca...).
# The whole prefix is reserved: a name that comes from outside (a token's metadata.name,
# a grant server's answer, a Link's tlsCredentials) never starts with it, so no
# redemption can write, replace or point a link at a credential the site trusts, including
# ones added later.
SITE_CREDENTIAL_PREFIX = "skupper-"


def is_site_credential(name: str) -> bool:
    """Whether ``name`` is reserved for the site's own credentials."""
    return name.startswith(SITE_CREDENTIAL_PREFIX)
