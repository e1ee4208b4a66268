"""The console's forms: the same limits as the REST API's request bodies (app/api/commands.py),
checked before a command is sent; business rules stay in the domain and come back as errors
shown next to the form.

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
from app.ledger.domain.events import MAX_AMOUNT

AMOUNT_HELP = "in minor units (cents): 1050 is 10.50"


class CommandForm(forms.Form):
    command_id = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {}).setdefault("command_id", uuid4())
        super().__init__(*args, **kwargs)


def _amount() -> forms.IntegerField:
    return forms.IntegerField(min_value=1, max_value=MAX_AMOUNT, help_text=AMOUNT_HELP)


class CurrencyField(forms.CharField):
    """A three-letter ISO 4217 code; "eur" is as good as "EUR"."""

    default_validators = [RegexValidator(r"^[A-Z]{3}$", "a three-letter ISO 4217 code, e.g. EUR")]

    def to_python(self, value: Any) -> str:
        return super().to_python(value).upper()


class OpenAccountForm(CommandForm):
    owner = forms.CharField(max_length=200, strip=True)
    currency = CurrencyField(max_length=3, initial="EUR", widget=forms.TextInput(attrs={"size": 4}))
    overdraft_limit = forms.IntegerField(min_value=0, max_value=MAX_AMOUNT, initial=0, help_text=AMOUNT_HELP)


class MoneyForm(CommandForm):
    amount = _amount()
    reference = forms.CharField(max_length=500, required=False, strip=True)


class ReasonForm(CommandForm):
    reason = forms.CharField(max_length=500, required=False, strip=True)


class TransferForm(CommandForm):
    from_account = forms.UUIDField(label="From account", widget=forms.TextInput(attrs={"size": 38, "class": "mono"}))
    to_account = forms.UUIDField(label="To account", widget=forms.TextInput(attrs={"size": 38, "class": "mono"}))
    amount = _amount()


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
