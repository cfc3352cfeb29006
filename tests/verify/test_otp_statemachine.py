"""The TOTP verifier as a state machine, checked against a model written from the RFCs.

The model knows the window (RFC 6238 §5.2: nearest step first), the replay rule (a step
at or below the last accepted one), and the throttling rule (RFC 4226 §7.3, as
OtpPolicy documents it).  hypothesis drives time forward and offers right codes at
various offsets, random codes and arbitrary text; every verdict must be the model's.
"""

from __future__ import annotations

import math

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from eapkit.store import MemoryStore
from eapkit.verify.otp import OtpCredential, OtpPolicy, OtpVerifier, hotp
from tests.verify.helpers import NOW, RFC_SECRET

POLICY = OtpPolicy(
    max_failures=3, lockout_base=10, lockout_max=40, failure_ttl=100, track_drift=False
)
ORDER = (0, -1, 1)  # window offsets, nearest first


class TotpMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.verifier = OtpVerifier(MemoryStore(), policy=POLICY)
        self.verifier.enroll("alice", OtpCredential(RFC_SECRET), 0.0)
        self.now = NOW
        self.last: int | None = None
        self.failures = 0
        self.last_failure = 0.0

    # -- the model -------------------------------------------------------------------

    def locked(self) -> bool:
        if self.failures < POLICY.max_failures or self.now >= self.last_failure + 100:
            return False
        delay = min(10 * (1 << (self.failures - POLICY.max_failures)), 40)
        return self.now < self.last_failure + delay

    def expect(self, code: str) -> tuple[str, int | None]:
        if self.locked():
            return "locked_out", None
        clock = math.floor(self.now / 30)
        for offset in ORDER:
            if hotp(RFC_SECRET, clock + offset) == code:
                step = clock + offset
                if self.last is not None and step <= self.last:
                    return "replayed", step
                self.last = step
                self.failures = 0
                return "ok", step
        if self.failures and self.now < self.last_failure + POLICY.failure_ttl:
            self.failures += 1
        else:
            self.failures = 1
        self.last_failure = self.now
        return "bad_code", None

    def check(self, code: str) -> None:
        verdict = self.verifier.verify("alice", code, self.now)
        reason, step = self.expect(code)
        assert verdict.reason == reason, (verdict, reason)
        assert verdict.ok is (reason == "ok")
        if reason in ("ok", "replayed"):
            assert verdict.step == step

    # -- rules -----------------------------------------------------------------------

    @rule(dt=st.floats(0, 120, allow_nan=False))
    def time_passes(self, dt: float) -> None:
        self.now += dt

    @rule(eps=st.sampled_from([-0.5, 0.0, 0.5]))
    def time_passes_to_the_end_of_a_lockout(self, eps: float) -> None:
        # probes the delay's boundary, which random time steps rarely hit
        if self.failures >= POLICY.max_failures:
            delay = min(10 * (1 << (self.failures - POLICY.max_failures)), 40)
            self.now = max(self.now, self.last_failure + delay + eps)

    @rule(offset=st.integers(-3, 3))
    def right_code_at_offset(self, offset: int) -> None:
        self.check(hotp(RFC_SECRET, math.floor(self.now / 30) + offset))

    @rule()
    def replay_of_the_last_accepted(self) -> None:
        if self.last is not None:
            self.check(hotp(RFC_SECRET, self.last))

    @rule(value=st.integers(0, 999_999))
    def random_code(self, value: int) -> None:
        self.check(f"{value:06d}")

    @rule(text=st.text(max_size=12))
    def arbitrary_text(self, text: str) -> None:
        stripped = text.replace(" ", "").replace("\t", "").strip()
        if len(stripped) == 6 and all(c in "0123456789" for c in stripped):
            self.check(text)
        else:
            assert self.verifier.verify("alice", text, self.now).reason == "malformed"

    @invariant()
    def never_raises_for_unknown_users(self) -> None:
        assert self.verifier.verify("nobody", "123456", self.now).reason == "unknown_user"


_current = settings()
TotpMachine.TestCase.settings = settings(
    _current, stateful_step_count=25, max_examples=min(_current.max_examples, 150)
)
TestTotpMachine = TotpMachine.TestCase
