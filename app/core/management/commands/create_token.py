from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from app.core.models import ApiToken, Role, role_set


class Command(BaseCommand):
    help = "Create USERNAME if missing, set its role (and console password), print a new API token."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", choices=[r.value for r in Role], default=Role.VIEWER)
        parser.add_argument("--password", help="the console password (unchanged when omitted)")
        parser.add_argument("--name", default="", help="a label for the token")

    @transaction.atomic
    def handle(self, *args, username: str, role: str, password: str | None, name: str, **options) -> None:
        if not username.strip():
            raise CommandError("the username must not be empty")
        user, _ = get_user_model().objects.get_or_create(username=username)
        if password is not None:
            try:  # the validators of AUTH_PASSWORD_VALIDATORS, as the console's user form applies them
                password_validation.validate_password(password, user)
            except ValidationError as exc:  # raised inside the transaction: a new user is not kept either
                raise CommandError("the password was refused: " + " ".join(exc.messages)) from None
            user.set_password(password)
        user.save()
        role_set(user, role)
        _, token = ApiToken.issue(user, name=name)
        self.stdout.write(token)
