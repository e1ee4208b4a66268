"""Numbers, cursors and text from outside, parsed into bounded types before anything uses them;
and the ledger's event types, which refuse what the read models (or PostgreSQL) cannot store."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from uuid import uuid4

import pytest
from pydantic import ValidationError

from app.ledger import commands, handlers
from app.ledger.commands import Sender
from app.ledger.domain.events import AccountClosed, AccountOpened, FundsDeposited, TransferRequested
from app.ledger.registry import registry
from eventstore import hooks, inputs
from eventstore.memory import InMemoryEventStore
from eventstore.records import Checkpoint
from projections import backpressure


def encoded(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# -- numbers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["0", "7", "42", "9223372036854775807"])
def test_ascii_digits_within_the_bound_are_numbers(text):
    assert inputs.parse_int(text, maximum=inputs.MAX_BIGINT) == int(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\u00b2",
        "\u0661\u0662",
        "1_000",
        " 12",
        "12 ",
        "+5",
        "-5",
        "12.0",
        "0x10",
        "1e3",
        "9223372036854775808",
        "9" * 400,
    ],
)
def test_anything_else_is_not_a_number(text):
    with pytest.raises(ValueError):
        inputs.parse_int(text, maximum=inputs.MAX_BIGINT)


def test_the_bounds_hold_both_ways():
    assert inputs.parse_int("2147483647", maximum=inputs.MAX_INT) == 2**31 - 1
    with pytest.raises(ValueError):
        inputs.parse_int("2147483648", maximum=inputs.MAX_INT)
    with pytest.raises(ValueError):
        inputs.parse_int("0", minimum=1, maximum=inputs.MAX_INT)


# -- cursors ---------------------------------------------------------------------------------------
def test_a_checkpoint_survives_its_cursor():
    for checkpoint in (Checkpoint(0, 0), Checkpoint(2**64 - 1, 2**63 - 1), Checkpoint(812, 40)):
        assert Checkpoint.decode(checkpoint.encode()) == checkpoint


@pytest.mark.parametrize(
    "raw",
    [
        "\u00b2.1",  # str.isdigit() says yes, int() says no
        "1.\u00b2",
        "\u0661\u0662.3",  # int() takes Arabic-Indic digits
        "1_000.3",
        " 1.3",
        "18446744073709551616.1",  # past xid8's 64 bits
        "1.9223372036854775808",  # past bigint
        "1.2.3",
        "1",
    ],
)
def test_a_cursor_that_decodes_to_anything_but_two_bounded_numbers_is_refused(raw):
    with pytest.raises(ValueError):
        Checkpoint.decode(encoded(raw))


def test_a_cursor_that_is_not_base64_text_is_refused():
    for cursor in ("%%%", "\x00", "\ud800", base64.urlsafe_b64encode(b"\xff\xfe").decode()):
        with pytest.raises(ValueError):
            Checkpoint.decode(cursor)


# -- text ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "problem"), [("a\x00b", "NUL"), ("a\ud800", "surrogate"), ("\udfff", "surrogate")])
def test_text_postgresql_cannot_store_is_named(text, problem):
    assert problem in (inputs.text_problem(text) or "")
    with pytest.raises(ValueError, match=problem):
        inputs.storable(text)


def test_ordinary_text_is_storable():
    for text in ("", "Ann", "Zoë 😀", "名前", "tab\tand\nnewline"):
        assert inputs.text_problem(text) is None
        assert inputs.storable(text) == text


# -- the event types refuse what cannot be stored -----------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"owner": "Ann\x00", "currency": "EUR"}, "owner"),
        ({"owner": "Ann\ud800", "currency": "EUR"}, "owner"),
        ({"owner": "", "currency": "EUR"}, "owner"),
        ({"owner": "A" * 201, "currency": "EUR"}, "owner"),
        ({"owner": "0", "currency": "AAA"}, "currency"),  # three capitals, but no currency
        ({"owner": "0", "currency": "DEM"}, "currency"),  # a currency no longer in use
        ({"owner": "0", "currency": "eur"}, "currency"),
    ],
)
def test_account_opened_refuses_what_the_read_model_cannot_hold(fields, field):
    with pytest.raises(ValidationError) as refused:
        AccountOpened(**fields)
    assert [e["loc"] for e in refused.value.errors()] == [(field,)]


def test_every_currency_in_use_is_taken():
    for code in ("EUR", "USD", "JPY", "CHF", "XOF", "GBP"):
        assert AccountOpened(owner="Ann", currency=code).currency == code


@pytest.mark.parametrize(
    "event",
    [
        lambda: FundsDeposited(amount=1, reference="x\x00"),
        lambda: FundsDeposited(amount=1, reference="r" * 501),
        lambda: AccountClosed(reason="\ud83d"),
        lambda: TransferRequested(from_account=uuid4(), to_account=uuid4(), amount=1, currency="eur"),
    ],
)
def test_other_events_refuse_text_and_currencies_they_cannot_store(event):
    with pytest.raises(ValidationError):
        event()


def test_a_transfer_carries_its_accounts_currency_whenever_they_were_opened():
    """Only a new account must open in a currency in use; its transfers carry the currency it has."""
    assert TransferRequested(from_account=uuid4(), to_account=uuid4(), amount=1, currency="HRK").currency == "HRK"


def test_history_is_read_as_it_was_written():
    """Stored events are facts: an account opened in a currency since withdrawn, or with text from
    before these checks, still loads (only new events are held to the rules)."""
    old = registry.decode("ledger.AccountOpened", {"owner": "Old\x00Name", "currency": "HRK"})
    assert old.currency == "HRK" and old.owner == "Old\x00Name"  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        registry.decode("ledger.AccountOpened", {"owner": "A", "currency": "EUR", "surprise": 1})


@pytest.fixture
def memory(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemoryEventStore]:
    monkeypatch.setattr(backpressure, "too_far_behind", lambda: False)
    store = InMemoryEventStore()
    with hooks.suspended(), commands.using(store):
        yield store


def test_a_command_from_any_path_is_refused_the_same_way(memory):
    """The console, seed_demo and the process manager send through the same event types as the API:
    a NUL in an owner is a 422 naming the field whichever way it comes, and nothing is appended."""
    with pytest.raises(ValidationError) as refused:
        commands.send(handlers.account_open, Sender(actor="console"), owner="Ann\x00", currency="EUR")
    answer = commands.refusal(refused.value)
    assert answer is not None and (answer.status, answer.code) == (422, "validation_error")
    assert answer.fields is not None and "owner" in answer.fields
    with pytest.raises(ValidationError):
        commands.send(handlers.account_open, Sender(actor="seed"), owner="Ann", currency="AAA")
    assert memory.read_all().events == []
