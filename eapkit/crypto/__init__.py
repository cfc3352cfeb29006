"""Small primitives that ``cryptography`` does not offer (DESIGN.md, "Layers").

- :mod:`eapkit.crypto.md4`: MD4 (RFC 1320), through OpenSSL when it offers it.
- :mod:`eapkit.crypto.mschap`: MS-CHAPv2 (RFC 2759) and its MPPE keys (RFC 3079).
"""
