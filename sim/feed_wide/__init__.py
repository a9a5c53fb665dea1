"""cocotb bench for the 64-bit feed front: MoldSequencerWide -> ItchDecoder(data_width=64)."""

__all__ = ["TEST_MODULE"]

TEST_MODULE = "tickpath.sim.feed_wide.test_feed_wide"
