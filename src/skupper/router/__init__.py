"""The router: link listener (and, with the links issue, dialer and link protocol).

``router.protocol`` will stay free of I/O (no asyncio, ssl or socket). Must not
import cli, daemon or controller.
"""
