"""The ``eapkit`` command.

``eapkit methods`` lists the EAP methods this installation has; ``eapkit demo`` runs a
conversation of each one between the two roles in one process and prints the result
(later issues add ``serve``, ``probe``, ``user``, ``enroll``, ``verify`` and ``token``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from eapkit import __version__
from eapkit.credentials import InMemoryPasswords
from eapkit.loopback import converse
from eapkit.methods import registered
from eapkit.methods.gtc import gtc_authenticator, gtc_peer
from eapkit.session import AuthenticatorSession, PeerSession


def _load_all_methods() -> None:
    for info in registered():
        importlib.import_module(info.module)


def cmd_methods(args: argparse.Namespace) -> int:
    _load_all_methods()
    for info in registered():
        print(f"{info.name:10} {info.method!s:10} {info.description}")
    return 0


def _fixed_answer(answer: str) -> Callable[[str], str]:
    return lambda prompt: answer


def cmd_demo(args: argparse.Namespace) -> int:
    """A GTC conversation between the two roles, right and wrong password."""
    check = InMemoryPasswords({args.user: args.password})
    ok = True
    for label, answer in (("right password", args.password), ("wrong password", "guess")):
        auth = AuthenticatorSession([gtc_authenticator(check)])
        peer = PeerSession([gtc_peer(_fixed_answer(answer))], args.user)
        conv = converse(auth, peer)
        assert conv.authenticator is not None
        r = conv.authenticator
        print(
            f"EAP-GTC {label}: {'Success' if r.success else 'Failure'} "
            f"(reason={r.reason}, user={r.user}, rounds={r.rounds}, packets={len(conv.transcript)})"
        )
        ok &= r.success == (answer == args.password)
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eapkit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"eapkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("methods", help="list the EAP methods eapkit has").set_defaults(func=cmd_methods)
    demo = sub.add_parser("demo", help="run EAP conversations between the two roles in-process")
    demo.add_argument("--user", default="alice")
    demo.add_argument("--password", default="correct horse battery staple")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
