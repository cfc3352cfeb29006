"""One user read per request.

A PAP+TOTP login asks the directory many questions about one user: is the password
right, which second factor, how long is the code, which prompt, may a password-only
method pass, what does the Accept carry, must the login wait for an approval.  Each
used to read the record again.  Instead the server opens a **request scope** around
each Access-Request (:func:`request_scope`), and a :class:`RequestScoped` directory
reads a user's record at most once inside it; every question is then answered from
that :class:`~eapkit.directory.base.User`.

Nothing outlives the scope: the next request reads again, so a change made by
``eapkit user ...`` in another process is seen by the next login.  Outside a scope
(the ``eapkit`` commands, tests) every ``get`` reads through.  The scope is a
:class:`contextvars.ContextVar`, so threads and tasks serving other requests at the
same time keep theirs apart.
"""

from __future__ import annotations

from contextvars import ContextVar

from eapkit.credentials import Verdict
from eapkit.directory.base import DelegatesNtCheck, Directory, User, policy_of
from eapkit.methods.mschapv2_check import DelegatedCheck
from eapkit.passwords import DEFAULT_ITERATIONS
from eapkit.policy import UserPolicy

__all__ = ["RequestScoped", "request_scope"]

# directory -> {name: record read in this request}
_Reads = dict["RequestScoped", dict[str, User | None]]
_scope: ContextVar[_Reads | None] = ContextVar("eapkit_directory_scope", default=None)


class request_scope:
    """Records read inside are reused until the block ends (nested: the outer scope).
    A class, not a generator: it is entered once per Access-Request (issue 21)."""

    __slots__ = ("_token",)

    def __enter__(self) -> None:
        self._token = None if _scope.get() is not None else _scope.set({})

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _scope.reset(self._token)


class RequestScoped:
    """``directory``, read at most once per user per :func:`request_scope`."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    @classmethod
    def around(cls, directory: Directory) -> RequestScoped:
        return directory if isinstance(directory, RequestScoped) else cls(directory)

    def _reads(self) -> dict[str, User | None] | None:
        reads = _scope.get()
        if reads is None:
            return None
        mine = reads.get(self)
        if mine is None:
            mine = reads[self] = {}
        return mine

    def _forget(self, name: str) -> None:
        reads = self._reads()
        if reads is not None:
            reads.pop(name, None)

    def get(self, name: str) -> User | None:
        reads = self._reads()
        if reads is None:
            return self.directory.get(name)
        if name not in reads:
            reads[name] = self.directory.get(name)
        return reads[name]

    # -- the checks, on the record read once ------------------------------------------

    def verify_password(self, record: User | None, name: str, password: str, now: float) -> Verdict:
        return self.directory.verify_password(record, name, password, now)

    def check_password(self, user: str, password: str, now: float, /) -> Verdict:
        return self.directory.verify_password(self.get(user), user, password, now)

    __call__ = check_password

    def nt_hash(self, user: str) -> bytes | DelegatedCheck | None:
        record = self.get(user)
        if record is None:
            return None
        if record.nt_hash is None and isinstance(self.directory, DelegatesNtCheck):
            return self.directory.delegated_check(record)  # no second read
        return record.nt_hash

    def policy(self, user: str) -> UserPolicy | None:
        return policy_of(self.get(user))

    # -- administration: through to the directory, and never stale in this scope ------

    def list(self) -> list[User]:
        return self.directory.list()

    def add(
        self,
        name: str,
        password: str,
        *,
        nt_hash: bool = True,
        second_factor: str = "none",
        policy: UserPolicy | None = None,
        iterations: int = DEFAULT_ITERATIONS,
    ) -> User:
        self._forget(name)
        return self.directory.add(
            name,
            password,
            nt_hash=nt_hash,
            second_factor=second_factor,
            policy=policy,
            iterations=iterations,
        )

    def set_policy(self, name: str, policy: UserPolicy) -> bool:
        self._forget(name)
        return self.directory.set_policy(name, policy)

    def set_second_factor(self, name: str, second_factor: str) -> bool:
        self._forget(name)
        return self.directory.set_second_factor(name, second_factor)

    def set_disabled(self, name: str, disabled: bool) -> bool:
        self._forget(name)
        return self.directory.set_disabled(name, disabled)

    def delete(self, name: str) -> bool:
        self._forget(name)
        return self.directory.delete(name)

    def close(self) -> None:
        self.directory.close()
