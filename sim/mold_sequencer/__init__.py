"""cocotb bench for the MoldUDP64 sequencer."""

__all__ = ["TEST_MODULE"]

TEST_MODULE = "tickpath.sim.mold_sequencer.test_mold_sequencer"
