"""Skupper site linking in Python: sites, access grants, tokens and links."""

__version__ = "0.1.0"
