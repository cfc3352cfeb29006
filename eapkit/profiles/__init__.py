"""Client profiles for the IKEv2 gateway: Apple ``.mobileconfig``, a Windows PowerShell
script with its EapHostConfig, a strongSwan Android ``.sswan`` and a Linux swanctl
tree (docs/profiles.md).  An application-layer package: ``eapkit profile`` runs it."""
