from tests.integration.api.conftest import Api, operator  # noqa: F401  (an operator's API client)
