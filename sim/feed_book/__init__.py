"""cocotb bench for the feed-to-book core (hdl/feed_book.py): order table + book, optionally
behind the ITCH decoder; :mod:`.model` is its exact model."""

TEST_MODULE = "tickpath.sim.feed_book.test_feed_book"

__all__ = ["TEST_MODULE"]
