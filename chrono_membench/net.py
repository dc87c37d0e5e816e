"""One try at a server before a client's own retries: a machine without network is told at once."""

from __future__ import annotations

import socket
from urllib.parse import urlparse


def unreachable(url: str, timeout_s: float = 5.0) -> str | None:
    """Why `url`'s host cannot be reached, in words ("host:port: reason"); None if a TCP connection opens within
    timeout_s."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout_s).close()
    except OSError as e:
        return f"{parsed.hostname}:{port}: {e.strerror or type(e).__name__}"
    return None
