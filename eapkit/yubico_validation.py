"""The Yubico OTP validation server (protocol 2.0) on HTTP, and its command line.

:class:`~eapkit.verify.yubico_server.ValidationService` answers one ``/wsapi/2.0/verify``
query without I/O; this module, in the application layer next to ``serve`` and
``probe``, opens the socket: :func:`make_http_server` and ``python -m
eapkit.yubico_validation``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from eapkit.store.memory import MemoryStore
from eapkit.store.sealing import Sealer
from eapkit.verify.yubico import YubicoVerifier
from eapkit.verify.yubico_server import VERIFY_PATH, StoreApiClients, ValidationService

__all__ = ["main", "make_http_server"]


def make_http_server(
    service: ValidationService, host: str = "127.0.0.1", port: int = 0
) -> ThreadingHTTPServer:
    """An ``http.server`` answering GET :data:`VERIFY_PATH`; run ``serve_forever()``
    (a thread per request), stop with ``shutdown()`` and ``server_close()``.  Plain
    HTTP: put it on loopback or behind a TLS proxy; responses are signed anyway."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "eapkit-ykval"
        sys_version = ""

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != VERIFY_PATH:
                self._send(404, "not found\r\n")
                return
            answer = service.handle(url.query, time.time())
            self._send(answer.http_status, answer.body)

        def _send(self, code: int, body: str) -> None:
            data = body.encode("ascii", "replace")
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # the query holds OTPs: keep them out of stderr

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m eapkit.yubico_validation``: run the server, or add an API client.

    The store URL is that of ``eapkit serve`` (keys enrolled with ``eapkit enroll
    yubikey`` validate here); sealing keys come from ``EAPKIT_STORE_KEYS``.
    """
    from eapkit.store import open_store

    parser = argparse.ArgumentParser(prog="python -m eapkit.yubico_validation")
    parser.add_argument("--store", required=True, help="store URL, e.g. sqlite:///srv/eapkit.db")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="answer /wsapi/2.0/verify")
    run.add_argument("--listen", default="127.0.0.1:8000", help="HOST:PORT (default loopback)")
    run.add_argument("--require-signature", action="store_true")
    add = sub.add_parser("add-client", help="create an API client; prints id and key")
    add.add_argument("--disabled", action="store_true")
    args = parser.parse_args(argv)

    store = open_store(args.store)
    sealer = None if isinstance(store, MemoryStore) else Sealer.from_env()
    clients = StoreApiClients(store, sealer)
    if args.command == "add-client":
        client = clients.create(enabled=not args.disabled)
        print(f"id={client.id}\nkey={client.key_b64}")
        return 0
    host, _, port = args.listen.rpartition(":")
    service = ValidationService(
        YubicoVerifier(store, sealer), clients, require_signature=args.require_signature
    )
    server = make_http_server(service, host or "127.0.0.1", int(port))
    print(f"listening on http://{host}:{server.server_address[1]}{VERIFY_PATH}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        store.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
