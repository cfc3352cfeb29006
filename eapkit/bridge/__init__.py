"""The security-key approval bridge: ``eapkit serve`` holds a login after the password
step until the user approves it with a security key or passkey on a small web page
(docs/webauthn-bridge.md).

- :mod:`eapkit.bridge.config`: the ``[bridge]`` settings;
- :mod:`eapkit.bridge.approvals`: pending approvals and enrollment links on the store;
- :mod:`eapkit.bridge.gate`: :class:`Bridge`, the gate the RADIUS core asks;
- :mod:`eapkit.bridge.app`: the web app's routes (sans-I/O);
- :mod:`eapkit.bridge.http`: the app on a socket (h11);
- :mod:`eapkit.bridge.run`: the web app beside ``eapkit serve``'s RADIUS front.

Needs the ``bridge`` extra (h11, python-fido2).
"""

from eapkit.bridge.config import BridgeConfig

__all__ = ["BridgeConfig"]
