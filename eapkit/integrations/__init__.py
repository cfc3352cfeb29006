"""Adapters for servers eapkit does not own (DESIGN.md, "Layers"): FreeRADIUS's
rlm_python3 (:mod:`eapkit.integrations.freeradius`)."""
