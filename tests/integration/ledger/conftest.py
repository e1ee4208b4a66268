"""The API's clients per role and the session's test worker, for the ledger's tests."""

from tests.integration.api.conftest import admin, operator, viewer  # noqa: F401
from tests.integration.projections.conftest import worker  # noqa: F401
