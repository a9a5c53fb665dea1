"""cocotb bench for the gated matching path (``hdl/matching/gated.py``: the pre-trade risk gate
in front of the matching engine)."""

__all__ = ["TEST_MODULE", "PARAMETERS"]

TEST_MODULE = "tickpath.sim.risk_gate.test_risk_gate"

#: The bench's default hardware parameters (small, for simulation).
PARAMETERS = {"firms": 4, "symbols": 4, "capacity": 24, "levels": 8, "token_bits": 10}
