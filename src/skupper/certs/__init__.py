"""Certificates and TLS: certificate authorities, certificate issuing, TLS contexts.

Owns:

* ``issue``: creating CAs and issuing server/client certificates from them, plus small
  parsers (serial, common name, "is this a CA", "was this signed by that CA").
  Every key is ECDSA P-256; keys are PEM, PKCS8, unencrypted (callers store them
  with private file modes).
* ``tls``: ``ssl.SSLContext`` builders for servers and clients. TLS 1.3 only; each
  side trusts exactly the CA it is given, never the system store, and a server that
  is given a client CA requires a client certificate from that CA (mutual TLS).

Must not: do network I/O, read or write the store, or import any skupper package
other than ``skupper.base``. Callers own persistence and connections.

Import cost matters: this package imports nothing on its own. Only ``issue``
imports ``cryptography``; ``tls`` uses the standard library only, because the CLI
imports it on a cold-start-sensitive path.
"""
