"""How an import cuts the file into transactions (eventstore.backup.batches): at most a batch's
size, and a new transaction wherever the file's positions go down, so that each transaction's
events, read in position order, keep the file's order."""

from eventstore.backup import batches


def test_batches_hold_at_most_the_size_asked():
    assert list(batches(1, 10, [], 4)) == [(1, 4), (5, 8), (9, 10)]


def test_a_position_going_down_starts_a_new_transaction():
    assert list(batches(1, 10, [3, 7], 4)) == [(1, 2), (3, 6), (7, 10)]


def test_a_resumed_import_starts_after_what_the_store_holds():
    assert list(batches(5, 10, [3, 7], 100)) == [(5, 6), (7, 10)]
    assert list(batches(11, 10, [], 100)) == []
