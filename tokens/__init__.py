"""Drivers for hardware tokens (PC/SC: OATH, PIV, FIDO2, YubiKey) and virtual cards.

``tokens`` may import :mod:`eapkit`; :mod:`eapkit` never imports ``tokens``.
"""

__all__: list[str] = []
