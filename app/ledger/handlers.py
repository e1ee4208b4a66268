"""Command handlers: load the aggregate, call one method, save (through app/ledger/commands.py).

Each handler is a function with keyword-only arguments and a `CommandContext`; none knows HTTP.
Users' commands reach them through `commands.send`; the transfer process manager calls its steps
(the `transfer_*` handlers after `transfer_request`) directly, with the triggering event's context.
"""

from __future__ import annotations

from uuid import UUID, uuid5

from app.ledger.commands import (
    CommandContext,
    CommandResult,
    change,
    create,
    load,
    one_transaction,
    step,
    store,
)
from app.ledger.domain import errors
from app.ledger.domain.account import Account
from app.ledger.domain.events import Channel, FailureReason
from app.ledger.domain.transfer import Transfer, TransferState


# -- accounts -----------------------------------------------------------------------------------
def account_open(
    *, owner: str, currency: str, overdraft_limit: int = 0, ctx: CommandContext, account_id: UUID | None = None
) -> CommandResult:
    """Open an account; its id derives from the command id unless given."""
    account_id = account_id or uuid5(ctx.command_id, "account")
    account = Account.open(account_id, owner=owner, currency=currency, overdraft_limit=overdraft_limit)
    return create(account, ctx, "OpenAccount")


def account_deposit(
    *,
    account_id: UUID,
    amount: int,
    reference: str = "",
    channel: Channel = "unknown",
    currency: str | None = None,
    ctx: CommandContext,
) -> CommandResult:
    """A deposit, with the channel it came in through (the API's "api", the console's "console",
    the inbox's "inbox"); in `currency`, when the sender names one (an inbound payment does)."""
    return change(Account, account_id, ctx, "Deposit", lambda a: a.deposit(amount, reference, channel, currency))


def account_withdraw(*, account_id: UUID, amount: int, reference: str = "", ctx: CommandContext) -> CommandResult:
    return change(Account, account_id, ctx, "Withdraw", lambda a: a.withdraw(amount, reference))


def account_freeze(*, account_id: UUID, reason: str = "", ctx: CommandContext) -> CommandResult:
    return change(Account, account_id, ctx, "FreezeAccount", lambda a: a.freeze(reason))


def account_unfreeze(*, account_id: UUID, reason: str = "", ctx: CommandContext) -> CommandResult:
    return change(Account, account_id, ctx, "UnfreezeAccount", lambda a: a.unfreeze(reason))


def account_close(*, account_id: UUID, reason: str = "", ctx: CommandContext) -> CommandResult:
    return change(Account, account_id, ctx, "CloseAccount", lambda a: a.close(reason))


def account_forget(*, account_id: UUID, ctx: CommandContext) -> CommandResult:
    """Forget the owner: record AccountOwnerForgotten (unless recorded before), then, in the same
    transaction, destroy the subject's key and drop the stream's snapshot, whose state may hold
    the name. Run again (after a restored backup brought the key back) it destroys the key again.
    The append stays the transaction's first write."""
    with one_transaction():
        result = change(Account, account_id, ctx, "ForgetOwner", lambda a: a.forget_owner())
        store().subject_keys.forget(account_id)
        store().drop_snapshot(account_id)
    return result


# -- transfers ----------------------------------------------------------------------------------
def transfer_request(
    *, from_account: UUID, to_account: UUID, amount: int, ctx: CommandContext, transfer_id: UUID | None = None
) -> CommandResult:
    """Check the request against both accounts now; the process manager completes it later. The
    transfer's id derives from the command id unless given."""
    source = (from_account, load(Account, from_account).state)
    target = source if to_account == from_account else (to_account, load(Account, to_account).state)
    transfer_id = transfer_id or uuid5(ctx.command_id, "transfer")
    transfer = Transfer.request(transfer_id, source=source, target=target, amount=amount)
    return create(transfer, ctx, "RequestTransfer")


# -- the transfer process manager's steps (app/ledger/process.py) -------------------------------
# Each step gets the context of the event that triggers it and returns the result of what it
# appended, None when nothing (see commands.step: a redelivered event cannot move money twice).
def _transfer(transfer_id: UUID) -> TransferState:
    return load(Transfer, transfer_id).state


def transfer_debit(*, transfer_id: UUID, ctx: CommandContext) -> CommandResult | None:
    """Debit the source of a pending transfer; if the source refuses, fail the transfer with its reason."""
    transfer = _transfer(transfer_id)
    if transfer.status != "pending" or transfer.from_account is None:
        return None
    try:
        return step(
            Account,
            transfer.from_account,
            ctx,
            "debit",
            "DebitForTransfer",
            lambda a: a.debit_for_transfer(transfer_id, transfer.amount),
        )
    except (errors.InsufficientFunds, errors.AccountFrozen, errors.AccountClosed) as refused:
        reason = refused.code
        return step(Transfer, transfer_id, ctx, "fail", "FailTransfer", lambda t: t.fail(reason))


def transfer_confirm_debit(*, transfer_id: UUID, ctx: CommandContext) -> CommandResult | None:
    """The source was debited: confirm it on the transfer. If the transfer failed first (it
    expired), the money goes back instead."""
    confirmed = step(Transfer, transfer_id, ctx, "confirm_debit", "ConfirmTransferDebit", lambda t: t.confirm_debit())
    return confirmed or transfer_refund(transfer_id=transfer_id, ctx=ctx)


def transfer_credit(*, transfer_id: UUID, ctx: CommandContext) -> CommandResult | None:
    """Credit the target of a transfer whose debit is confirmed. If the target refuses (it was
    closed meanwhile), fail the transfer, which refunds the source."""
    transfer = _transfer(transfer_id)
    if transfer.status != "pending" or not transfer.debited or transfer.credited or transfer.to_account is None:
        return None
    try:
        return step(
            Account,
            transfer.to_account,
            ctx,
            "credit",
            "CreditFromTransfer",
            lambda a: a.credit_from_transfer(transfer_id, transfer.amount),
        )
    except errors.LedgerError as refused:
        if _credited(transfer.to_account, transfer_id):  # by an earlier delivery, before the account closed
            return None
        reason: FailureReason = "account_closed" if isinstance(refused, errors.AccountClosed) else "credit_failed"
        return step(Transfer, transfer_id, ctx, "fail", "FailTransfer", lambda t: t.fail(reason))


def _credited(account_id: UUID, transfer_id: UUID) -> bool:
    return any(
        e.type == "ledger.TransferCredited" and e.data["transfer_id"] == str(transfer_id)
        for e in store().read_stream(account_id)
    )


def transfer_complete(*, transfer_id: UUID, ctx: CommandContext) -> CommandResult | None:
    """The target was credited: the transfer is complete."""

    def complete(transfer: Transfer) -> None:
        if transfer.state.status == "failed":  # never, by design: park the process manager, loudly
            raise RuntimeError(f"transfer {transfer_id} was credited after it failed")
        transfer.confirm_credit()
        transfer.complete()

    return step(Transfer, transfer_id, ctx, "complete", "CompleteTransfer", complete)


def transfer_settle(*, transfer_id: UUID, ctx: CommandContext) -> CommandResult | None:
    """The transfer completed: its money is no longer in flight on the source."""
    source = _transfer(transfer_id).from_account
    assert source is not None
    return step(Account, source, ctx, "settle", "SettleTransfer", lambda a: a.settle_transfer(transfer_id))


def transfer_refund(*, transfer_id: UUID, ctx: CommandContext) -> CommandResult | None:
    """A failed transfer's money goes back to the source, if it was debited and not refunded yet
    (the source's in-flight list says so, checked at the version the refund is appended at)."""
    transfer = _transfer(transfer_id)
    if transfer.status != "failed" or transfer.from_account is None:
        return None
    return step(
        Account,
        transfer.from_account,
        ctx,
        "refund",
        "RefundTransfer",
        lambda a: a.refund_transfer(transfer_id, transfer.amount),
    )


def transfer_confirm_refund(*, transfer_id: UUID, ctx: CommandContext) -> CommandResult | None:
    return step(Transfer, transfer_id, ctx, "confirm_refund", "ConfirmTransferRefund", lambda t: t.confirm_refund())


def transfer_expire(*, transfer_id: UUID, ctx: CommandContext) -> CommandResult | None:
    """Fail a transfer past its deadline, unless its debit is confirmed (then the credit decides)."""
    return step(Transfer, transfer_id, ctx, "expire", "ExpireTransfer", lambda t: t.expire())
