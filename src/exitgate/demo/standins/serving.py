"""Background serving shared by the stand-ins: a server's loop on a daemon thread, stopping it,
and the timeouts that bound how long a stuck client can hold a thread.
"""

from __future__ import annotations

import socketserver
import threading

# How long a connection may sit idle (or a TLS handshake may take) before its thread gives up;
# bounds how long a stuck client can hold a thread after stop().
_IO_TIMEOUT_S = 10.0
_JOIN_TIMEOUT_S = 5.0


def _serve(server: socketserver.BaseServer, name: str) -> threading.Thread:
    # Short poll interval: shutdown() waits for the loop to notice, and tests stop servers often.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
    )
    thread.start()
    return thread


def _halt(server: socketserver.BaseServer, thread: threading.Thread) -> None:
    if thread.is_alive():
        server.shutdown()
        thread.join(_JOIN_TIMEOUT_S)
    server.server_close()
