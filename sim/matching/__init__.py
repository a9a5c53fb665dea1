"""cocotb bench for the gateware matching engine (``hdl/matching``)."""

__all__ = ["TEST_MODULE", "PARAMETERS"]

TEST_MODULE = "tickpath.sim.matching.test_matching"

#: The bench's default hardware parameters (small, for simulation).
PARAMETERS = {"symbols": 4, "capacity": 24, "levels": 8, "token_bits": 10}
