"""The whole feed path in gateware (FeedPath: frames -> NetRx -> MoldSequencer -> ItchDecoder ->
OrderTable -> Book) on the Verilator harness, set up and read only through its register bank:
the real captures plus the BX sample, and a synthetic stream with faults mixed in, give the
golden book for every symbol the exact model does not flag; counters exact; the host gets every
message the book does not decode, intact and with its sequence number; stamps are ordered."""

from __future__ import annotations

import shutil

import pytest

from tickpath.generator import GeneratorConfig, iter_messages
from tickpath.hdl.feed_path import HOST_TYPES
from tickpath.model.book import BookBuilder
from tickpath.protocol import itch
from tickpath.protocol.feed import expected_event
from tickpath.sim.common.runner import toolchain_environment
from tickpath.sim.feed_book.model import FeedBookModel
from tickpath.sim.harness.feed_book import DEFAULT_CONFIG
from tickpath.sim.harness.feed_path import run
from tickpath.sim.net_rx.stimulus import FILTERS, capture_frames, capture_messages, mold_frames


def _have_verilator():
    with toolchain_environment():
        return shutil.which("verilator") is not None


pytestmark = [pytest.mark.sim,
              pytest.mark.skipif(not _have_verilator(), reason="verilator is not installed")]

ITCH_CAPTURES = ("bx-itch50", "psx-itch50")


def golden(messages, subscriptions=None):
    """(book lines of the golden builder, locates the gateware must flag)."""
    builder = BookBuilder()
    params = {k: v for k, v in DEFAULT_CONFIG.items() if k != "source"}
    exact = FeedBookModel(**params, **({} if subscriptions is None else
                                       {"subscriptions": subscriptions}))
    for raw in messages:
        builder.apply(itch.decode(raw))
        exact.event(expected_event(raw))
    slot_to_locate = {slot: loc for loc, slot in exact.subscriptions.items()}
    flagged = {slot_to_locate[s] for s in exact.flagged_ever}
    subscribed = exact.subscriptions
    lines = [line for line in builder.book_lines(8) if line["stock_locate"] in subscribed]
    return lines, flagged


def check_book(result, messages, subscriptions=None):
    want, flagged = golden(messages, subscriptions)
    assert set(result.book.flagged) == flagged
    assert list(result.book.book_lines()) == [w for w in want if w["stock_locate"] not in flagged]


def check_counters(regs, frames, messages, *, bad_fcs=0, filtered=0):
    host = sum(1 for raw in messages if chr(raw[0]) in HOST_TYPES)
    assert regs["rx_frames"] == len(frames)
    assert (regs["rx_accepted"], regs["rx_bad_fcs"], regs["rx_filtered"]) == (
        len(frames) - bad_fcs - filtered, bad_fcs, filtered)
    assert regs["seq_messages"] == regs["dec_messages"] == len(messages)
    assert regs["seq_expected"] == len(messages) + 1
    assert regs["dec_malformed"] == regs["seq_gaps"] == 0
    assert (regs["host_messages"], regs["host_overflow"]) == (host, 0)
    assert regs["table_events"] == len(messages)
    assert regs["book_ops"] == regs["table_ops"]


def real_stream(shared_data):
    dirs = [shared_data / "pcap" / d for d in ITCH_CAPTURES]
    frames = capture_frames(dirs)
    messages = [m for packet, _ in capture_messages(dirs) for m in packet]
    image = (shared_data / "itch" / "bx_20191230_sample.itch").read_bytes()
    bx = [raw for _, raw in itch.iter_binaryfile_raw(image)]
    frames += mold_frames(bx, first_sequence=len(messages) + 1)
    return [(f.data, f.fcs_bad) for f in frames], messages + bx


def test_real_captures_and_bx_sample(shared_data):
    frames, messages = real_stream(shared_data)
    result = run(frames, messages, FILTERS[:1])
    check_book(result, messages)
    check_counters(result.registers, frames, messages)
    # ingress: the frame's last byte in; egress: the update out. NetRx stores a frame until its
    # FCS is known, so a message waits for the bytes before it in its frame
    assert 0 < result.latency["min"] <= result.latency["max"] < 2 * 1500
    assert result.registers["cycle"] >= result.beats        # one byte a cycle at best


def test_host_gets_every_other_message_with_its_sequence(shared_data):
    frames, messages = real_stream(shared_data)
    result = run(frames, messages, FILTERS[:1], sink="host_stream")
    want = [(seq, raw) for seq, raw in enumerate(messages, 1) if chr(raw[0]) in HOST_TYPES]
    assert want and result.host == want
    assert {chr(raw[0]) for _, raw in want} >= {"S", "R", "H"}


def test_synthetic_stream_with_faults():
    messages = list(iter_messages(GeneratorConfig(messages=20_000, symbols=50, seed=7)))
    good = mold_frames(messages)
    other = FILTERS[1]
    frames = []
    for n, f in enumerate(good):
        if n % 7 == 3:      # a corrupted copy, flagged by the MAC: undone, never seen
            frames.append((f.data[:40] + bytes(b ^ 0x5A for b in f.data[40:]), True))
        if n % 11 == 5:     # the same packet to a port no filter entry holds
            frames.append((mold_frames(messages[:3], group=other[0], port=other[1])[0].data,
                           False))
        frames.append((f.data, False))
    bad_fcs = sum(1 for n in range(len(good)) if n % 7 == 3)
    filtered = sum(1 for n in range(len(good)) if n % 11 == 5)
    result = run(frames, messages, FILTERS[:1])
    check_book(result, messages)
    check_counters(result.registers, frames, messages, bad_fcs=bad_fcs, filtered=filtered)
    assert len(list(result.book.book_lines())) >= 45


def test_subscription_by_name_and_trading_state():
    """R messages subscribe the named stocks (the gateware starts with none); H messages set
    each locate's trading state, read back through the registers."""
    messages = list(iter_messages(GeneratorConfig(messages=20_000, symbols=50, seed=9)))
    h = next(raw for raw in messages if raw[0] == ord("H"))
    for locate, state in ((1, b"H"), (2, b"P"), (3, b"Q")):     # the day ends oddly
        messages.append(h[:1] + locate.to_bytes(2, "big") + h[3:19] + state + h[20:])
    directory = {}                                  # stock -> locate, from the R messages
    states = {}                                     # locate -> last H state
    for raw in messages:
        if raw[0] == ord("R"):
            msg = itch.decode(raw)
            directory[msg.stock] = msg.stock_locate
        elif raw[0] == ord("H"):
            msg = itch.decode(raw)
            states[msg.stock_locate] = msg.trading_state
    stocks = sorted(directory)[::3]                 # a third of them, by name
    names = {stock: slot for slot, stock in enumerate(stocks)}
    result = run([(f.data, f.fcs_bad) for f in mold_frames(messages)], messages, FILTERS[:1],
                 names=names, states_of=sorted(states) + [9999])
    assert result.registers["name_subscribed"] == sum(
        1 for raw in messages if raw[0] == ord("R") and itch.decode(raw).stock in names)
    subscriptions = {directory[s]: slot for s, slot in names.items()}
    check_book(result, messages, subscriptions)
    assert {line["stock"] for line in result.book.book_lines()} <= set(stocks)
    assert len(list(result.book.book_lines())) >= len(stocks) - 3
    assert set(states.values()) == {"H", "P", "Q", "T"}
    assert result.states == {**states, 9999: ""}


@pytest.mark.long
def test_soak_5m_messages_book_at_checkpoints():
    """Five million synthetic messages through the whole feed path (``make sim-long``), the
    book read back and compared with the golden builder every 500,000 messages."""
    total, every = 5_000_000, 500_000
    messages = list(iter_messages(GeneratorConfig(messages=total, symbols=200, seed=21)))
    frames, checkpoints, at = [], {}, 0
    while at < total:                       # frames of whole chunks: checkpoints fall between
        chunk = messages[at:at + every]
        frames += [(f.data, f.fcs_bad) for f in mold_frames(chunk, first_sequence=at + 1)]
        at += len(chunk)
        checkpoints[len(frames)] = at
    builder = BookBuilder()
    exact = FeedBookModel(**{k: v for k, v in DEFAULT_CONFIG.items() if k != "source"})
    done = {"messages": 0, "checks": 0}

    def check(frames_sent, book):
        upto = checkpoints[frames_sent]
        for raw in messages[done["messages"]:upto]:
            builder.apply(itch.decode(raw))
            exact.event(expected_event(raw))
        done["messages"] = upto
        slot_to_locate = {slot: loc for loc, slot in exact.subscriptions.items()}
        flagged = {slot_to_locate[s] for s in exact.flagged_ever}
        assert set(book.flagged) == flagged, f"after {upto} messages"
        want = [line for line in builder.book_lines(8)
                if line["stock_locate"] in exact.subscriptions
                and line["stock_locate"] not in flagged]
        assert list(book.book_lines()) == want, f"after {upto} messages"
        done["checks"] += 1

    result = run(frames, messages, FILTERS[:1], checkpoints=list(checkpoints),
                 on_checkpoint=check, collect=False)
    assert done["checks"] == total // every
    check_counters(result.registers, frames, messages)
    print(f"soak: {total:,} messages, {result.beats:,} bytes in {result.cycles:,} cycles, "
          f"{result.seconds:.0f} s")
