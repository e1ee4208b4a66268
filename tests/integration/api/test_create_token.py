from io import StringIO

from django.contrib.auth import get_user_model
from django.core.management import call_command

from app.core.models import ApiToken, role_of
from tests.integration.api.conftest import Api


def test_create_token_makes_the_user_sets_role_and_password_and_prints_only_the_token(transactional_db):
    out = StringIO()
    call_command("create_token", "tina", "--role", "operator", "--password", "a-long-password-1", stdout=out)
    token = out.getvalue().strip()
    assert token.startswith("ef_") and "\n" not in token
    user = get_user_model().objects.get(username="tina")
    assert role_of(user) == "operator" and user.check_password("a-long-password-1")
    assert ApiToken.objects.filter(user=user).count() == 1
    assert not ApiToken.objects.filter(digest=token).exists()  # only the digest is stored
    response = Api(token).post("/api/accounts", {"owner": "T", "currency": "EUR"})
    assert response.status_code == 201

    again = StringIO()
    call_command("create_token", "tina", "--role", "viewer", stdout=again)
    assert again.getvalue().strip() != token
    user.refresh_from_db()
    assert role_of(user) == "viewer" and user.check_password("a-long-password-1")  # password kept
    assert Api(again.getvalue().strip()).post("/api/accounts", {"owner": "T", "currency": "EUR"}).status_code == 403
