"""Whatever the names, every platform's profile either is refused with ProfileError or
passes its vendor's rules: no name can break out of a plist, an XML document, a
PowerShell string, JSON or a swanctl.conf value."""

from __future__ import annotations

import json
import plistlib
import xml.etree.ElementTree as ET

from hypothesis import given
from hypothesis import strategies as st

from eapkit.profiles import android, apple, linux, windows
from eapkit.profiles.common import ProfileError
from tests.profiles.helpers import (
    apple_errors,
    eap_host_config_errors,
    request,
    sswan_errors,
    swanctl_sections,
)

names = st.text(min_size=0, max_size=40)
methods = st.sampled_from(["eap-mschapv2", "eap-tls", "cert-eap", "peap", "teap"])


@given(user=names, gateway=names, name=names, method=methods)
def test_every_profile_is_valid_or_refused(user: str, gateway: str, name: str, method: str) -> None:
    try:
        req = request(method, user=user, gateway=gateway, gateway_id=gateway, name=name)
    except ProfileError:
        assert not (user and gateway) or not all(
            s.isprintable() and len(s) <= 253 for s in (user, gateway, name or "-")
        )
        return
    if method in apple.METHODS:
        profile = plistlib.loads(apple.mobileconfig(req))
        assert apple_errors(profile) == []
        vpn = profile["PayloadContent"][0]
        assert vpn["IKEv2"]["RemoteAddress"] == gateway
    if method in android.METHODS:
        document = json.loads(android.sswan(req))
        assert sswan_errors(document) == []
        assert document["remote"]["addr"] == gateway
    if method in windows.METHODS:
        script = windows.powershell(req).decode()
        xml = next(x for x in script.splitlines() if x.startswith("$eapXml = [xml]'"))
        body = xml.removeprefix("$eapXml = [xml]'").removesuffix("'")
        for quote in "'\u2018\u2019\u201a\u201b":  # every single quote inside is doubled
            assert quote not in body.replace(quote * 2, "")
            body = body.replace(quote * 2, quote)
        assert eap_host_config_errors(ET.fromstring(body)) == []
    if method in linux.METHODS:
        files = linux.swanctl_tree(req)
        (conf,) = [v for k, v in files.items() if k.startswith("conf.d/")]
        sections = swanctl_sections(conf.decode())
        assert sum(1 for s in sections if s.count(".") == 1 and s.startswith("connections.")) == 1
