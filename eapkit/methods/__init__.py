"""EAP methods, one module per method, both roles (see :mod:`eapkit.methods.base`).

The registry names every method eapkit knows, so configuration can say ``"gtc"`` or
``"tls"`` and tools can list what is available; the session itself only sees
:class:`~eapkit.methods.base.MethodFactory` objects and needs no change when a method is
added.
"""

from __future__ import annotations

from dataclasses import dataclass

from eapkit.packet import EapType, MethodId

__all__ = ["MethodInfo", "lookup", "register", "registered"]


@dataclass(frozen=True, slots=True)
class MethodInfo:
    """One registry entry: the method's wire identity, its name and where it lives."""

    name: str
    method: MethodId
    module: str
    description: str = ""


_REGISTRY: dict[str, MethodInfo] = {}


def register(info: MethodInfo) -> None:
    """Add a method; names and method ids are unique."""
    for existing in _REGISTRY.values():
        if existing.method == info.method and existing.name != info.name:
            raise ValueError(f"{info.method} is already registered as {existing.name!r}")
    _REGISTRY[info.name] = info


def lookup(key: str | int | MethodId) -> MethodInfo:
    """Find a method by name (``"gtc"``), legacy type (``6``) or :class:`MethodId`."""
    if isinstance(key, str):
        try:
            return _REGISTRY[key.lower()]
        except KeyError:
            raise KeyError(f"no EAP method named {key!r}") from None
    wanted = key if isinstance(key, MethodId) else MethodId.legacy(key)
    for info in _REGISTRY.values():
        if info.method == wanted:
            return info
    raise KeyError(f"no EAP method {wanted}")


def registered() -> list[MethodInfo]:
    return sorted(_REGISTRY.values(), key=lambda i: i.method)


register(MethodInfo("gtc", MethodId.legacy(EapType.GTC), "eapkit.methods.gtc", "RFC 3748 §5.6"))
register(
    MethodInfo(
        "mschapv2",
        MethodId.legacy(EapType.MSCHAPV2),
        "eapkit.methods.mschapv2",
        "draft-kamath-pppext-eap-mschapv2-02, RFC 2759",
    )
)
register(
    MethodInfo("tls", MethodId.legacy(EapType.TLS), "eapkit.methods.tls", "RFC 5216, RFC 9190")
)
register(
    MethodInfo("ttls", MethodId.legacy(EapType.TTLS), "eapkit.methods.ttls", "RFC 5281, RFC 9427")
)
register(
    MethodInfo(
        "peap", MethodId.legacy(EapType.PEAP), "eapkit.methods.peap", "[MS-PEAP] PEAPv0, RFC 9427"
    )
)
