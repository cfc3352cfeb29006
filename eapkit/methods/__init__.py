"""EAP methods, one module per method, both roles (see :mod:`eapkit.methods.base`).

A method module offers its factories and nothing else: it knows no configuration, no
server, no peer tool and no user store.  The table that names the methods and wires them
to an application's credentials is :mod:`eapkit.catalog`; the session only sees
:class:`~eapkit.methods.base.MethodFactory` objects.
"""
