"""cocotb testbench for GatedEngine: OrderRecord actions in, EventRecord events out, every
event scoreboarded in order against the golden GatedMatchingModel.

The gate's token buckets count clock cycles, so the model is run lazily: each cycle the gate's
``checked`` strobe is high, the next action sent is given to the model with the gate's ``now``
(the cycle of its check), and the action's expected events go into the scoreboard before any of
them can come out. Register writes (kill, halts, references, dead-man) are made at quiet points
(nothing in flight, every expected event out), where the model takes them too; a rate register
write is given to the model with the cycle the gate reloads the bucket in (the write's cycle +
1: the bank's register changes at the write's edge).
"""

import random
from collections import Counter, defaultdict
from typing import Any

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from tickpath.hdl.matching.itch_out import itch_beat_layout
from tickpath.hdl.matching.risk_gate import counter_name
from tickpath.model.risk_gate import GATE_REASONS, GatedMatchingModel, GateLimits, gate_regmap
from tickpath.protocol import itch
from tickpath.protocol.feed import join_wide_beats
from tickpath.protocol.records import Order
from tickpath.sim.common.scoreboard import Scoreboard
from tickpath.sim.common.stream import StreamMonitor
from tickpath.sim.common.tb import TB
from tickpath.sim.matching.stimulus import new_model
from tickpath.sim.matching.tb_matching import itch_width_of, order_streams

__all__ = ["GatedTB"]


class GatedTB(TB):
    def __init__(self, dut, *, firms: int, symbols: int, capacity: int, token_bits: int,
                 limits: GateLimits | None = None, seed: int = 0,
                 valid_probability: float = 1.0, ready_probability: float = 1.0):
        super().__init__(dut)
        self.firms, self.symbols = firms, symbols
        self.regmap = gate_regmap(firms, symbols)
        self.limits = GateLimits.off(firms, symbols) if limits is None else limits
        rates, self.limits.rates = self.limits.rates, {}
        self.model = GatedMatchingModel(new_model(symbols, capacity), self.limits,
                                        token_bits=token_bits)
        self.limits.rates = rates
        self.scoreboard = Scoreboard("gated_engine")
        self.driver, self.monitor = order_streams(
            self, dut, self.scoreboard, seed=seed, valid_probability=valid_probability,
            ready_probability=ready_probability)
        self.itch_width = itch_width_of(dut)
        self.itch_monitor = StreamMonitor(dut, "itch_stream", itch_beat_layout(self.itch_width),
                                          self.clk, rng=random.Random(f"itch-{seed}"),
                                          ready_probability=ready_probability)
        self.pending: list[Order] = []          # sent (or being sent), not yet checked
        self.expected = 0                       # events expected so far
        self.coverage: Counter[str] = Counter()
        self.mass_events = 0
        self.offered_at: list[int | None] = []      # cycle a lone order was first offered
        self.actions: list[tuple[Order, list]] = []
        self._checker = None
        dut.bus__w_stb.value = 0
        dut.bus__r_stb.value = 0
        dut.bus__addr.value = 0
        dut.bus__w_data.value = 0

    # --- set-up ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.reset()
        self.monitor.start()
        self.itch_monitor.start()
        self._checker = cocotb.start_soon(self._check_loop())
        # the host loader's writes (every pair: a reset does not clear the limit memory, and
        # the benches of one simulation share it)
        for name, value in self.limits.register_writes():
            if name.startswith("rate_"):
                continue
            await self.write(name, value)
        for f, (period, burst) in sorted(self.limits.rates.items()):
            await self.write(f"rate_burst_{f}", burst)
            cycle = await self.write(f"rate_period_{f}", period)
            self.model.gate.set_rate(f, period, burst, cycle + 1)
        for (f, s), row in self.limits.pair_rows().items():       # read back through the bus
            await self.write("limit_firm", f)
            await self.write("limit_symbol", s)
            await self.write("limit_read", 1)
            await RisingEdge(self.clk)              # the row is readable from the second
            await RisingEdge(self.clk)              # cycle after the strobe on
            got = {name: await self.read(name.replace("limit_", "limit_row_")) for name in row}
            assert got == row, f"limit row ({f}, {s}) reads back {got}, not {row}"

    async def write(self, name: str, value: int) -> int:
        """Write a register word by word (high words first); returns the gate's ``now`` in
        the cycle of the last word's write."""
        reg, dut = self.regmap[name], self.dut
        now = 0
        for word in reversed(range(reg.words)):
            dut.bus__addr.value = reg.address + word
            dut.bus__w_data.value = value >> (32 * word) & 0xFFFF_FFFF
            dut.bus__w_stb.value = 1
            await ReadOnly()
            now = self.dut.now.value.to_unsigned()
            await RisingEdge(self.clk)
        dut.bus__w_stb.value = 0
        return now

    async def read(self, name: str) -> int:
        """Read a register through the bus (one cycle of read latency)."""
        reg, dut = self.regmap[name], self.dut
        value = 0
        for word in range(reg.words):
            dut.bus__addr.value = reg.address + word
            dut.bus__r_stb.value = 1
            await RisingEdge(self.clk)
            dut.bus__r_stb.value = 0
            await ReadOnly()
            value |= dut.bus__r_data.value.to_unsigned() << (32 * word)
            await RisingEdge(self.clk)
        return value

    # --- the model, run at each check -----------------------------------------------------

    def _expect(self, events: list, label: str) -> None:
        for e in events:
            self.scoreboard.expect(e._asdict(), label)
            self.coverage[e.kind.name + (f"/{chr(e.reason)}" if e.reason else "")] += 1
        self.expected += len(events)

    async def _check_loop(self) -> None:
        dut, edge, settled = self.dut, RisingEdge(self.clk), ReadOnly()
        while True:
            await settled
            if dut.checked.value == 1:
                if not self.pending:
                    raise AssertionError("the gate checked an action nobody sent")
                order = self.pending.pop(0)
                events = self.model.process(order, dut.now.value.to_unsigned())
                self.actions.append((order, events))
                self._expect(events, f"({order})")
            await edge

    async def quiet(self, limit: int = 100_000) -> None:
        """Wait until nothing is in flight and every expected event is out."""
        for _ in range(limit):
            await ReadOnly()
            if (not self.pending and self.dut.busy.value == 0
                    and len(self.monitor.received) == self.expected):
                await RisingEdge(self.clk)
                return
            await RisingEdge(self.clk)
        raise AssertionError(f"not quiet after {limit} cycles: {len(self.pending)} unchecked, "
                             f"{len(self.monitor.received)} of {self.expected} events out "
                             f"({self.scoreboard.reports[:3]})")

    async def send(self, orders: list[Order]) -> None:
        """Send ``orders`` and wait until all their events are out."""
        self.pending.extend(orders)
        self.offered_at.append(self.cycle() if len(orders) == 1 else None)
        await self.driver.send([o._asdict() for o in orders])
        await self.quiet()

    # --- host writes at quiet points ------------------------------------------------------

    async def set_kill(self, mask: int) -> None:
        await self.quiet()
        events = self.model.set_kill(mask)
        self.mass_events += len(events)
        self._expect(events, f"(kill {mask:#x})")
        await self.write("kill", mask)
        await self.quiet()

    async def set_halted(self, halted: set[int]) -> None:
        await self.quiet()
        for s in range(self.symbols):
            self.model.set_halted(s, s in halted)
        await self.write("halted", sum(1 << s for s in halted))

    async def set_no_reference_reject(self, reject: bool) -> None:
        await self.quiet()
        self.model.gate.no_reference_reject = reject
        await self.write("control", int(reject))

    async def set_reference(self, symbol: int, bid: int, ask: int) -> None:
        await self.quiet()
        self.model.set_reference(symbol, bid, ask)
        await self.write(f"ref_bid_{symbol}", bid)
        await self.write(f"ref_ask_{symbol}", ask)

    async def deadman(self, cycles: int) -> None:
        """Arm the dead-man switch with no heartbeat: it trips, cancelling everything."""
        await self.quiet()
        events = self.model.deadman_trip()
        self.mass_events += len(events)
        self._expect(events, "(dead-man)")
        await self.write("deadman_cycles", cycles)
        for _ in range(cycles + 100):
            await RisingEdge(self.clk)
            await ReadOnly()
            if self.dut.deadman_tripped.value == 1:
                break
        else:
            raise AssertionError("the dead-man switch did not trip")
        await RisingEdge(self.clk)
        await self.quiet()

    async def rearm(self) -> None:
        await self.quiet()
        await self.write("deadman_cycles", 0)
        await self.write("heartbeat", 1)
        self.model.heartbeat()
        await RisingEdge(self.clk)          # the strobe is high the cycle after the write
        await ReadOnly()
        assert self.dut.deadman_tripped.value == 0
        await RisingEdge(self.clk)

    def check_itch(self) -> dict[str, int]:
        """The gated path's ITCH output (the engine's, mass cancels' ``D`` included) is the
        model's, encoded, byte for byte. Returns messages per type."""
        got = b"".join(join_wide_beats(self.itch_monitor.received, self.itch_width))
        want = b"".join(itch.encode(msg) for msg in self.model.engine.itch)
        if got != want:
            at = next((i for i, (x, y) in enumerate(zip(got, want, strict=False)) if x != y),
                      min(len(got), len(want)))
            raise AssertionError(f"ITCH bytes differ at byte {at} of {len(want)} "
                                 f"(gateware {len(got)} bytes): {got[at:at + 40].hex()}, "
                                 f"model {want[at:at + 40].hex()}")
        return dict(Counter(msg.type for msg in self.model.engine.itch))

    async def itch_drained(self, limit: int = 100_000) -> None:
        """Wait until every ITCH beat the model's messages make is out."""
        w = self.itch_width
        want = sum(-(-itch.SPECS[msg.type].length // w) for msg in self.model.engine.itch)
        for _ in range(limit):
            if len(self.itch_monitor.received) >= want:
                return
            await RisingEdge(self.clk)
        raise AssertionError(f"{len(self.itch_monitor.received)} of {want} ITCH beats out")

    # --- results --------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        return {chr(r): getattr(self.dut, counter_name(r)).value.to_unsigned()
                for r in GATE_REASONS}

    def expected_counters(self) -> dict[str, int]:
        return {chr(r): self.model.counters[r] for r in GATE_REASONS}

    def latencies(self, *, offered: bool = False) -> dict[str, Any]:
        """Cycles from each action's handshake (``offered``: from the cycle it was first
        offered, valid high; actions sent one at a time) to its first event out, by kind:
        ``rest`` (accepted, nothing else), ``cross`` (accepted, then fills), ``gate_reject``,
        ``engine_reject``, ``replaced``, ``canceled``. Only for runs without mass cancels
        (each action's events are then contiguous, in the order sent)."""
        assert self.mass_events == 0, "latencies() needs a run without mass cancels"
        cyc = self.cycle_of
        sent, got = self.driver.sent_at, self.monitor.received_at
        out: dict[str, list[int]] = defaultdict(list)
        k = 0
        for i, (_, events) in enumerate(self.actions):
            first = events[0]
            if first.kind.name == "Rejected":
                kind = "gate_reject" if first.reason in GATE_REASONS else "engine_reject"
            elif first.kind.name == "Accepted":
                kind = "rest" if len(events) == 1 else "cross"
            else:
                kind = first.kind.name.lower()
            start = self.offered_at[i] if offered else cyc(sent[i])
            out[kind].append(cyc(got[k]) - start)
            k += len(events)
        return {k: (min(v), max(v), round(sum(v) / len(v), 2)) for k, v in sorted(out.items())}
