"""FIDO2 security keys through python-fido2, checked by eapkit's WebAuthn verifier.

A key is reached over USB HID (``fido2.hid.CtapHidDevice``) or over PC/SC
(``fido2.pcsc.CtapPcscDevice``: CTAP 2.1 section 11.3, NFCCTAP_MSG over ISO 7816, the
path a key on an NFC or contact reader takes, and the path to the virtual card of
:mod:`tokens.sim`).  :class:`Fido2Token` plays the browser: python-fido2's
``Fido2Client`` turns the relying party's options JSON (WebAuthn L3 section 5.4/5.5)
into CTAP2 commands, asks for the PIN when the key has one, and gives back the JSON of
the ``PublicKeyCredential`` (section 5.1.8), which is exactly what
:class:`eapkit.verify.webauthn.WebAuthnVerifier` consumes.  :class:`BenchRelyingParty`
joins the two for the command line and the tests: register, then assert, each ending
in eapkit's verdict.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fido2.client import (
    ClientError,
    DefaultClientDataCollector,
    Fido2Client,
    UserInteraction,
)
from fido2.ctap import CtapDevice
from fido2.ctap2.base import Ctap2, Info
from fido2.webauthn import (
    PublicKeyCredentialCreationOptions,
    PublicKeyCredentialRequestOptions,
)

from eapkit.store.base import Store
from eapkit.store.memory import MemoryStore
from eapkit.verify.webauthn import RegistrationVerdict, WebAuthnVerdict, WebAuthnVerifier
from tokens.errors import NoReaderError, TokenError

__all__ = [
    "BenchRelyingParty",
    "Fido2Token",
    "PinNeededError",
    "list_devices",
    "open_device",
]


class PinNeededError(TokenError):
    """The key has a PIN and the operation needs it, but none was given."""


def list_devices(*, pcsc: bool = True, hid: bool = True) -> list[tuple[str, CtapDevice]]:
    """(description, device) for every FIDO key on PC/SC readers and USB HID."""
    found: list[tuple[str, CtapDevice]] = []
    if pcsc:
        try:
            from fido2.pcsc import CtapPcscDevice

            for dev in CtapPcscDevice.list_devices():
                found.append((f"pcsc:{dev._name}", dev))
        except Exception:  # noqa: S110 - no pcscd / no pyscard: just no PC/SC keys
            pass
    if hid:
        try:
            from fido2.hid import CtapHidDevice

            for hid_dev in CtapHidDevice.list_devices():
                found.append((f"hid:{hid_dev.descriptor.path!s}", hid_dev))
        except Exception:  # noqa: S110 - no hidraw access: just no HID keys
            pass
    return found


def open_device(reader: str | None = None) -> CtapDevice:
    """The FIDO key on the reader whose name contains ``reader`` (PC/SC), else the first."""
    if reader is not None:
        from fido2.pcsc import CtapPcscDevice

        for dev in CtapPcscDevice.list_devices(reader):
            return dev
        raise NoReaderError(f"no FIDO applet answers on a reader matching {reader!r}")
    devices = list_devices()
    if not devices:
        raise NoReaderError("no FIDO key found (PC/SC or USB HID)")
    return devices[0][1]


class _Interaction(UserInteraction):
    def __init__(self, pin: str | None) -> None:
        self.pin = pin

    def prompt_up(self) -> None:
        pass  # the caller's UI says "touch your key"; nothing to do here

    def request_pin(self, permissions: object, rp_id: str | None) -> str | None:
        if self.pin is None:
            raise PinNeededError("the key asks for its PIN: pass pin=")
        return self.pin

    def request_uv(self, permissions: object, rp_id: str | None) -> bool:
        return True


def _json(obj: Any) -> dict[str, Any]:
    """python-fido2's response object as the JSON dict WebAuthn's toJSON() gives."""
    return dict(obj)


class Fido2Token:
    """A FIDO2 key driven like a browser would, for ``origin``."""

    def __init__(self, device: CtapDevice, origin: str, *, pin: str | None = None) -> None:
        self.device = device
        self.origin = origin
        self.client = Fido2Client(device, DefaultClientDataCollector(origin), _Interaction(pin))

    def info(self) -> Info:
        return Ctap2(self.device).get_info()

    def create(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """navigator.credentials.create(): options JSON in, PublicKeyCredential JSON out.

        ``options`` is PublicKeyCredentialCreationOptionsJSON, bare or under "publicKey".
        """
        opts = PublicKeyCredentialCreationOptions.from_dict(dict(options.get("publicKey", options)))
        try:
            return _json(self.client.make_credential(opts))
        except ClientError as err:
            if isinstance(err.cause, PinNeededError):
                raise err.cause from None
            raise TokenError(f"make credential failed: {err.code.name}: {err.cause}") from None

    def get(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """navigator.credentials.get(): the first assertion, as PublicKeyCredential JSON."""
        opts = PublicKeyCredentialRequestOptions.from_dict(dict(options.get("publicKey", options)))
        try:
            return _json(self.client.get_assertion(opts).get_response(0))
        except ClientError as err:
            if isinstance(err.cause, PinNeededError):
                raise err.cause from None
            raise TokenError(f"get assertion failed: {err.code.name}: {err.cause}") from None


@dataclass
class BenchRelyingParty:
    """A relying party in memory: eapkit's verifier plus the credentials it registered."""

    rp_id: str = "bench.eapkit.test"
    origin: str = ""
    user_verification: str = "preferred"
    store: Store | None = None  # where credentials live; memory unless given
    verifier: WebAuthnVerifier = field(init=False)

    def __post_init__(self) -> None:
        self.origin = self.origin or f"https://{self.rp_id}"
        self.verifier = WebAuthnVerifier(
            self.store if self.store is not None else MemoryStore(),
            rp_id=self.rp_id,
            origins=[self.origin],
            rp_name="eapkit bench",
            user_verification=self.user_verification,  # type: ignore[arg-type]
            attestation="self",
        )

    def register(
        self, token: Fido2Token, user: str, *, resident_key: bool = False, now: float | None = None
    ) -> RegistrationVerdict:
        now = time.time() if now is None else now
        options = self.verifier.begin_registration(
            user, now=now, resident_key="required" if resident_key else "discouraged"
        )
        return self.verifier.finish_registration(token.create(options), now=now)

    def authenticate(
        self, token: Fido2Token, user: str | None = None, *, now: float | None = None
    ) -> WebAuthnVerdict:
        now = time.time() if now is None else now
        options = self.verifier.begin_authentication(user, now=now)
        return self.verifier.finish_authentication(token.get(options), now=now)
