"""Harness for RadSec interop (RFC 6614), beside :mod:`tests.interop.tools` (kept apart
so that module stays one concept and under ~600 lines):

- :class:`FreeRadiusRadsec`: FreeRADIUS 3.2 with a RadSec listener (a ``listen``
  section with ``proto = tcp`` and a ``tls`` block with ``require_client_cert = yes``,
  as Debian's ``sites-available/tls``) beside its UDP one, on loopback ports the test
  picked; clients of the TLS listener are matched by address and must present a
  certificate from ``client_ca``; their secret is ``radsec`` (RFC 6614 §2.3).
- :class:`RadsecProxy`: radsecproxy 1.9 (Debian ``radsecproxy``) taking RADIUS/UDP
  from 127.0.0.1 on a free port and forwarding everything over TLS to one RadSec
  server (the usual bridge in front of strongSwan, whose eap-radius speaks UDP only);
  it presents ``cert``/``key`` and accepts a server certificate from ``ca`` whose
  dNSName is ``server_name``; ``tls_version`` (``"1.2"``, ``"1.3"``) pins the TLS hop's
  version; ``status_server`` sets the server block's ``StatusServer`` (the RFC 5997
  watchdog; off by default, as radsecproxy's).  Stopped by pid.
- :class:`FreeRadiusRadsecProxy`: FreeRADIUS 3.2 as a RadSec *proxy*: RADIUS/UDP in on
  127.0.0.1, every Access-Request forwarded (``Proxy-To-Realm``) to a ``home_server``
  with ``proto = tcp`` and a ``tls`` section (its client certificate ``home_cert``),
  through a ``home_server_pool`` and ``realm``.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import free_tcp_port, free_udp_port, require_tool
from tests.interop.tools import Daemon, EapkitServe, FreeRadius

RADSEC_SECRET = "radsec"


@dataclass
class FreeRadiusRadsec(FreeRadius):
    """FreeRADIUS with a RadSec listener on 127.0.0.1:``radsec_port`` as well."""

    client_ca: Path | None = None  # CAs of NAS certificates (default: ca_cert)
    radsec_port: int = 0
    radsec_tls_max_version: str = "1.3"

    def radsec_listener(self) -> str:
        assert self.server_cert is not None and self.private_key is not None
        client_ca = self.client_ca or self.ca_cert
        return (
            "listen {\n"
            "    ipaddr = 127.0.0.1\n"
            f"    port = {self.radsec_port}\n"
            "    type = auth\n"
            "    proto = tcp\n"
            "    virtual_server = default\n"
            "    clients = radsec\n"
            "    limit {\n"
            "        max_connections = 64\n"
            "        lifetime = 0\n"
            "        idle_timeout = 30\n"
            "    }\n"
            "    tls {\n"
            f'        private_key_file = "{self.private_key}"\n'
            f'        certificate_file = "{self.server_cert}"\n'
            f'        ca_file = "{client_ca}"\n'
            "        fragment_size = 8192\n"
            '        cipher_list = "DEFAULT"\n'
            '        tls_min_version = "1.2"\n'
            f'        tls_max_version = "{self.radsec_tls_max_version}"\n'
            "        require_client_cert = yes\n"
            "        verify {\n        }\n"
            "    }\n"
            "}\n"
            "clients radsec {\n"
            "    client loopback {\n"
            "        ipaddr = 127.0.0.1\n"
            "        proto = tls\n"
            f'        secret = "{RADSEC_SECRET}"\n'
            "    }\n"
            "}\n"
        )

    def default_site(self) -> str:
        return super().default_site() + self.radsec_listener()

    def configure(self) -> Path:
        if self.radsec_port == 0:
            self.radsec_port = free_tcp_port()
        return super().configure()

    def __enter__(self) -> FreeRadiusRadsec:
        # TLS listeners need the thread pool: "-X" refuses them ("Threading must be
        # enabled for TLS sockets"), so debug output is "-fxx -l stdout" here.
        exe = require_tool("freeradius")["freeradius"]
        self.configure()
        flags = ["-fxx", "-l", "stdout"] if self.debug else ["-f", "-l", "stdout"]
        self.daemon = Daemon(
            [exe, *flags, "-d", str(self.confdir)],
            self.log,
            ready=r"Ready to process requests",
            timeout=30,
        )
        return self


@dataclass
class RadsecProxy:
    """radsecproxy 1.9: RADIUS/UDP in on 127.0.0.1:``port`` (from 127.0.0.1 with
    ``secret``), RadSec out to 127.0.0.1:``server_port``."""

    workdir: Path
    server_port: int
    ca: Path
    cert: Path
    key: Path
    server_name: str
    secret: str = "testing123"
    port: int = 0
    tls_version: str | None = None  # "1.2" or "1.3": TlsVersion TLS1_2 / TLS1_3
    netns: str | None = None  # run inside this network namespace (the IKEv2 lab's gateway)
    transport: str = "tls"  # or "dtls": RADIUS/DTLS (RFC 7360) to the server
    status_server: str | None = None  # the server block's StatusServer (on, minimal, auto)
    daemon: Daemon | None = field(default=None, repr=False)

    @property
    def log(self) -> Path:
        return self.workdir / "radsecproxy.log"

    def _tls_version(self) -> str:
        if self.tls_version is None:
            return ""
        return f"    TlsVersion TLS{self.tls_version.replace('.', '_')}\n"

    def _status_server(self) -> str:
        if self.status_server is None:
            return ""
        return f"    StatusServer {self.status_server}\n"

    def config(self) -> str:
        name = re.escape(self.server_name)
        return (
            f"ListenUDP 127.0.0.1:{self.port}\n"
            "LogLevel 5\n"
            "tls upstream {\n"
            f"    CACertificateFile {self.ca}\n"
            f"    CertificateFile {self.cert}\n"
            f"    CertificateKeyFile {self.key}\n"
            f"{self._tls_version()}"
            "}\n"
            "client nas {\n"
            "    host 127.0.0.1\n"
            "    type udp\n"
            f"    secret {self.secret}\n"
            "}\n"
            "server home {\n"
            f"    host 127.0.0.1\n"
            f"    port {self.server_port}\n"
            f"    type {self.transport}\n"
            "    tls upstream\n"
            # RFC 6614 §2.3 / RFC 7360 §2.3: the fixed secrets
            f"    secret {RADSEC_SECRET if self.transport == 'tls' else 'radius/dtls'}\n"
            # The server is reached by address; identify it by its certificate's name.
            "    CertificateNameCheck off\n"
            f"    MatchCertificateAttribute SubjectAltName:DNS:/^{name}$/\n"
            f"{self._status_server()}"
            "}\n"
            "realm * {\n"
            "    server home\n"
            "}\n"
        )

    def output(self) -> str:
        return self.daemon.output() if self.daemon is not None else ""

    def __enter__(self) -> RadsecProxy:
        exe = require_tool("radsecproxy")["radsecproxy"]
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.port == 0:
            self.port = free_udp_port()
        conf = self.workdir / "radsecproxy.conf"
        conf.write_text(self.config())
        # -f: foreground (so the pid is radsecproxy's), -d 5: log to stderr in full;
        # "ip netns exec" execs it, so the pid stays radsecproxy's there too.
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.daemon = Daemon(
            [*prefix, exe, "-f", "-d", "5", "-c", str(conf)],
            self.log,
            ready=r"createlistener: listening for udp on",
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.daemon is not None:
            self.daemon.stop()


@dataclass
class FreeRadiusRadsecProxy(FreeRadius):
    """FreeRADIUS 3.2 taking RADIUS/UDP on 127.0.0.1:``port`` (secret ``secret``) and
    proxying every Access-Request over TLS to 127.0.0.1:``home_port`` (RFC 6614: secret
    ``radsec``), presenting ``home_cert``/``home_key`` and trusting ``home_ca`` for the
    home server's certificate.  Nothing is authenticated locally."""

    home_port: int = 0
    home_cert: Path | None = None
    home_key: Path | None = None
    home_ca: Path | None = None
    home_tls_max_version: str = "1.3"

    def proxy_conf(self) -> str:
        """``proxy.conf``: home server, pool and realm (as Debian's ``sites-available/tls``)."""
        assert self.home_cert and self.home_key and self.home_ca
        return (
            "proxy server {\n"
            "    default_fallback = no\n"
            "}\n"
            "home_server eapkit {\n"
            "    type = auth\n"
            "    ipaddr = 127.0.0.1\n"
            f"    port = {self.home_port}\n"
            "    proto = tcp\n"
            f'    secret = "{RADSEC_SECRET}"\n'
            "    response_window = 20\n"
            "    status_check = none\n"
            "    tls {\n"
            f'        private_key_file = "{self.home_key}"\n'
            f'        certificate_file = "{self.home_cert}"\n'
            f'        ca_file = "{self.home_ca}"\n'
            "        fragment_size = 8192\n"
            '        cipher_list = "DEFAULT"\n'
            '        tls_min_version = "1.2"\n'
            f'        tls_max_version = "{self.home_tls_max_version}"\n'
            "        connect_timeout = 5\n"
            "    }\n"
            "}\n"
            "home_server_pool eapkit {\n"
            "    type = fail-over\n"
            "    home_server = eapkit\n"
            "}\n"
            "realm eapkit {\n"
            "    auth_pool = eapkit\n"
            "    nostrip\n"
            "}\n"
        )

    def default_site(self) -> str:
        return (
            "server default {\n"
            "    listen {\n"
            "        type = auth\n"
            "        ipaddr = 127.0.0.1\n"
            f"        port = {self.port}\n"
            "    }\n"
            "    authorize {\n"
            "        update control {\n"
            '            &Proxy-To-Realm := "eapkit"\n'
            "        }\n"
            "    }\n"
            "    pre-proxy {\n    }\n"
            "    post-proxy {\n    }\n"
            "    post-auth {\n"
            "        Post-Auth-Type REJECT {\n"
            "            attr_filter.access_reject\n"
            "        }\n"
            "    }\n"
            "}\n"
        )

    def radiusd_conf(self, stock: str) -> str:
        conf = super().radiusd_conf(stock)
        return re.sub(r"(?m)^proxy_requests\s*=.*$", "proxy_requests = yes", conf, count=1)

    def configure(self) -> Path:
        conf = super().configure()
        proxy = conf / "proxy.conf"
        proxy.unlink()
        proxy.write_text(self.proxy_conf())
        proxy.chmod(0o644)
        return conf

    def __enter__(self) -> FreeRadiusRadsecProxy:
        # TLS sockets need the thread pool ("-X" refuses them), as FreeRadiusRadsec.
        exe = require_tool("freeradius")["freeradius"]
        self.configure()
        flags = ["-fxx", "-l", "stdout"] if self.debug else ["-f", "-l", "stdout"]
        self.daemon = Daemon(
            [exe, *flags, "-d", str(self.confdir)],
            self.log,
            ready=r"Ready to process requests",
            timeout=30,
        )
        return self


def serve_output(serve: EapkitServe) -> str:
    """What ``eapkit serve`` wrote so far (its log), for a failure report."""
    return serve.daemon.output() if serve.daemon is not None else ""


def wait_for_tcp(port: int, serve: EapkitServe, timeout: float = 15.0) -> None:
    """Wait until ``eapkit serve``'s RadSec listener accepts connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"no RadSec listener on {port}:\n{serve_output(serve)}")
