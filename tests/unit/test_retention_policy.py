"""The EVENTFOLD_RETENTION setting, parsed: rules for what is right, a sentence for the rest."""

import pytest

import app.ledger.registry  # noqa: F401  (registers the ledger's aggregates)
from eventstore.retention import Rule, parse


def test_rules_from_the_setting():
    policy = parse({"notifications": {"max_age": 86400}, "audit.login": {"max_count": 100, "max_age": 60}})
    assert policy == (Rule("audit.login", 60, 100), Rule("notifications", 86400, None))


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ([("a", 1)], "must be a dict"),
        ({"": {"max_age": 1}}, "not a category name"),
        ({"n": {}}, "give max_age"),
        ({"n": {"max_size": 1}}, "give max_age"),
        ({"n": {"max_age": 0}}, "a whole number from 1"),
        ({"n": {"max_count": -3}}, "a whole number from 1"),
        ({"n": {"max_count": 1.5}}, "a whole number from 1"),
        ({"n": {"max_count": True}}, "a whole number from 1"),
        ({"n": {"max_age": 2**31}}, "a whole number from 1"),
        ({"account": {"max_age": 60}}, "aggregate's category"),
    ],
)
def test_what_is_refused(config, says):
    with pytest.raises(ValueError, match=says):
        parse(config)
