"""Testbench base: owns the clock, the reset and the bench's components."""

from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, RisingEdge

__all__ = ["TB"]


class TB:
    """Amaranth tops have ``clk`` and a synchronous active-high ``rst``."""

    def __init__(self, dut, *, clk: str = "clk", rst: str | None = "rst",
                 period_ns: int = 10):
        self.dut = dut
        self.clk = getattr(dut, clk)
        self.rst = getattr(dut, rst) if rst else None
        self.period_ns = period_ns
        self.log = dut._log
        self._clock = None

    def start_clock(self) -> None:
        if self._clock is None:
            self._clock = Clock(self.clk, self.period_ns, unit="ns").start(start_high=False)

    async def reset(self, cycles: int = 2) -> None:
        self.start_clock()
        if self.rst is not None:
            self.rst.value = 1
            await ClockCycles(self.clk, cycles)
            self.rst.value = 0
        await RisingEdge(self.clk)

    def cycle_of(self, time_ns: float) -> int:
        """Clock cycle number of a sim time (e.g. a driver's or monitor's stamp)."""
        return int(time_ns // self.period_ns)

    def cycle(self) -> int:
        return self.cycle_of(get_sim_time("ns"))
