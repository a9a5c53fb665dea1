"""cocotb bench for :class:`~tickpath.hdl.bram.ColumnMemory`, in both of its forms: the
Amaranth memory (with a flip-flop when registered) and the ECP5 ``DP16KD`` instances, the latter
on the behavioural model ``sim/models/dp16kd.v``."""

import pathlib

__all__ = ["TEST_MODULE", "DP16KD_MODEL", "ECP5"]

TEST_MODULE = "tickpath.sim.bram.test_column_memory"

#: Behavioural DP16KD (the pin conventions of Yosys's own block RAM mapping).
DP16KD_MODEL = pathlib.Path(__file__).resolve().parents[1] / "models" / "dp16kd.v"


class ECP5:
    """Stands in for an ECP5 platform at elaboration: components that pick vendor primitives
    look at ``platform.family``."""
    family = "ecp5"
