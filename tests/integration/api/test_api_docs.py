"""docs/api.md against the API itself, both ways: every operation it names is served, every
operation served is named; its error table is the API's table of codes (`ERROR_CODES`).

What the document names:
- an operation is a code span holding a method and a path, e.g. `POST /api/accounts/{id}/deposits`
  (a query string is ignored; `{...}` parameters match whatever the OpenAPI document calls them);
- an error code is a row of the table under "## Errors": | `code` | status | when |.

Paths outside /api/ (`/healthz`, the console's pages) are not in the OpenAPI document and are not
checked here; the API's own OpenAPI document and docs page are not operations of it either, and
are checked by fetching them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

DOC = Path(__file__).resolve().parents[3] / "docs" / "api.md"
OPERATION = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`\s?]*)[^`]*`")
PARAMETER = re.compile(r"\{[^}]*\}")
ERROR_ROW = re.compile(r"^\|\s*`([a-z0-9_]+)`\s*\|\s*(\d{3})\s*\|")
METHODS = {"get", "post", "put", "patch", "delete"}

pytestmark = pytest.mark.django_db


def normalise(path: str) -> str:
    return PARAMETER.sub("{}", path)


def named_operations() -> set[tuple[str, str]]:
    """(METHOD, path) of every operation docs/api.md names."""
    found = {(method, path) for method, path in OPERATION.findall(DOC.read_text())}
    assert len(found) > 20, f"{DOC} names only {len(found)} operations: has its format changed?"
    return found


def documented_errors() -> dict[str, int]:
    """The error table of docs/api.md: code -> status."""
    text = DOC.read_text()
    assert "\n## Errors\n" in text, f"{DOC} has no '## Errors' section"
    section = text.split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    rows = [m.groups() for m in map(ERROR_ROW.match, section.splitlines()) if m]
    codes = [code for code, _ in rows]
    repeated = sorted({c for c in codes if codes.count(c) > 1})
    assert not repeated, f"docs/api.md lists these error codes more than once: {', '.join(repeated)}"
    assert rows, f"no rows of the form | `code` | status | ... | under '## Errors' in {DOC}"
    return {code: int(status) for code, status in rows}


def error_codes() -> dict[str, int]:
    try:
        from app.api.errors import ERROR_CODES
    except ImportError:
        pytest.fail("app.api.errors has no ERROR_CODES: a dict of every error code the API answers -> its status")
    return ERROR_CODES


def self_description() -> set[str]:
    """The API's OpenAPI document and docs page: served by it, not operations in it."""
    return {reverse("api:openapi-json"), reverse("api:openapi-view")}


def served_operations() -> set[tuple[str, str]]:
    response = Client().get(reverse("api:openapi-json"))
    assert response.status_code == 200, "the OpenAPI document must be readable without a token"
    return {
        (method.upper(), normalise(path))
        for path, operations in response.json()["paths"].items()
        for method in operations
        if method in METHODS
    }


def test_every_operation_the_docs_name_is_served():
    served = served_operations()
    missing = sorted(
        f"{method} {path}"
        for method, path in named_operations()
        if path.startswith("/api/") and path not in self_description() and (method, normalise(path)) not in served
    )
    assert not missing, "docs/api.md names operations that /api/openapi.json does not have:\n" + "\n".join(missing)


def test_the_openapi_document_and_docs_page_the_docs_name_are_served():
    named = {(method, path) for method, path in named_operations() if path in self_description()}
    assert {method for method, _ in named} <= {"GET"}, named
    assert {path for _, path in named} == self_description(), "docs/api.md should name both"
    for _, path in named:
        assert Client().get(path).status_code == 200, f"GET {path} without a token"


def test_every_operation_served_is_in_the_docs():
    named = {(method, normalise(path)) for method, path in named_operations()}
    missing = sorted(f"{method} {path}" for method, path in served_operations() - named)
    assert not missing, "docs/api.md does not name these operations of /api/openapi.json:\n" + "\n".join(missing)


def test_every_documented_error_code_is_answered_with_its_status():
    codes = error_codes()
    wrong = sorted(
        f"{code}: docs/api.md says {status}, " + (f"ERROR_CODES says {codes[code]}" if code in codes else "not in it")
        for code, status in documented_errors().items()
        if codes.get(code) != status
    )
    assert not wrong, "error codes of docs/api.md that app.api.errors.ERROR_CODES does not match:\n" + "\n".join(wrong)


def test_every_error_code_is_documented():
    documented = documented_errors()
    missing = sorted(f"{code} ({status})" for code, status in error_codes().items() if code not in documented)
    assert not missing, "error codes in app.api.errors.ERROR_CODES missing from docs/api.md's table:\n" + "\n".join(
        missing
    )
