"""tickpath.hdl: Amaranth 0.5 gateware components."""
