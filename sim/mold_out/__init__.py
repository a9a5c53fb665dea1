"""cocotb benches for the matching engine's market data out: the wide ITCH egress and the
MoldUDP64 framer (``hdl/matching/itch_out.py``, ``mold_out.py``, ``market_data.py``)."""

__all__ = ["TEST_MODULE", "THROUGHPUT_MODULE", "PARAMETERS"]

#: cocotb tests on :class:`~tickpath.hdl.matching.market_data.MarketData`.
TEST_MODULE = "tickpath.sim.mold_out.test_mold_out"
#: cocotb test on the bare :class:`~tickpath.hdl.matching.MatchingEngine` (any ``itch_width``).
THROUGHPUT_MODULE = "tickpath.sim.mold_out.test_throughput"

#: The engine's bench parameters (as ``tickpath.sim.matching.PARAMETERS``).
PARAMETERS = {"symbols": 4, "capacity": 24, "levels": 8, "token_bits": 10}
