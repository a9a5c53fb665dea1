"""cocotb bench for NetRx (Ethernet/IPv4/UDP receive) and the frame stimulus it shares."""

__all__ = ["TEST_MODULE"]

TEST_MODULE = "tickpath.sim.net_rx.test_net_rx"
