"""eapkit: EAP methods as sans-I/O state machines, second-factor verifiers, token drivers.

Start with :mod:`eapkit.session` (one EAP conversation, both roles) and
:mod:`eapkit.packet` (the RFC 3748 codec).
"""

from eapkit.errors import ConfigError, DecodeError, EapkitError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DecodeError", "EapkitError", "__version__"]
