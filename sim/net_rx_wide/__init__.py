"""cocotb bench for NetRxWide (Ethernet/IPv4/UDP receive, ``width`` bytes a cycle); it reuses
the NetRx frame stimulus (``tickpath.sim.net_rx.stimulus``) and golden model."""

__all__ = ["TEST_MODULE"]

TEST_MODULE = "tickpath.sim.net_rx_wide.test_net_rx_wide"
