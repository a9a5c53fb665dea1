"""Synthetic ITCH feed generator and ``tickpath generate``.

The feed is checked by a small replay written here, independent of the generator's own
bookkeeping, and (when present) by the golden book builder.
"""

import collections
import importlib.util
import io
import re

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickpath import generator as gen
from tickpath.protocol import itch

START = 34_200 * 10**9


def decode_all(image: bytes) -> list:
    return [m for _, m in itch.iter_binaryfile(image)]


def check_feed(msgs: list, config: gen.GeneratorConfig) -> None:
    """Replay a feed and assert that it is a consistent NASDAQ-like day."""
    assert len(msgs) == config.messages
    s = config.symbols
    assert msgs[0].type == "S" and msgs[0].event_code == "O"
    directory = msgs[1:1 + s]
    assert [m.type for m in directory] == ["R"] * s
    assert [m.stock_locate for m in directory] == list(range(1, s + 1))
    stocks = {m.stock_locate: m.stock for m in directory}
    assert len(set(stocks.values())) == s
    assert all(re.fullmatch(r"[A-Z]{1,8}", name) for name in stocks.values())
    assert [(m.type, m.event_code) for m in msgs[1 + s:3 + s]] == [("S", "S"), ("S", "Q")]
    assert [(m.type, m.event_code) for m in msgs[-3:]] == [("S", "M"), ("S", "E"), ("S", "C")]
    assert all(m.type != "R" and m.type != "S" for m in msgs[3 + s:-3])

    stamps = [m.timestamp for m in msgs]
    assert stamps[0] >= START
    assert all(a < b for a, b in zip(stamps, stamps[1:], strict=False))

    live: dict[int, list] = {}      # ref -> [locate, side, price, shares]
    last_ref = 0
    last_match = 0

    def whole_cents(price):
        assert price % 100 == 0 and price >= 10_000, f"price {price}: not whole cents >= $1"

    def new_ref(ref):
        nonlocal last_ref
        assert ref > last_ref, f"reference {ref} not increasing (last {last_ref})"
        last_ref = ref

    def new_match(number):
        nonlocal last_match
        assert number > last_match
        last_match = number

    for m in msgs[3 + s:-3]:
        t = m.type
        if t != "S":
            assert m.stock_locate in stocks
        if hasattr(m, "stock"):
            assert m.stock == stocks[m.stock_locate]
        if t in "AF":
            new_ref(m.order_reference_number)
            assert m.buy_sell_indicator in "BS" and m.shares > 0
            whole_cents(m.price)
            live[m.order_reference_number] = [m.stock_locate, m.buy_sell_indicator, m.price,
                                              m.shares]
        elif t in "ECXDU":
            ref = m.order_reference_number if t != "U" else m.original_order_reference_number
            assert ref in live, f"{t} for reference {ref} that is not live"
            order = live[ref]
            assert order[0] == m.stock_locate
            if t in "EC":
                assert 0 < m.executed_shares <= order[3]
                new_match(m.match_number)
                order[3] -= m.executed_shares
                if t == "C":
                    whole_cents(m.execution_price)
            elif t == "X":
                assert 0 < m.canceled_shares < order[3]
                order[3] -= m.canceled_shares
            if t in "DU" or order[3] == 0:
                del live[ref]
            if t == "U":
                new_ref(m.new_order_reference_number)
                assert m.shares > 0
                whole_cents(m.price)
                live[m.new_order_reference_number] = [order[0], order[1], m.price, m.shares]
        elif t in "PQ":
            new_match(m.match_number)
            whole_cents(m.price if t == "P" else m.cross_price)
        elif t == "I":
            for p in (m.far_price, m.near_price, m.current_reference_price):
                whole_cents(p)
        else:
            assert t in "HY", t


# --- one mid-sized feed shared by the tests that only read it ---------------------------

CONFIG = gen.GeneratorConfig(messages=60_000, symbols=40, seed=7)


@pytest.fixture(scope="module")
def image() -> bytes:
    return gen.generate_binaryfile(CONFIG)


@pytest.fixture(scope="module")
def messages(image) -> list:
    return decode_all(image)


def test_same_seed_same_bytes_other_seed_differs(image):
    assert gen.generate_binaryfile(CONFIG) == image
    other = gen.generate_binaryfile(gen.GeneratorConfig(messages=60_000, symbols=40, seed=8))
    assert other != image


def test_feed_is_consistent(messages):
    check_feed(messages, CONFIG)


def test_checker_catches_broken_feeds(messages):
    """The replay above is only worth something if it rejects a bad day: put each fault in
    place of a Reg SHO message right after an add (the harmless control swap must pass)."""
    y = next(i for i in range(3 + CONFIG.symbols + 5, len(messages))
             if messages[i].type == "Y" and messages[i - 1].type == "A")
    add, ts = messages[y - 1], messages[y].timestamp

    def record(t, **changes):
        fields = {**add.to_dict(), **changes} if t == "A" else changes
        fields.pop("type", None)
        return itch.RECORDS[t](**{"stock_locate": add.stock_locate, "tracking_number": 0,
                                  **fields, "timestamp": ts})

    def swapped(m):
        return messages[:y] + [m] + messages[y + 1:]

    check_feed(swapped(record("H", stock=add.stock, trading_state="T", reserved=" ",
                              reason_code="")), CONFIG)
    faults = {
        "not live": record("D", order_reference_number=10**12),
        "executed_shares": record("E", order_reference_number=add.order_reference_number,
                                  executed_shares=add.shares + 1, match_number=10**12),
        "price": record("A", price=add.price + 1, order_reference_number=10**12),
        "not increasing": record("A", order_reference_number=add.order_reference_number),
    }
    for words, bad in faults.items():
        with pytest.raises(AssertionError, match=words):
            check_feed(swapped(bad), CONFIG)


def test_messages_are_the_binaryfile_unframed(image):
    raw = list(gen.iter_messages(CONFIG))
    assert itch.encode_binaryfile(raw) == image
    assert raw == [m for _, m in itch.iter_binaryfile_raw(image)]


def test_every_locate_used_is_in_the_directory(messages):
    directory = {m.stock_locate for m in messages if m.type == "R"}
    used = {m.stock_locate for m in messages if m.type not in "SR"}
    assert used <= directory
    assert len(used) > CONFIG.symbols // 2        # activity spreads over many symbols


def test_mix_roughly_matches_weights(messages):
    body = messages[3 + CONFIG.symbols:-3]
    counts = collections.Counter(m.type for m in body)
    total = sum(CONFIG.mix.values())
    for t, w in CONFIG.mix.items():
        expected = w / total
        got = counts[t] / len(body)
        assert abs(got - expected) < max(0.2 * expected, 0.004), (t, got, expected)


def test_bids_below_asks_unless_marketable():
    """Consecutive new prices (A, F, U) of one stock on opposite sides straddle its mid."""
    def crossings(per_mille):
        cfg = gen.GeneratorConfig(messages=30_000, symbols=5, seed=3,
                                  marketable_per_mille=per_mille)
        last: dict[int, tuple[str, int]] = {}
        sides: dict[int, str] = {}
        pairs = crossed = 0
        for m in decode_all(gen.generate_binaryfile(cfg)):
            if m.type in "AFU":                 # each prices a new order off the mid
                if m.type == "U":
                    side = sides[m.new_order_reference_number] = sides[
                        m.original_order_reference_number]
                else:
                    side = sides[m.order_reference_number] = m.buy_sell_indicator
                prev = last.get(m.stock_locate)
                if prev and prev[0] != side:
                    pairs += 1
                    bid, ask = (prev[1], m.price) if side == "S" else (m.price, prev[1])
                    crossed += bid >= ask
                last[m.stock_locate] = (side, m.price)
        return pairs, crossed

    pairs, crossed = crossings(0)
    assert pairs > 1000 and crossed == 0
    pairs, crossed = crossings(50)
    assert 0 < crossed < pairs * 0.15


def test_custom_mix_and_minimum_size():
    cfg = gen.GeneratorConfig(messages=2_000, symbols=3, seed=1, mix={"A": 1})
    body = decode_all(gen.generate_binaryfile(cfg))[6:-3]
    assert {m.type for m in body} == {"A"}
    smallest = gen.GeneratorConfig(messages=3 + 3 + 3, symbols=3, mix={"Y": 1})
    msgs = decode_all(gen.generate_binaryfile(smallest))
    check_feed(msgs, smallest)


def test_many_symbols_have_unique_short_names():
    cfg = gen.GeneratorConfig(messages=3_000 + 6, symbols=3_000, seed=5, mix={"H": 1})
    msgs = decode_all(gen.generate_binaryfile(cfg))
    check_feed(msgs, cfg)
    assert msgs[1].stock == "AAPL"


mixes = st.dictionaries(st.sampled_from(gen.MIX_TYPES), st.integers(0, 20), min_size=1).filter(
    lambda mix: sum(mix.values()) > 0 and (mix.get("A") or mix.get("F")))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.integers(0, 3_000), symbols=st.integers(1, 30), seed=st.integers(0, 2**32),
       mix=mixes, per_mille=st.integers(0, 1000))
def test_any_config_gives_a_consistent_reproducible_feed(messages, symbols, seed, mix,
                                                          per_mille):
    cfg = gen.GeneratorConfig(messages=messages + symbols + 6, symbols=symbols, seed=seed,
                              mix=mix, marketable_per_mille=per_mille)
    image = gen.generate_binaryfile(cfg)
    check_feed(decode_all(image), cfg)
    assert gen.generate_binaryfile(cfg) == image


@pytest.mark.parametrize("kwargs, field", [
    ({"messages": 5}, "messages"),
    ({"symbols": 0}, "symbols"),
    ({"symbols": 70_000}, "symbols"),
    ({"seed": -1}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"mix": {"Z": 1}}, "mix"),
    ({"mix": {"A": -1}}, "mix"),
    ({"mix": {"A": 0}}, "mix"),
    ({"mix": {"D": 1}}, "mix"),
    ({"start_ns": 86_400 * 10**9}, "start_ns"),
    ({"mean_interval_ns": 0}, "mean_interval_ns"),
    ({"marketable_per_mille": 1001}, "marketable_per_mille"),
])
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        gen.GeneratorConfig(**kwargs)


def test_day_overflowing_midnight_is_an_error():
    cfg = gen.GeneratorConfig(messages=1_000, symbols=1, start_ns=86_400 * 10**9 - 10_000)
    with pytest.raises(ValueError, match="midnight"):
        gen.generate_binaryfile(cfg)


def test_parse_mix():
    assert gen.parse_mix("A=40, D=30,E=5") == {"A": 40, "D": 30, "E": 5}
    for bad in ("A", "A=x", "A=1,A=2", "", "A=-1"):
        with pytest.raises(ValueError, match="^mix"):
            gen.parse_mix(bad)


@pytest.mark.skipif(importlib.util.find_spec("tickpath.model.book") is None,
                    reason="golden book builder not present")
def test_golden_book_builder_finds_no_anomaly(messages):
    from tickpath.model.book import BookBuilder

    book = BookBuilder()
    for m in messages:
        book.apply(m)
    assert sum(book.anomalies.values()) == 0, book.anomalies
    assert len(book) > 0


# --- pcap ---------------------------------------------------------------------------------

PCAP_CONFIG = gen.GeneratorConfig(messages=20_000, symbols=12, seed=11)


@pytest.fixture(scope="module")
def pcap_image() -> bytes:
    buf = io.BytesIO()
    summary = gen.write_pcap(PCAP_CONFIG, buf, gen.PcapConfig(session="SESS42"))
    assert summary.messages == PCAP_CONFIG.messages
    assert summary.bytes == len(buf.getvalue())
    return buf.getvalue()


def test_pcap_carries_the_binaryfile_messages(pcap_image):
    from tickpath.protocol import moldudp64, pcap

    expected = [m for _, m in itch.iter_binaryfile_raw(gen.generate_binaryfile(PCAP_CONFIG))]
    got: list[bytes] = []
    next_sequence = 1
    last_ts = 0
    midnight = gen.PcapConfig().midnight_ns
    frames = list(pcap.read_pcap(io.BytesIO(pcap_image)))
    for ts, frame in frames:
        d = pcap.parse_udp_frame(frame)
        assert d.ip_checksum_ok and d.udp_checksum_ok
        assert (d.src_ip, d.dst_ip, d.dport) == ("127.0.0.1", "239.1.1.1", 30001)
        assert len(d.payload) <= 1472 and len(frame) <= 1514
        packet = moldudp64.decode_packet(d.payload)
        assert packet.session == "SESS42"
        assert packet.sequence == next_sequence and packet.count == len(packet.messages) > 0
        next_sequence += packet.count
        got.extend(packet.messages)
        assert isinstance(ts, int) and ts >= last_ts
        assert ts == midnight + itch.decode(packet.messages[-1]).timestamp
        last_ts = ts
    assert got == expected
    assert len(frames) < len(expected) / 10            # many messages per packet


def test_pcap_checksums_verified_by_scapy(pcap_image):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import rdpcap

    packets = rdpcap(io.BytesIO(pcap_image))
    assert len(packets) > 10
    for pkt in packets[:200]:
        ip_sum, udp_sum = pkt[IP].chksum, pkt[UDP].chksum
        del pkt[IP].chksum
        del pkt[UDP].chksum
        rebuilt = Ether(bytes(pkt))
        assert (rebuilt[IP].chksum, rebuilt[UDP].chksum) == (ip_sum, udp_sum)
        assert pkt[UDP].dport == 30001 and pkt[IP].dst == "239.1.1.1"


def test_pcap_is_deterministic(pcap_image):
    buf = io.BytesIO()
    gen.write_pcap(PCAP_CONFIG, buf, gen.PcapConfig(session="SESS42"))
    assert buf.getvalue() == pcap_image


@pytest.mark.parametrize("kwargs, field", [
    ({"session": "ELEVENCHARS"}, "session"),
    ({"session": ""}, "session"),
    ({"group": "10.0.0.1"}, "group"),
    ({"group": "nonsense"}, "group"),
    ({"port": 0}, "port"),
    ({"src_ip": "1.2.3"}, "src_ip"),
    ({"date": "2019-13-01"}, "date"),
    ({"max_payload": 1500}, "max_payload"),
])
def test_pcap_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        gen.PcapConfig(**kwargs)


# --- the command ------------------------------------------------------------------------------

def run(*args):
    from tickpath.host.cli import main

    return CliRunner().invoke(main, ["generate", *args])


def test_command_writes_binaryfile(tmp_path):
    out = tmp_path / "feed.itch"
    result = run(str(out), "--messages", "5000", "--symbols", "9", "--seed", "4",
                 "--mix", "A=5,D=4,E=1")
    assert result.exit_code == 0, result.output
    cfg = gen.GeneratorConfig(messages=5000, symbols=9, seed=4, mix={"A": 5, "D": 4, "E": 1})
    assert out.read_bytes() == gen.generate_binaryfile(cfg)
    assert re.search(r"5,000 messages, [\d,]+ bytes in [\d.]+ s", result.stderr)
    assert result.stdout == ""


def test_command_writes_pcap(tmp_path):
    from tickpath.protocol import pcap

    out = tmp_path / "feed.pcap"
    result = run(str(out), "-n", "3000", "--session", "ABC", "--group", "239.9.9.9:31000")
    assert result.exit_code == 0, result.output
    assert "packets" in result.stderr
    frames = list(pcap.read_pcap(out))
    d = pcap.parse_udp_frame(frames[0][1])
    assert (d.dst_ip, d.dport) == ("239.9.9.9", 31000)


@pytest.mark.parametrize("args, words", [
    (["--messages", "3"], "messages"),
    (["--messages", "100", "--symbols", "0"], "symbols"),
    (["--messages", "100", "--mix", "A=1,Z=2"], "mix"),
    (["--messages", "100", "--mix", "A"], "mix"),
    (["--messages", "100", "--seed", "-3"], "seed"),
])
def test_command_bad_arguments_are_one_line(tmp_path, args, words):
    result = run(str(tmp_path / "x.itch"), *args)
    assert result.exit_code != 0
    assert result.stderr.startswith("Error: ") and words in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", [["--group", "10.1.1.1:30001"], ["--group", "239.1.1.1"],
                                  ["--session", "MUCH-TOO-LONG"]])
def test_command_bad_pcap_arguments(tmp_path, args):
    result = run(str(tmp_path / "x.pcap"), "-n", "100", *args)
    assert result.exit_code != 0 and result.stderr.startswith("Error: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_command_unwritable_output(tmp_path):
    result = run(str(tmp_path / "missing" / "x.itch"), "-n", "100")
    assert result.exit_code != 0 and result.stderr.startswith("Error: ")
