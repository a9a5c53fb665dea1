"""The golden risk gate (tickpath.model.risk_gate): the risk TOML mapped to the gate's integer
limits and registers, each check on its own, the kill and dead-man mass cancels, the token
bucket in cycles, and no configuration = the plain matching model, event for event."""

import pathlib
import random

import pytest

from tickpath.host.risk.config import RiskConfig, load_config
from tickpath.model.matching import MASS_CANCEL_ALL, MASS_CANCEL_FIRM
from tickpath.model.risk_gate import (
    GATE_REASONS,
    U32,
    U64,
    GatedMatchingModel,
    GateLimits,
    PairLimits,
    gate_regmap,
)
from tickpath.protocol.records import (
    Action,
    CancelReason,
    Event,
    EventKind,
    Order,
    OrderType,
    RejectReason,
    Side,
    TimeInForce,
)
from tickpath.protocol.regmap import RegisterClient
from tickpath.sim.matching.stimulus import new_model, random_actions

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "risk.example.toml"
FIRMS = {"ACME": 1, "BETA": 2}
SYMBOLS = {"AAPL": 0, "GME": 1, "TSLA": 2, "ZXZZT": 3}
B, S = Side.Buy, Side.Sell
P = 1_000_000


def enter(token, side, shares, price=P, *, firm=1, symbol=0, tif=TimeInForce.Day,
          kind=OrderType.Limit):
    return Order(Action.Enter, side, tif, kind, token, 0, firm, symbol, shares, price, 0)


def gated(pairs=None, **kw):
    limits = GateLimits(firms=4, symbols=4, pairs=pairs or {}, **kw)
    return GatedMatchingModel(new_model(4, 64), limits)


def reject_reason(events):
    assert len(events) == 1 and events[0].kind is EventKind.Rejected
    return RejectReason(events[0].reason)


# --- configuration ------------------------------------------------------------------------

def test_example_config_maps_to_gate_limits():
    limits = GateLimits.from_config(load_config(EXAMPLE), FIRMS, SYMBOLS, n_firms=4,
                                    clock_hz=100_000_000)
    acme_aapl = limits.pair(1, 0)
    assert acme_aapl == PairLimits(max_shares=5_000, max_notional=50_000_000_000,
                                   collar_bp=500, max_position=20_000)
    assert limits.pair(2, 0) == PairLimits(50_000, 50_000_000_000, 500, 200_000)
    assert limits.pair(1, 1).collar_bp == 1_500 and limits.pair(1, 1).max_shares == 2_000
    assert limits.pair(1, 2).max_shares == 0            # TSLA restricted for ACME only
    assert limits.pair(2, 2).max_shares == 50_000
    assert limits.pair(2, 3).max_shares == 0            # ZXZZT restricted for everyone
    assert limits.pair(0, 0) == PairLimits()            # firm 0 is no configured account
    assert limits.rates == {1: (100_000_000 // 2_000, 200), 2: (100_000_000 // 2_000, 200)}
    assert limits.no_reference_reject is False and limits.halted == frozenset()


def test_config_halts_collar_off_and_no_reference(tmp_path):
    path = tmp_path / "risk.toml"
    path.write_text('[global]\ncollar = false\nno_reference = "reject"\nhalted = ["GME"]\n'
                    'max_order_shares = 100\n')
    limits = GateLimits.from_config(load_config(path), FIRMS, SYMBOLS)
    assert limits.halted == frozenset({1}) and limits.no_reference_reject
    assert limits.pair(1, 0) == PairLimits(max_shares=100)
    assert limits.firms == 3 and limits.symbols == 4


def test_no_config_is_every_check_off():
    limits = GateLimits.from_config(RiskConfig.off(), FIRMS, SYMBOLS)
    assert limits.pairs == {} and limits.rates == {} and not limits.halted
    regs = gate_regmap(limits.firms, limits.symbols)
    # off is the registers' reset value: a gate nobody configured checks nothing
    for name, value in limits.register_values().items():
        assert value == regs[name].reset, name
    for row in limits.pair_rows().values():            # and the limit memory's initial rows
        for name, value in row.items():
            assert value == regs[name].reset, name


def test_register_values_fit_the_map():
    limits = GateLimits.from_config(load_config(EXAMPLE), FIRMS, SYMBOLS, n_firms=4)
    regs = gate_regmap(4, 4)
    for name, value in limits.register_writes():
        assert 0 <= value < 1 << regs[name].width, name
    rows = limits.pair_rows()
    assert rows[(1, 0)]["limit_max_shares"] == 5_000
    assert rows[(0, 0)]["limit_max_notional"] == U64
    assert rows[(0, 0)]["limit_collar_bp"] == U32
    assert limits.register_values()["rate_period_0"] == 0
    names = {r.name for r in regs}
    assert {f"rejects_{chr(r)}" for r in GATE_REASONS} <= names
    # the map no longer grows with firms x symbols: the pairs are a memory behind a window
    assert len(gate_regmap(8, 64)) == len(gate_regmap(8, 4)) + 2 * 60


def test_host_loader_writes_the_gate_registers():
    """The loader's writes, replayed into a window memory as the gateware keeps it, give every
    pair's row; the scalar registers read back."""
    limits = GateLimits.from_config(load_config(EXAMPLE), FIRMS, SYMBOLS, n_firms=4)
    regs = gate_regmap(4, 4)
    words: dict[int, int] = {}
    rows: dict[tuple[int, int], dict[str, int]] = {}

    def write(address: int, word: int) -> None:
        words[address] = word
        if address == regs["limit_write"].address:
            pair = (client.read("limit_firm"), client.read("limit_symbol"))
            rows[pair] = {name: client.read(name) for name in (
                "limit_max_shares", "limit_max_notional", "limit_collar_bp",
                "limit_max_position")}

    client = RegisterClient(regs, lambda a: words.get(a, 0), write)
    limits.load(client)
    back = {r.name: client.read(r.name) for r in regs if r.access == "rw"}
    assert {k: back[k] for k in limits.register_values()} == limits.register_values()
    assert rows == limits.pair_rows()
    assert rows[(1, 0)]["limit_max_notional"] == 50_000_000_000       # two words


# --- each check on its own ----------------------------------------------------------------

def test_max_shares():
    g = gated({(1, 0): PairLimits(max_shares=500)})
    assert reject_reason(g.process(enter(1, B, 501))) is RejectReason.MaxShares
    assert g.process(enter(2, B, 500))[0].kind is EventKind.Accepted
    assert g.process(enter(3, B, 501, firm=2))[0].kind is EventKind.Accepted   # other firm
    assert g.counters == {RejectReason.MaxShares: 1}


def test_max_notional_limit_and_market():
    g = gated({(1, 0): PairLimits(max_notional=300 * P)})
    assert reject_reason(g.process(enter(1, B, 301))) is RejectReason.MaxNotional
    assert g.process(enter(2, B, 300))[0].kind is EventKind.Accepted
    market = enter(3, B, 400, 0, kind=OrderType.Market, tif=TimeInForce.Ioc)
    # no reference: a market order's notional is not checked (no_reference = pass)
    assert g.process(market)[0].kind is EventKind.Accepted
    g.set_reference(0, bid=P - 100, ask=P + 100)
    assert reject_reason(g.process(market._replace(order_id=4))) is RejectReason.MaxNotional


def test_no_reference_reject():
    g = gated({(1, 0): PairLimits(collar_bp=500)}, no_reference_reject=True)
    assert reject_reason(g.process(enter(1, B, 100))) is RejectReason.NoReference
    g.set_reference(0, bid=0, ask=P)
    assert g.process(enter(2, B, 100))[0].kind is EventKind.Accepted
    # a sell needs the bid reference, else the last trade: none yet
    assert reject_reason(g.process(enter(3, S, 100, P + 100))) is RejectReason.NoReference


def test_collar_against_reference_then_last_trade():
    g = gated({(1, 0): PairLimits(collar_bp=100), (2, 0): PairLimits(collar_bp=100)})
    g.set_reference(0, bid=P, ask=P)
    assert g.process(enter(1, B, 10, P + 10_000))[0].kind is EventKind.Accepted  # +1 %
    assert reject_reason(g.process(enter(2, B, 10, P + 10_100))) is RejectReason.Collar
    assert g.process(enter(3, S, 10, P - 10_000, firm=2))[0].kind is EventKind.Accepted
    assert reject_reason(g.process(enter(4, S, 10, P - 10_100))) is RejectReason.Collar
    # no references written: the last trade (3 sold into 1's bid at P + 10,000)
    g.set_reference(0, 0, 0)
    assert g.gate.last_trade[0] == P + 10_000
    assert reject_reason(g.process(enter(5, B, 10, P + 20_200, firm=2))) \
        is RejectReason.Collar


def test_position_counts_open_orders_and_fills():
    g = gated({(1, 0): PairLimits(max_position=1_000)})
    assert g.process(enter(1, B, 600))[0].kind is EventKind.Accepted
    assert reject_reason(g.process(enter(2, B, 401))) is RejectReason.Position
    assert g.process(enter(3, B, 400))[0].kind is EventKind.Accepted
    # firm 2 sells 700 into firm 1's bids: position +700, open buys 300
    g.process(enter(4, S, 700, firm=2))
    assert g.gate.position[(1, 0)] == 700 and g.gate.open[(1, 0, B)] == 300
    assert reject_reason(g.process(enter(5, B, 1))) is RejectReason.Position
    # sells: open sells + shares - position
    assert g.process(enter(6, S, 1_700, P + 100))[0].kind is EventKind.Accepted
    assert reject_reason(g.process(enter(7, S, 1, P + 100))) is RejectReason.Position
    # a replace counts its new size in place of the old one (open buys 300 from token 3)
    assert g.process(Order(Action.Replace, order_id=6, new_order_id=8, shares=1_699,
                           price=P + 100))[0].kind is EventKind.Replaced
    assert g.process(enter(9, S, 1, P + 100))[0].kind is EventKind.Accepted
    assert reject_reason(g.process(Order(Action.Replace, order_id=8, new_order_id=10,
                                         shares=1_700, price=P + 100))) is RejectReason.Position
    assert g.gate.open[(1, 0, S)] == 1_700


def test_replace_is_checked_as_the_original_order():
    g = gated({(2, 1): PairLimits(max_shares=100)})
    g.process(enter(1, B, 100, firm=2, symbol=1))
    # the record's firm and symbol are not the order's: the token table's are used
    events = g.process(Order(Action.Replace, order_id=1, new_order_id=2, shares=101, price=P))
    assert reject_reason(events) is RejectReason.MaxShares
    # a token the table does not hold live passes to the engine, which rejects it
    events = g.process(Order(Action.Replace, order_id=7, new_order_id=8, shares=101, price=P))
    assert reject_reason(events) is RejectReason.UnknownToken


def test_halted():
    g = gated(halted=frozenset({2}))
    assert reject_reason(g.process(enter(1, B, 10, symbol=2))) is RejectReason.Halted
    g.set_halted(2, False)
    assert g.process(enter(2, B, 10, symbol=2))[0].kind is EventKind.Accepted
    g.set_halted(2)
    # cancels are never checked
    assert g.process(Order(Action.Cancel, order_id=2))[0].reason == CancelReason.User


def test_rate_token_bucket_in_cycles():
    g = gated(rates={1: (100, 2)})          # set at cycle 0: ticks at 100, 200, ...
    assert g.process(enter(1, B, 1), cycle=10)[0].kind is EventKind.Accepted
    assert g.process(enter(2, B, 1), cycle=11)[0].kind is EventKind.Accepted
    assert reject_reason(g.process(enter(3, B, 1), cycle=100)) is RejectReason.Rate
    assert g.process(enter(4, B, 1), cycle=101)[0].kind is EventKind.Accepted
    assert reject_reason(g.process(enter(5, B, 1), cycle=150)) is RejectReason.Rate
    # a long gap refills up to the burst only
    assert g.process(enter(6, B, 1), cycle=10_000)[0].kind is EventKind.Accepted
    assert g.process(enter(7, B, 1), cycle=10_000)[0].kind is EventKind.Accepted
    assert reject_reason(g.process(enter(8, B, 1), cycle=10_000)) is RejectReason.Rate
    # only orders that pass every other check take a token; other firms are not limited
    assert g.process(enter(9, B, 1, firm=2), cycle=10_000)[0].kind is EventKind.Accepted


def test_kill_switch_cancels_and_rejects():
    g = gated()
    g.process(enter(1, B, 100, firm=1))
    g.process(enter(2, S, 100, P + 100, firm=2))
    g.process(enter(3, B, 50, P - 100, firm=1, symbol=1))
    events = g.set_kill(1 << 1)
    assert [(e.kind, e.reason, e.order_id, e.shares, e.last) for e in events] == [
        (EventKind.Canceled, CancelReason.Supervisory, 1, 100, 0),
        (EventKind.Canceled, CancelReason.Supervisory, 3, 50, 1)]
    assert reject_reason(g.process(enter(4, B, 1, firm=1))) is RejectReason.Killed
    assert g.process(enter(5, B, 1, firm=2))[0].kind is EventKind.Accepted
    assert g.set_kill(1 << 1) == []                     # no new bit: nothing again
    assert g.set_kill(0) == []
    assert g.process(enter(6, B, 1, firm=1))[0].kind is EventKind.Accepted
    events = g.set_kill(1 << 4)                         # global
    assert {e.order_id for e in events} == {2, 5, 6}
    assert reject_reason(g.process(enter(7, B, 1, firm=9))) is RejectReason.Killed
    assert len(g.engine) == 0


def test_deadman_switch():
    g = gated()
    g.process(enter(1, B, 100))
    events = g.deadman_trip()
    assert [(e.order_id, e.reason) for e in events] == [(1, CancelReason.Supervisory)]
    assert reject_reason(g.process(enter(2, B, 1))) is RejectReason.DeadMan
    assert g.deadman_trip() == []
    g.heartbeat()
    assert g.process(enter(3, B, 1))[0].kind is EventKind.Accepted


def test_engine_mass_cancel_record():
    m = new_model(2, 16)
    m.process(enter(1, B, 100, firm=1))
    m.process(enter(2, B, 100, P - 100, firm=2))
    assert m.process(Order(action=Action.EndOfDay, firm=3, min_qty=MASS_CANCEL_FIRM)) == []
    assert m.process(Order(action=Action.EndOfDay, firm=2, min_qty=MASS_CANCEL_FIRM)) == [
        Event(EventKind.Canceled, 1, B, CancelReason.Supervisory, 2, 0, 0, 100, P - 100, 0)]
    assert m.process(Order(action=Action.EndOfDay, min_qty=3))[0].reason == RejectReason.Other
    assert len(m.process(Order(action=Action.EndOfDay, min_qty=MASS_CANCEL_ALL))) == 1
    assert not m.closed and len(m) == 0
    assert [msg.type for msg in m.itch[-2:]] == ["D", "D"]


# --- no configuration = the plain engine ----------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2])
def test_no_limits_is_the_plain_model(seed):
    orders = random_actions(random.Random(seed), 3_000, firms=3)
    plain = new_model(4, 64).process_all(orders)
    limits = GateLimits.from_config(RiskConfig.off(), {"A": 1, "B": 2, "C": 3}, SYMBOLS)
    g = GatedMatchingModel(new_model(4, 64), limits)
    assert g.process_all(orders) == plain
    assert sum(g.counters.values()) == 0


def test_positions_follow_the_engine():
    """The gate's open shares per firm, symbol and side are the engine's resting orders."""
    orders = random_actions(random.Random(5), 2_000, firms=3)
    g = GatedMatchingModel(new_model(4, 64), GateLimits(firms=4, symbols=4))
    for order in orders:
        g.process(order)
    want = {}
    for token in range(1, 1 << 10):
        held = g.engine.order(token)
        if held is not None:
            symbol, side, _, open_ = held
            key = (g.gate.tokens[token][0], symbol, side)
            want[key] = want.get(key, 0) + open_
    got = {k: v for k, v in g.gate.open.items() if v}
    assert got == want
