"""Sans-IO link protocol: yamux framing and stream multiplexing as pure state machines.

Bytes go in (``Session.receive_data``), events and bytes come out
(``Session.data_to_send``); the caller owns the TLS connection and the event loop.
Keeping I/O out makes every state transition testable byte-for-byte, so this
package must never import asyncio, ssl, socket, threading or time.
"""
