"""The Linux profile brings a tunnel up: a client charon loaded with the tree that
``eapkit profile linux`` writes, against a gateway charon configured like the lab's
(docs/examples/gateway-*.swanctl.conf, with charon's own EAP-MSCHAPv2 in place of
eap-radius so no RADIUS server is needed), each in a network namespace of its own,
joined by a veth pair.  Also the claim of docs/profiles.md: a PFS rekey works only when
the gateway's children list the groups (strongSwan 5.9.8's default ESP proposal has no
key exchange)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eapkit.profiles import linux
from tests.conftest import require_tool
from tests.profiles.charon import private_charon, swanctl
from tests.profiles.helpers import P12_PASSWORD, pki, request

GATEWAY, CLIENT = "10.77.0.1", "10.77.0.2"
# ESP in user space over a TUN device in the namespace: this kernel has no XFRM (as in
# tests/e2e/lab.py)
ESP = "kernel-libipsec"
ALICE_PASSWORD = "wonderland-eap"


def _gateway_conf(method: str, esp: str) -> str:
    remote = {
        "eap-mschapv2": "remote {\n auth = eap-mschapv2\n eap_id = %any\n }",
        # charon is the EAP-TLS server itself here (in the lab, eapkit serve is)
        "eap-tls": "remote {\n auth = eap-tls\n eap_id = %any\n cacerts = ca.pem\n }",
        "cert-eap": (
            "remote-1 {\n auth = pubkey\n cacerts = ca.pem\n }\n"
            "remote-2 {\n auth = eap-mschapv2\n eap_id = %any\n }"
        ),
    }[method]
    return f"""connections {{
    rw {{
        version = 2
        local_addrs = {GATEWAY}
        pools = vips
        send_cert = always
        local {{
            auth = pubkey
            certs = gw.pem
            id = vpn.example.org
        }}
        {remote}
        children {{
            net {{
                local_ts = 198.51.100.0/24
                {esp}
            }}
        }}
    }}
}}
pools {{
    vips {{
        addrs = 10.78.0.0/24
    }}
}}
secrets {{
    eap-alice {{
        id = alice
        secret = "{ALICE_PASSWORD}"
    }}
}}
"""


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _link(ip: str, gateway_pid: int, client_pid: int) -> None:
    """A veth pair straight into the two namespaces (no name in the host's)."""
    run = [
        [ip, "link", "add", "v0", "netns", str(gateway_pid), "type", "veth",
         "peer", "name", "v1", "netns", str(client_pid)],
    ]  # fmt: skip
    for pid, dev, addr in ((gateway_pid, "v0", GATEWAY), (client_pid, "v1", CLIENT)):
        ns = ["nsenter", "-t", str(pid), "-n", ip]
        run += [
            [*ns, "link", "set", "lo", "up"],
            [*ns, "addr", "add", f"{addr}/24", "dev", dev],
            [*ns, "link", "set", dev, "up"],
        ]
    # an address in the gateway's local_ts: charon routes the CHILD_SA from it
    run.append(["nsenter", "-t", str(gateway_pid), "-n", ip, "addr", "add", "198.51.100.1/32",
                "dev", "lo"])  # fmt: skip
    for argv in run:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
        assert done.returncode == 0, f"{argv}: {done.stderr}"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, Path, Path, Path]]:
    """(swanctl, gateway VICI, client VICI, tmp): two charons, linked."""
    tools = require_tool("charon", "swanctl", "unshare", "mount", "nsenter", "ip")
    with (
        private_charon(tools, tmp_path / "gw", port=500, extra_plugins=ESP) as (gw, gw_vici),
        private_charon(tools, tmp_path / "client", port=500, extra_plugins=ESP) as (
            client,
            client_vici,
        ),
    ):
        _link(tools["ip"], gw.pid, client.pid)
        time.sleep(0.2)  # charon learns the new addresses from netlink
        yield tools["swanctl"], gw_vici, client_vici, tmp_path


def _load_gateway(tool: str, vici: Path, tmp: Path, method: str, esp: str = "") -> None:
    ca, gw, _, _ = pki()
    root = tmp / "gw-swanctl"
    _write_tree(
        root,
        {
            "swanctl.conf": _gateway_conf(method, esp).encode(),
            "x509/gw.pem": gw.cert_pem,
            "private/gw.key": gw.key_pem,
            "x509ca/ca.pem": ca.cert_pem,
        },
    )
    run = swanctl(tool, vici, "--load-all", "--noprompt", "--file", str(root / "swanctl.conf"))
    assert run.returncode == 0, run.stdout + run.stderr


def _load_client(
    tool: str, vici: Path, tmp: Path, method: str, gateway_id: str = "vpn.example.org"
) -> None:
    root = tmp / "client-swanctl"
    # the EAP server here is the gateway itself: its name is what the client checks
    req = request(method, gateway=GATEWAY, gateway_id=gateway_id, eap_server_names=(gateway_id,))
    _write_tree(root, linux.swanctl_tree(req))
    # what the user adds by hand (the profile writes neither secret)
    secrets = f'secrets {{\n eap-alice {{\n id = alice\n secret = "{ALICE_PASSWORD}"\n }}\n'
    if method != "eap-mschapv2":
        secrets += f' pkcs12-x {{\n file = alice.p12\n secret = "{P12_PASSWORD}"\n }}\n'
    (root / "swanctl.conf").write_text(f"include conf.d/*.conf\n{secrets}}}\n")
    run = swanctl(tool, vici, "--load-all", "--noprompt", "--file", str(root / "swanctl.conf"))
    assert run.returncode == 0, run.stdout + run.stderr


def _log(tmp: Path, who: str) -> str:
    return (tmp / who / "charon.log").read_text()[-4000:]


@pytest.mark.parametrize("method", ["eap-mschapv2", "eap-tls", "cert-eap"])
def test_the_profile_brings_the_tunnel_up(lab: tuple[str, Path, Path, Path], method: str) -> None:
    tool, gw_vici, client_vici, tmp = lab
    _load_gateway(tool, gw_vici, tmp, method)
    _load_client(tool, client_vici, tmp, method)
    up = swanctl(tool, client_vici, "--initiate", "--child", "eapkit", "--ike", "eapkit-alice")
    assert up.returncode == 0, up.stdout + _log(tmp, "client") + _log(tmp, "gw")
    sas = swanctl(tool, gw_vici, "--list-sas").stdout
    assert "ESTABLISHED" in sas and "INSTALLED" in sas, sas
    assert "AES_GCM_16-256" in sas and "ECP_256" in sas, sas
    assert "alice" in sas


def test_a_gateway_that_is_not_the_profiles_is_refused(lab: tuple[str, Path, Path, Path]) -> None:
    """The same exchange fails when the gateway's certificate does not prove the
    profile's RemoteIdentifier: the profile pins the gateway, the test can fail."""
    tool, gw_vici, client_vici, tmp = lab
    _load_gateway(tool, gw_vici, tmp, "eap-mschapv2")
    _load_client(tool, client_vici, tmp, "eap-mschapv2", gateway_id="vpn.example.net")
    up = swanctl(tool, client_vici, "--initiate", "--child", "eapkit", "--ike", "eapkit-alice")
    assert up.returncode != 0
    assert "ESTABLISHED" not in swanctl(tool, gw_vici, "--list-sas").stdout


def _wait_for(path: Path, text: str, after: int, seconds: float = 10) -> bool:
    """True once ``text`` is in ``path`` beyond its first ``after`` characters."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if text in path.read_text()[after:]:
            return True
        time.sleep(0.1)
    return False


def test_a_pfs_rekey_needs_the_gateways_esp_proposals(lab: tuple[str, Path, Path, Path]) -> None:
    tool, gw_vici, client_vici, tmp = lab
    client_log = tmp / "client" / "charon.log"
    _load_gateway(tool, gw_vici, tmp, "eap-mschapv2")  # as the lab's: no esp_proposals
    _load_client(tool, client_vici, tmp, "eap-mschapv2")
    up = swanctl(tool, client_vici, "--initiate", "--child", "eapkit", "--ike", "eapkit-alice")
    assert up.returncode == 0, up.stdout
    mark = len(client_log.read_text())
    swanctl(tool, client_vici, "--rekey", "--child", "eapkit")
    assert _wait_for(client_log, "received NO_PROPOSAL_CHOSEN notify", mark), _log(tmp, "client")
    # as docs/profiles.md says: with the groups in the gateway's children, it goes through
    esp = "esp_proposals = aes256gcm16-ecp256-ecp384, default"
    _load_gateway(tool, gw_vici, tmp, "eap-mschapv2", esp)
    swanctl(tool, client_vici, "--terminate", "--ike", "eapkit-alice")
    up = swanctl(tool, client_vici, "--initiate", "--child", "eapkit", "--ike", "eapkit-alice")
    assert up.returncode == 0, up.stdout
    mark = len(client_log.read_text())
    swanctl(tool, client_vici, "--rekey", "--child", "eapkit")
    assert _wait_for(client_log, "outbound CHILD_SA eapkit{", mark), _log(tmp, "client")
    assert "NO_PROPOSAL_CHOSEN" not in client_log.read_text()[mark:]
    sas = swanctl(tool, client_vici, "--list-sas").stdout
    assert "AES_GCM_16-256/ECP_256" in sas, sas
