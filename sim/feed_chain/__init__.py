"""cocotb bench for the feed chain NetRx -> MoldSequencer -> ItchDecoder."""

__all__ = ["TEST_MODULE"]

TEST_MODULE = "tickpath.sim.feed_chain.test_feed_chain"
