"""The console's forms: the same limits as the REST API's request bodies (app/api/commands.py),
checked before a command is sent; business rules stay in the domain and come back as errors
shown next to the form. Amounts are typed as decimals in the account's currency ("10.50") and sent
as the integer minor units the API and the events keep (1050).

Every command form carries a `command_id` made when the form is shown: the command's events take
their ids from it, so a form sent twice (a double click, a reload of the POST) appends once.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from django import forms
from django.contrib.auth import get_user_model, password_validation
from django.core.validators import RegexValidator

from app.core.models import Role
from app.ledger import money, selectors


class CommandForm(forms.Form):
    command_id = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, *args: Any, currency: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {}).setdefault("command_id", uuid4())
        super().__init__(*args, **kwargs)
        self.currency = currency


class AmountField(forms.CharField):
    """An amount as people type it ("10.50", "1,310.66"). The form turns it into the integer minor
    units the commands take once it knows the currency (app/ledger/money.py: exact, no floats)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", "e.g. 10.50")
        super().__init__(max_length=money.TEXT_MAX, strip=True, **kwargs)
        self.widget.attrs.update({"inputmode": "decimal", "autocomplete": "off", "size": 16})


def minor_units(form: forms.Form, name: str, currency: str | None, *, minimum: int = 1) -> None:
    """Replace the typed amount in `form.cleaned_data[name]` by its minor units in `currency`, or
    add the reason it cannot be to that field. Without a currency (no such account) it stays text,
    and the form says why."""
    text = form.cleaned_data.get(name)
    if text is None or currency is None:
        return
    try:
        form.cleaned_data[name] = money.parse_amount(text, currency, minimum=minimum)
    except ValueError as exc:
        form.add_error(name, str(exc))


class CurrencyField(forms.CharField):
    """A three-letter ISO 4217 code; "eur" is as good as "EUR"."""

    default_validators = [RegexValidator(r"^[A-Z]{3}$", "a three-letter ISO 4217 code, e.g. EUR")]

    def to_python(self, value: Any) -> str:
        return super().to_python(value).upper()


class OpenAccountForm(CommandForm):
    owner = forms.CharField(max_length=200, strip=True)
    currency = CurrencyField(max_length=3, initial="EUR", widget=forms.TextInput(attrs={"size": 4}))
    overdraft_limit = AmountField(initial="0", help_text="in the account's currency, e.g. 100.00")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        minor_units(self, "overdraft_limit", cleaned.get("currency"), minimum=0)
        return cleaned


class MoneyForm(CommandForm):
    """A deposit or a withdrawal, in the account's currency (given by the view)."""

    amount = AmountField()
    reference = forms.CharField(max_length=500, required=False, strip=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.currency:
            self.fields["amount"].label = f"Amount ({self.currency})"
            self.fields["amount"].help_text = f"e.g. {money.format_amount(1050, self.currency)}"

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.currency is None and "amount" in cleaned:
            self.add_error(None, "No account has this id.")
        minor_units(self, "amount", self.currency)
        return cleaned


class ReasonForm(CommandForm):
    reason = forms.CharField(max_length=500, required=False, strip=True)


class ForgetForm(CommandForm):
    """Forgetting an owner cannot be undone: the admin types the account's id again to confirm."""

    confirm = forms.CharField(
        label="Type the account id to confirm",
        max_length=64,
        strip=True,
        help_text="The owner's name becomes unreadable everywhere, for good; the money stays.",
        widget=forms.TextInput(attrs={"size": 38, "class": "mono", "autocomplete": "off"}),
    )

    def __init__(self, *args: Any, account_id: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.account_id = account_id

    def clean_confirm(self) -> str:
        typed = self.cleaned_data["confirm"]
        if typed.lower() != str(self.account_id).lower():
            raise forms.ValidationError("this is not the account's id: nothing was forgotten")
        return typed


class TransferForm(CommandForm):
    from_account = forms.UUIDField(label="From account", widget=forms.TextInput(attrs={"size": 38, "class": "mono"}))
    to_account = forms.UUIDField(label="To account", widget=forms.TextInput(attrs={"size": 38, "class": "mono"}))
    amount = AmountField(help_text="in the source account's currency, e.g. 10.50")

    def clean(self) -> dict[str, Any]:
        """The amount is in the source account's currency, looked up here to convert it."""
        cleaned = super().clean() or {}
        source = cleaned.get("from_account")
        if source is not None:
            self.currency = selectors.account_currency(source)
            if self.currency is None:
                self.add_error("from_account", "No account has this id.")
            minor_units(self, "amount", self.currency)
        return cleaned


# -- users and tokens (admins) --------------------------------------------------------------------
class CreateUserForm(forms.Form):
    username = forms.CharField(max_length=150, strip=True)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)
    password = forms.CharField(widget=forms.PasswordInput(render_value=False), strip=False)

    def clean_username(self) -> str:
        username = self.cleaned_data["username"]
        field = get_user_model()._meta.get_field("username")
        for validate in field.validators:
            validate(username)
        if get_user_model().objects.filter(username__iexact=username).exists():
            raise forms.ValidationError("a user with this name exists already")
        return username

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("password"):
            user = get_user_model()(username=cleaned.get("username") or self.data.get("username", ""))
            try:
                password_validation.validate_password(cleaned["password"], user)
            except forms.ValidationError as exc:
                self.add_error("password", exc)
        return cleaned


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class TokenForm(forms.Form):
    user = forms.ModelChoiceField(
        queryset=get_user_model().objects.order_by("username"), to_field_name="username", empty_label="choose a user"
    )
    name = forms.CharField(max_length=100, required=False, strip=True, help_text="what it is for, e.g. a script's name")
