"""MoldFramer (``hdl/matching/mold_out.py``): MoldUDP64 framing of ITCH messages.

Fast tier (Amaranth's simulator, the framer alone): seeded random ITCH messages with random
input gaps and output backpressure, several widths, MTUs, message bounds and flush delays. The
check: every packet decodes with :func:`tickpath.protocol.moldudp64.decode_packet`, its header
and its sideband (sequence, count, ingress of its first message) agree, sequences run on from 1
without a gap, no packet is over the MTU or the message bound, the packets' messages joined are
exactly the messages sent, an ``S`` ``C`` closes its packet and an end-of-session packet
follows, last; messages far enough apart go out one a packet (the idle flush).

cocotb tier (Icarus): :class:`~tickpath.hdl.matching.market_data.MarketData`, the engine with
the framer, on seeded random action streams; the packets hold exactly ``MatchingModel.itch``
encoded and rebuild the model's book in the golden BookBuilder (``sim/mold_out``).
"""

import json
import random

import pytest
from amaranth.sim import Simulator

from tickpath.hdl.matching.mold_out import MoldFramer
from tickpath.protocol import itch, moldudp64
from tickpath.protocol.feed import join_wide_beats, wide_beats
from tickpath.sim.itch_decoder.stimulus import valid_message

SC = itch.encode(itch.RECORDS["S"](0, 0, 7, "C"))          # the end of the session


def random_messages(rng: random.Random, count: int) -> list[bytes]:
    types = [t for t in itch.SPECS if t != "S"] + ["S"]
    out = []
    for _ in range(count):
        raw = valid_message(rng, rng.choice(types))
        if raw[0] == ord("S"):
            raw = raw[:11] + b"O"                    # not the end of the session
        out.append(raw)
    return out


def run_framer(messages, *, width=8, mtu=1400, max_messages=moldudp64.MAX_MESSAGES,
               flush_cycles=8, gaps=None, ready_probability=1.0, seed=0, drain=200,
               sent_at=None):
    """Send ``messages`` (``gaps[i]`` idle cycles before message ``i``) with ingress stamp
    ``1000 + i``; returns the output beats (dicts with ``cycle``, the transfer cycle).
    ``sent_at`` gets the cycle each message's last beat went in."""
    dut = MoldFramer(width=width, session="SESSION1", mtu=mtu, max_messages=max_messages,
                     flush_cycles=flush_cycles)
    gaps = gaps or [0] * len(messages)
    got = []
    done = [False]
    cycle = [0]

    async def clock(ctx):
        async for _ in ctx.tick():
            cycle[0] += 1

    async def produce(ctx):
        for i, raw in enumerate(messages):
            for _ in range(gaps[i]):
                await ctx.tick()
            for beat in wide_beats(raw, width):
                ctx.set(dut.i_stream.payload, {**beat, "ingress": 1000 + i})
                ctx.set(dut.i_stream.valid, 1)
                await ctx.tick().until(dut.i_stream.ready)
            if sent_at is not None:
                sent_at.append(cycle[0])
            ctx.set(dut.i_stream.valid, 0)
        done[0] = True

    async def consume(ctx):
        rng = random.Random(seed)
        idle = 0
        while not done[0] or idle < drain:
            ready = rng.random() < ready_probability
            ctx.set(dut.o_stream.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o_stream.valid,
                                                           dut.o_stream.payload)
            idle = 0 if valid else idle + 1
            if valid and ready:
                got.append({name: int(payload[name]) for name in
                            ("data", "nbytes", "first", "last", "sequence", "count", "ingress",
                             "egress")} | {"cycle": cycle[0]})

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(clock)
    sim.add_testbench(produce)
    sim.add_testbench(consume)
    sim.run()
    return got


def check_packets(beats, messages, *, width, mtu, max_messages, ingress=None,
                  exact_egress=True):
    """The framing rules; returns the decoded packets. ``ingress[i]``: the stamp message
    ``i`` was sent with (default ``1000 + i``)."""
    ingress = ingress or [1000 + i for i in range(len(messages))]
    raw_packets = join_wide_beats(beats, width)
    packets = [moldudp64.decode_packet(p) for p in raw_packets]
    assert packets, "no packet out"
    egress = [b["egress"] for b in beats]
    assert all(x < y for x, y in zip(egress, egress[1:], strict=False)), "egress not rising"
    if exact_egress:               # egress: the transfer cycle, as the framer counts them
        assert len({b["egress"] - b["cycle"] for b in beats}) == 1
    starts = [i for i, b in enumerate(beats) if b["first"]]
    expected_sequence = 1
    joined = []
    for n, (raw, packet, start) in enumerate(zip(raw_packets, packets, starts, strict=True)):
        assert len(raw) <= mtu, f"packet {n} is {len(raw)} bytes, over the MTU {mtu}"
        assert packet.session == "SESSION1"
        assert packet.sequence == expected_sequence, \
            f"packet {n}: sequence {packet.sequence}, expected {expected_sequence}"
        side = beats[start]
        assert (side["sequence"], side["count"]) == (packet.sequence, packet.count)
        if packet.is_end_of_session:
            assert n == len(packets) - 1, "the end of session is not the last packet"
            assert messages and messages[-1] == SC
            assert side["ingress"] == ingress[len(messages) - 1]
            continue
        assert 1 <= packet.count <= max_messages
        assert side["ingress"] == ingress[packet.sequence - 1], f"packet {n} ingress"
        joined.extend(packet.messages)
        expected_sequence = packet.next_sequence
        if packet.messages[-1] == SC:
            assert packets[-1].is_end_of_session and n == len(packets) - 2
    assert joined == messages, "the packets' messages are not the messages sent"
    return packets


CASES = [
    # width, mtu, max_messages, flush_cycles, ready_probability
    (8, 1400, moldudp64.MAX_MESSAGES, 8, 1.0),
    (8, 100, moldudp64.MAX_MESSAGES, 4, 0.6),
    (8, 200, 3, 30, 0.8),
    (4, 97, 5, 2, 0.7),
    (2, 128, moldudp64.MAX_MESSAGES, 1, 0.9),
    (16, 300, 7, 8, 0.5),
]


@pytest.mark.parametrize("width,mtu,max_messages,flush_cycles,ready", CASES)
def test_random(width, mtu, max_messages, flush_cycles, ready):
    rng = random.Random(f"{width}-{mtu}-{max_messages}")
    messages = random_messages(rng, 150) + [SC]
    gaps = [rng.choice([0, 0, 0, 1, 2, flush_cycles, 3 * flush_cycles]) for _ in messages]
    beats = run_framer(messages, width=width, mtu=mtu, max_messages=max_messages,
                       flush_cycles=flush_cycles, gaps=gaps, ready_probability=ready,
                       seed=width)
    packets = check_packets(beats, messages, width=width, mtu=mtu, max_messages=max_messages,
                            exact_egress=ready == 1.0)
    assert packets[-1].is_end_of_session
    assert packets[-1].sequence == len(messages) + 1
    print(json.dumps({"packets": len(packets), "messages": len(messages),
                      "beats": len(beats)}))


def test_mtu_and_count_bounds_fill_packets():
    """Back to back: packets close exactly at the MTU (the next block would not fit) or at the
    message bound, whichever comes first, as the host-side ``Packer`` would."""
    rng = random.Random(5)
    messages = random_messages(rng, 200)
    for mtu, bound in ((1400, moldudp64.MAX_MESSAGES), (300, 4), (97, moldudp64.MAX_MESSAGES)):
        beats = run_framer(messages, mtu=mtu, max_messages=bound, flush_cycles=64)
        packets = check_packets(beats, messages, width=8, mtu=mtu, max_messages=bound)
        packer = moldudp64.Packer("SESSION1", max_payload=mtu)
        want = []
        for raw in messages:
            if packer.pending == bound:
                want.append(packer.flush())
            want.extend(packer.add(raw))
        want.append(packer.flush())
        assert [moldudp64.encode_packet("SESSION1", p.sequence, p.messages) for p in packets] \
            == [packet for _, packet in want]


def test_idle_flush():
    """Messages ``flush_cycles`` + a margin apart each go out alone, without an end of
    session; closer ones share packets; the last packet leaves without more input."""
    rng = random.Random(9)
    messages = random_messages(rng, 12)
    sent_at = []
    beats = run_framer(messages, flush_cycles=5, gaps=[12] * len(messages), sent_at=sent_at)
    packets = check_packets(beats, messages, width=8, mtu=1400,
                            max_messages=moldudp64.MAX_MESSAGES)
    assert [p.count for p in packets] == [1] * len(messages)
    # a lone message's packet starts to leave flush_cycles + 6 cycles after its last beat
    # went in (read, then the output register), one more when its block spills into an extra
    # beat
    delays = [b["cycle"] - t for b, t in zip([b for b in beats if b["first"]], sent_at,
                                              strict=True)]
    assert delays == [5 + 6 + (len(m) % 8 in (0, 7)) for m in messages], delays
    beats = run_framer(messages, flush_cycles=5, gaps=[3] * len(messages))
    packets = check_packets(beats, messages, width=8, mtu=1400,
                            max_messages=moldudp64.MAX_MESSAGES)
    assert len(packets) == 1


def test_rejects_bad_parameters():
    with pytest.raises(ValueError):
        MoldFramer(width=3)
    with pytest.raises(ValueError):
        MoldFramer(mtu=40)
    with pytest.raises(ValueError):
        MoldFramer(max_messages=0)
    with pytest.raises(ValueError):
        MoldFramer(session="ELEVENCHARS")


# --- cocotb tier -------------------------------------------------------------------------

def _icarus():
    import shutil

    from tickpath.sim.common.runner import toolchain_environment
    with toolchain_environment():
        return shutil.which("iverilog") is not None


def _run_market_data(tmp_path, parameters, count=600, seeds=(1,)):
    from tickpath.hdl.matching.market_data import MarketData
    from tickpath.sim.common.runner import run_bench
    from tickpath.sim.mold_out import PARAMETERS, TEST_MODULE

    results = tmp_path / "results.json"
    bench = run_bench(MarketData, "market_data", TEST_MODULE, "icarus",
                      parameters={**PARAMETERS, **parameters},
                      env={"MOLD_OUT_COUNT": str(count),
                           "MOLD_OUT_SEEDS": ",".join(map(str, seeds)),
                           "MOLD_OUT_RESULTS": str(results)})
    assert {o.name for o in bench.outcomes if o.passed} == \
        {f"random_stream/seed={s}" for s in seeds} | {"non_crossing"}
    stats = json.loads(results.read_text())
    print(json.dumps(stats, indent=1))
    return stats


@pytest.mark.sim
@pytest.mark.skipif(not _icarus(), reason="icarus is not installed")
def test_icarus_market_data(tmp_path):
    """The engine with the framer at its defaults (64-bit, 1400-byte MTU, flush after 8 idle
    cycles): the non-crossing stream runs at the engine's own pace."""
    stats = _run_market_data(tmp_path, {}, count=800, seeds=(1, 2))
    assert stats["non_crossing"]["cycles_per_action"] < 8
    for name in ("random_stream/seed=1", "random_stream/seed=2"):
        assert stats[name]["end_of_session"]
        assert stats[name]["messages_per_packet"][2] > 1       # the framer does batch


@pytest.mark.sim
@pytest.mark.skipif(not _icarus(), reason="icarus is not installed")
def test_icarus_market_data_small_packets(tmp_path):
    """A 160-byte MTU, at most 4 messages a packet, flush after 2 idle cycles: every packet
    bound is reached."""
    stats = _run_market_data(tmp_path, {"mtu": 160, "max_messages": 4, "flush_cycles": 2})
    s = stats["random_stream/seed=1"]
    assert s["messages_per_packet"][2] == 4 and s["messages_per_packet"][0] == 1
    assert s["bytes_per_packet"][2] <= 160


@pytest.mark.sim
@pytest.mark.skipif(not _icarus(), reason="icarus is not installed")
@pytest.mark.parametrize("itch_width", [1, 8])
def test_icarus_engine_non_crossing_throughput(tmp_path, itch_width):
    """The bare engine on resting enters and cancels, back to back: one byte a cycle holds it
    to the ITCH bytes (~28 cycles an action); 8 bytes a cycle leaves it at its own pace."""
    from tickpath.hdl.matching import MatchingEngine
    from tickpath.sim.common.runner import run_bench
    from tickpath.sim.mold_out import PARAMETERS, THROUGHPUT_MODULE

    results = tmp_path / "results.json"
    run_bench(MatchingEngine, "matching_engine_throughput", THROUGHPUT_MODULE, "icarus",
              parameters={**PARAMETERS, "itch_width": itch_width},
              env={"THROUGHPUT_COUNT": "2000", "THROUGHPUT_RESULTS": str(results)})
    stats = json.loads(results.read_text())
    print(json.dumps({k: stats[k] for k in ("itch_width", "actions", "cycles",
                                            "cycles_per_action", "first_event_latency",
                                            "kinds", "itch")}))
    assert stats["itch_width"] == itch_width
    if itch_width == 1:
        assert stats["cycles_per_action"] > 20
    else:
        assert stats["cycles_per_action"] < 8


def test_engine_itch_feeds_the_64_bit_decoder():
    """The engine's 64-bit ITCH stream, its low bits a ``wide_beat(8)``, drives the feed path's
    ``ItchDecoder(data_width=64)`` directly: one event per model message, each the golden
    ``expected_event`` of its bytes."""
    from amaranth.hdl import Module
    from amaranth.lib import data as amaranth_data

    from tickpath.hdl.itch_decoder import ItchDecoder
    from tickpath.hdl.matching import MatchingEngine
    from tickpath.protocol.feed import expected_event, unpack_event, wide_beat
    from tickpath.protocol.records import Action, Order
    from tickpath.sim.matching.stimulus import new_model, random_actions

    engine = MatchingEngine(symbols=2, capacity=16, levels=4, token_bits=8, itch_width=8)
    decoder = ItchDecoder(data_width=64)
    top = Module()
    top.submodules.engine, top.submodules.decoder = engine, decoder
    low = amaranth_data.Layout.cast(wide_beat(8)).size
    top.d.comb += [decoder.i_stream.payload.eq(engine.itch_stream.payload.as_value()[:low]),
                   decoder.i_stream.valid.eq(engine.itch_stream.valid),
                   engine.itch_stream.ready.eq(decoder.i_stream.ready),
                   engine.o_stream.ready.eq(1), decoder.o_stream.ready.eq(1)]
    orders = random_actions(random.Random(4), 60, symbols=2, capacity=16, token_bits=8,
                            prices=4) + [Order(action=Action.EndOfDay)]
    model = new_model(2, 16)
    model.process_all(orders)
    got = []

    async def produce(ctx):
        for order in orders:
            ctx.set(engine.i_stream.payload, order.to_const())
            ctx.set(engine.i_stream.valid, 1)
            await ctx.tick().until(engine.i_stream.ready)
        ctx.set(engine.i_stream.valid, 0)

    async def consume(ctx):
        for _ in range(200 * len(orders)):
            _, _, valid, payload = await ctx.tick().sample(decoder.o_stream.valid,
                                                           decoder.o_stream.payload)
            if valid:
                got.append(unpack_event(payload.as_bits()))
            if len(got) == len(model.itch):
                break

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(produce)
    sim.add_testbench(consume)
    sim.run()
    want = [expected_event(itch.encode(msg)) for msg in model.itch]
    assert len(got) == len(want) and {m.type for m in model.itch} >= set("SRAEXDU")
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"message {k} ({model.itch[k].type}): decoder {g}, expected {w}"
