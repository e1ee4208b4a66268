"""Personal data, encrypted from the first event on (crypto-shredding).

Fields that an event type declares as personal data are stored as
``enc:v1:<base64(nonce | ciphertext | tag)>``: AES-256-GCM with a key per data
subject (the stream the event belongs to) and the event id (plus the field name)
as associated data, so a ciphertext cannot be moved to another event. Subject
keys live in their own table, wrapped by a master key that only the environment
holds (``EVENTFOLD_MASTER_KEY``; the embedded set-up generates one into its
data folder). Forgetting a subject destroys its key: history stays untouched,
and every reader sees ``FORGOTTEN`` where the plain value was.

A store seals an append's personal fields with `seal` and reveals what it reads with
`reveal`, on its own keyring: `SubjectKeys` (the key table) for `EventStore`, a dict in
memory for `InMemoryEventStore`.
"""

from __future__ import annotations

import base64
import functools
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol
from uuid import UUID

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.db import connections

from eventstore.errors import SubjectForgotten
from eventstore.records import NewEvent, RecordedEvent
from eventstore.registry import EventType

PREFIX = "enc:v1:"
FORGOTTEN = "[forgotten]"
NONCE_BYTES = 12


def master_key() -> bytes:
    raw = settings.EVENTFOLD_MASTER_KEY
    key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    if len(key) != 32:
        raise ValueError("EVENTFOLD_MASTER_KEY must be 32 bytes, URL-safe base64")
    return key


@functools.lru_cache(maxsize=4)
def _cipher(key: bytes) -> AESGCM:
    return AESGCM(key)  # keyed once per key: a replay unwraps thousands of subject keys


def _master() -> AESGCM:
    return _cipher(master_key())


def _aad(event_id: UUID, field: str) -> bytes:
    return event_id.bytes + field.encode()


def encrypt(key: bytes, event_id: UUID, field: str, value: str) -> str:
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, value.encode(), _aad(event_id, field))
    return PREFIX + base64.b64encode(nonce + sealed).decode()


def decrypt(key: bytes | None, event_id: UUID, field: str, value: Any) -> Any:
    if not isinstance(value, str) or not value.startswith(PREFIX):
        return value
    if key is None:
        return FORGOTTEN
    raw = base64.b64decode(value[len(PREFIX) :])
    return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(event_id, field)).decode()


def new_key() -> bytes:
    """A fresh subject key."""
    return AESGCM.generate_key(bit_length=256)


class Keyring(Protocol):
    """Where a store keeps its subjects' keys."""

    def get(self, subject_ids: Iterable[UUID]) -> dict[UUID, bytes | None]: ...

    def store(self, subject_id: UUID, key: bytes) -> bool: ...

    def forget(self, subject_id: UUID) -> bool: ...


class Sealed(NamedTuple):
    data: dict[int, bytes]  # by the event's index in the batch: its payload's JSON, personal fields encrypted
    new_key: bytes | None  # the subject's first key, to store with the append (None: it had one)


def seal(keys: Keyring, stream_id: UUID, batch: Sequence[NewEvent], entries: Sequence[EventType]) -> Sealed:
    """Encrypt the personal fields of a batch (whose events all have ids) with the stream's subject
    key, made on first use; SubjectForgotten once the subject was forgotten."""
    known = keys.get([stream_id])
    if stream_id in known and known[stream_id] is None:
        raise SubjectForgotten(f"subject {stream_id} was forgotten: no new personal data can be stored")
    made = None if stream_id in known else new_key()
    key = known.get(stream_id) or made
    assert key is not None
    sealed = {}
    for i, (event, entry) in enumerate(zip(batch, entries, strict=True)):
        fields = entry.personal_data
        if fields:
            event_id = event.event_id
            assert event_id is not None  # the ciphertext is bound to it
            data = event.payload.model_dump(mode="json")
            for name in fields:
                if isinstance(data.get(name), str):
                    data[name] = encrypt(key, event_id, name, data[name])
            sealed[i] = orjson.dumps(data)
    return Sealed(sealed, made)


def reveal(keys: Keyring, personal: Mapping[str, tuple[str, ...]], events: list[RecordedEvent]) -> None:
    """Decrypt personal data in place while the subject's key exists."""
    sealed = [e for e in events if e.type in personal]
    if not sealed:
        return
    found = keys.get(e.stream_id for e in sealed)
    for e in sealed:
        key = found.get(e.stream_id)
        for name in personal[e.type]:
            if name in e.data:
                e.data[name] = decrypt(key, e.event_id, name, e.data[name])


class SubjectKeys:
    """The key table. Reading a key writes nothing; a new key is stored after the append that
    first uses it, in the same transaction, so the append stays the transaction's first write."""

    def __init__(self, using: str = "default") -> None:
        self.using = using

    def _wrap(self, subject_id: UUID, key: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + _master().encrypt(nonce, key, subject_id.bytes)

    def _unwrap(self, subject_id: UUID, wrapped: bytes) -> bytes:
        return _master().decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], subject_id.bytes)

    def get(self, subject_ids: Iterable[UUID]) -> dict[UUID, bytes | None]:
        """Keys of the subjects that have one (None where the subject was forgotten)."""
        ids = list(set(subject_ids))
        if not ids:
            return {}
        with connections[self.using].cursor() as cur:
            cur.execute("SELECT subject_id, wrapped_key FROM eventstore_subject_key WHERE subject_id = ANY(%s)", [ids])
            rows = cur.fetchall()
        return {sid: (None if wrapped is None else self._unwrap(sid, bytes(wrapped))) for sid, wrapped in rows}

    def store(self, subject_id: UUID, key: bytes) -> bool:
        """Store a new subject key; False when another transaction stored one first."""
        with connections[self.using].cursor() as cur:
            cur.execute(
                "INSERT INTO eventstore_subject_key (subject_id, wrapped_key) VALUES (%s, %s) "
                "ON CONFLICT (subject_id) DO NOTHING RETURNING subject_id",
                [subject_id, self._wrap(subject_id, key)],
            )
            return cur.fetchone() is not None

    def forget(self, subject_id: UUID) -> bool:
        """Destroy a subject's key: its personal data becomes unreadable everywhere, for good."""
        with connections[self.using].cursor() as cur:
            cur.execute(
                "UPDATE eventstore_subject_key SET wrapped_key = NULL, forgotten_at = now() "
                "WHERE subject_id = %s AND wrapped_key IS NOT NULL",
                [subject_id],
            )
            return cur.rowcount == 1
