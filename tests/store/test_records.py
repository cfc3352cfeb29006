"""SealedRecords: one record format for every secret a verifier keeps."""

from __future__ import annotations

import json

import pytest

from eapkit.errors import ConfigError
from eapkit.rand import DeterministicRandom
from eapkit.store import MemoryStore, SqliteStore
from eapkit.store.records import RecordNotSealed, SealedRecords
from eapkit.store.sealing import Sealer, SealError

SECRET = b"12345678901234567890"


def sealer() -> Sealer:
    return Sealer({"k1": bytes(range(32))}, rand=DeterministicRandom(1))


def test_sealed_round_trip_bound_to_the_key() -> None:
    store = MemoryStore()
    records = SealedRecords(store, sealer())
    records.write("otp:cred:alice", {"v": 1, "digits": 6}, SECRET)
    raw = records.read("otp:cred:alice")
    assert raw is not None and SECRET not in raw
    assert "plain" not in json.loads(raw)
    fields, secret = records.open("otp:cred:alice", raw)
    assert secret == SECRET and fields["digits"] == 6
    with pytest.raises(SealError):
        records.open("otp:cred:mallory", raw)  # copied onto another record
    assert records.delete("otp:cred:alice")
    assert records.read("otp:cred:alice") is None


def test_plain_only_on_a_memory_store(tmp_path: object) -> None:
    with pytest.raises(ConfigError, match="API keys must be sealed"):
        SealedRecords(SqliteStore(f"{tmp_path}/s.db"), what="API keys")
    records = SealedRecords(MemoryStore())
    records.write("k", {"v": 1}, SECRET)
    raw = records.read("k")
    assert raw is not None
    assert records.open("k", raw)[1] == SECRET


def test_sealed_record_without_a_sealer_does_not_open() -> None:
    store = MemoryStore()
    SealedRecords(store, sealer()).write("k", {"v": 1}, SECRET)
    raw = store.get("k")
    assert raw is not None
    with pytest.raises(SealError):
        SealedRecords(store).open("k", raw)


def test_unsealed_record_refused_whenever_keys_exist() -> None:
    store = MemoryStore()
    SealedRecords(store).write("k", {"v": 1}, SECRET)  # planted in the clear
    raw = store.get("k")
    assert raw is not None
    with pytest.raises(RecordNotSealed, match="record_not_sealed"):
        SealedRecords(store, sealer()).open("k", raw)
    # only the migration opts out
    assert SealedRecords(store, sealer(), require_sealed=False).open("k", raw)[1] == SECRET


def test_seal_plain_migrates_a_plain_record() -> None:
    store = MemoryStore()
    SealedRecords(store).write("k", {"v": 1, "digits": 8}, SECRET)
    records = SealedRecords(store, sealer())
    assert records.seal_plain("k")
    assert not records.seal_plain("k")  # already sealed
    assert not records.seal_plain("missing")
    raw = store.get("k")
    assert raw is not None and b"plain" not in raw
    fields, secret = records.open("k", raw)
    assert secret == SECRET and fields["digits"] == 8
