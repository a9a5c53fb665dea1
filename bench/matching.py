"""The matching engine: the gateware's exact cycles (from its simulation on the Verilator harness)
beside the golden model and ``lightmatchingengine`` (PyPI) on one seeded order stream, with the
published anchors of two software engines.

Gateware figures are cycles counted by the simulation (:class:`tickpath.sim.harness.matching.
MatchingTop` stamps the cycle each action is taken in and each event leaves), in the default
``--engine sim`` configuration (4096 orders, 16 levels a side, 64-bit ITCH, o_stream and
itch_stream always ready), converted to time at the engine's ECP5-85F Fmax (:data:`FMAX_MHZ`).

* latency: an action taken (its record's one beat on ``i_stream``) to its first event out, by
  kind; the enter's ``accepted`` is that first event. These are the engine's alone: the gated
  path (:class:`tickpath.hdl.matching.gated.GatedEngine`, the risk gate in front) is not on the
  harness yet; its cocotb bench (``sim/risk_gate``) counts one cycle more per accept.
* per fill: the extra cycles of an aggressor per resting order it fills (1 to 8 fills).
* sustained: cycles between consecutive actions taken, back to back, for a block of
  non-crossing day orders and a block of orders that each fill one resting order.
* side by side: one random stream (``sim/matching/stimulus.py``, seed 1, 20,000 actions: heavy
  crossing, IOC/FOK/market/min-qty, cancels, replaces, bad fields) through all three.
  ``lightmatchingengine`` has day limit orders and full cancels only: its run skips IOC, FOK,
  market and min-qty enters, partial cancels, replaces, and enters our rules reject (it has no
  validation), and cancels orders it no longer holds; it has no self-match prevention.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict

from bench.report import Row
from tickpath.model.matching import MatchingModel, valid_price
from tickpath.protocol.records import (
    Action,
    EventKind,
    Order,
    OrderType,
    Side,
    TimeInForce,
)
from tickpath.sim.matching.stimulus import random_actions, stock_name

# ECP5-85F (lfe5u-85f), MatchingEngine at the fmax report's 85F size (64 symbols, 4096 orders,
# 8 levels, 13-bit tokens; levels in block RAM), YoWASP Yosys + nextpnr-ecp5, 2026-11-22, with
#   python -m tickpath.hdl.build --device lfe5u-85f --component matching_engine --clock 100 --json
# 25.6 MHz is nextpnr's post-placement estimate for engine d232edc (the route of that run did
# not finish within the session on the shared machine; the engine before it routed at 10.9 MHz,
# limited by `price % 100`). The same engine at 4 symbols, 256 orders, 8 levels, 10-bit tokens
# routes at 43.5 MHz (placement estimate 33.9), limited by the slot memory's clock-to-out into
# the state decisions and the ITCH record written into the ITCH queue. No report is cached, so
# the figure is kept here; rerun it after engine changes.
FMAX_MHZ = 25.6
STOCKS = [stock_name(s) for s in range(6)]      # tests/test_match_sim.py's: one simulator build
STREAM_ACTIONS = 20_000
BLOCK = 2_000


def _engine(**kw):
    from tickpath.sim.harness.matching import SimEngine
    engine = SimEngine(keep_timing=True, **kw)
    for s, name in enumerate(STOCKS):
        engine.set_symbol(s, name)
    return engine


def _order(action=Action.Enter, *, token, side=Side.Buy, shares=100, price=1_000_000, firm=1,
           symbol=0, tif=TimeInForce.Day, ord_type=OrderType.Limit, new=0, min_qty=0):
    return Order(action, side, tif, ord_type, token, new, firm, symbol, shares, price, min_qty)


def _kind(order: Order, events) -> str:
    first = events[0]
    if first.kind is EventKind.Rejected:
        return "reject"
    if order.action is not Action.Enter:
        return order.action.name.lower()
    if any(e.kind is EventKind.Executed for e in events):
        return "enter, crosses"
    return "enter, rests" if len(events) == 1 else "enter, IOC/FOK canceled"


def _run_timed(engine, orders):
    """Events of each action and its ActionTiming."""
    start = len(engine.timing)
    events = engine.run(orders)
    per_action, k = [], 0
    for t in engine.timing[start:]:
        per_action.append(events[k:k + t.events])
        k += t.events
    return per_action, engine.timing[start:]


def _ns(cycles: float) -> float:
    return cycles * 1000.0 / FMAX_MHZ


def _per_fill() -> tuple[dict[int, int], float]:
    """Cycles from an aggressor taken to its last event out, for 1..8 fills."""
    engine = _engine()
    span = {}
    token = 1
    for fills in range(1, 9):
        rest = [_order(token=token + i, side=Side.Sell, firm=2) for i in range(fills)]
        token += fills
        _run_timed(engine, rest)
        _, timing = _run_timed(engine, [_order(token=token, shares=100 * fills)])
        token += 1
        span[fills] = timing[0].last - timing[0].taken
    return span, (span[8] - span[1]) / 7


def _sustained() -> tuple[float, float]:
    """Cycles between actions taken, back to back: non-crossing day orders (both sides, 8
    prices each, never touching), then buys that each fill one resting sell."""
    engine = _engine()
    quiet = [_order(token=i + 1, side=Side.Buy if i % 2 else Side.Sell,
                    price=(990_000 - 100 * (i % 8)) if i % 2 else (1_010_000 + 100 * (i % 8)))
             for i in range(BLOCK)]
    per_action, timing = _run_timed(engine, quiet)
    assert all(len(e) == 1 and e[0].kind is EventKind.Accepted for e in per_action)
    non_crossing = (timing[-1].taken - timing[0].taken) / (len(timing) - 1)
    engine = _engine()
    sells = [_order(token=i + 1, side=Side.Sell, firm=2, price=1_000_000 + 100 * (i % 8))
             for i in range(BLOCK)]
    _run_timed(engine, sells)
    buys = [_order(token=BLOCK + i + 1, price=1_001_000) for i in range(BLOCK)]
    per_action, timing = _run_timed(engine, buys)
    assert all(sum(e.kind is EventKind.Executed for e in ev) == 2 for ev in per_action)
    crossing = (timing[-1].taken - timing[0].taken) / (len(timing) - 1)
    return non_crossing, crossing


def _lme_plan(orders: list[Order]) -> tuple[list[tuple], dict[str, int]]:
    """The stream as lightmatchingengine calls: ("add", token, stock, price, qty, side) and
    ("cancel", token); and what was skipped, by reason."""
    plan, skipped = [], defaultdict(int)
    for o in orders:
        if o.action is Action.Enter:
            if o.ord_type is OrderType.Market or o.tif is not TimeInForce.Day or o.min_qty:
                skipped["IOC/FOK/market/min-qty enter"] += 1
            elif not (valid_price(o.price) and 0 < o.shares <= 999_999 and o.symbol < 6):
                skipped["enter our rules reject"] += 1
            else:
                plan.append(("add", o.order_id, stock_name(o.symbol), o.price, o.shares,
                             1 if o.side is Side.Buy else 2))
        elif o.action is Action.Cancel and o.shares == 0:
            plan.append(("cancel", o.order_id))
        else:
            skipped["partial cancel" if o.action is Action.Cancel else "replace"] += 1
    return plan, dict(skipped)


def _lme_run(plan) -> int:
    from lightmatchingengine.lightmatchingengine import LightMatchingEngine
    lme = LightMatchingEngine()
    live = {}                       # our token -> its order, while it has shares open
    add, cancel = lme.add_order, lme.cancel_order
    done = 0
    for step in plan:
        if step[0] == "add":
            _, token, stock, price, qty, side = step
            if token in live and live[token].leaves_qty:
                continue                                        # our rules: duplicate 'd'
            order, _ = add(stock, price, qty, side)
            live[token] = order
        else:
            order = live.pop(step[1], None)
            if order is None or not order.leaves_qty:
                continue                                        # unknown or finished
            cancel(order.order_id, order.instmt)
        done += 1
    return done


def _best(fn, repeat=3) -> tuple[float, int]:
    best, n = float("inf"), 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn()
        best = min(best, time.perf_counter() - t0)
    return best, n


def run() -> list[Row]:
    orders = random_actions(random.Random(1), STREAM_ACTIONS, symbols=4, token_bits=10,
                            prices=12)
    # (a) the gateware, cycle-exact
    engine = _engine()
    engine.prepare()                # the simulator's build (minutes when the HDL changed)
    t0 = time.perf_counter()
    per_action, timing = _run_timed(engine, orders)
    sim_seconds = time.perf_counter() - t0
    first = defaultdict(list)
    for order, events, t in zip(orders, per_action, timing, strict=True):
        first[_kind(order, events)].append(t.first - t.taken)
    total = timing[-1].last - timing[0].taken + 1
    per_action_cycles = total / len(orders)
    mean_first = sum(t.first - t.taken for t in timing) / len(timing)
    span, per_fill = _per_fill()
    non_crossing, crossing = _sustained()

    # (b) the golden model, (c) lightmatchingengine: the same stream
    def model() -> int:
        m = MatchingModel()
        for s, name in enumerate(STOCKS):
            m.set_symbol(s, name)
        m.process_all(orders)
        return len(orders)
    model_s, _ = _best(model)
    plan, skipped = _lme_plan(orders)
    lme_s, lme_done = _best(lambda: _lme_run(plan))

    rows = []
    rests, crosses = first["enter, rests"], first["enter, crosses"]
    no_gate = "the engine alone; through the risk gate (GatedEngine) 1 more, per its bench"
    rows.append(Row("gateware: record in -> accepted out, resting enter", max(rests), "cycles",
                    note=f"target <= 8; min {min(rests)}, {len(rests):,} enters; {no_gate}"))
    rows.append(Row("gateware: record in -> accepted out, crossing enter", min(crosses),
                    "cycles", note=f"mean {sum(crosses) / len(crosses):.2f}, max "
                                   f"{max(crosses)} (held behind FOK/min-qty scans, "
                                   "self-match cancels, a full ITCH queue)"))
    for kind in sorted(first):
        v = first[kind]
        rows.append(Row(f"gateware: first event, {kind}", sum(v) / len(v), "cycles",
                        note=f"min {min(v)} max {max(v)}, {len(v):,} actions"))
    rows.append(Row("gateware: per fill", per_fill, "cycles",
                    note="aggressor taken -> last event: " +
                         ", ".join(f"{k} fill{'s' * (k > 1)} {v}" for k, v in span.items())))
    rows.append(Row("gateware: sustained, non-crossing order", non_crossing, "cycles/order",
                    note=f"target <= 8; exactly {non_crossing:.3f}; {BLOCK:,} day orders "
                         "back to back"))
    rows.append(Row("gateware: sustained, crossing order (1 fill)", crossing, "cycles/order",
                    note=f"exactly {crossing:.3f}; {BLOCK:,} buys each filling one resting "
                         "sell"))
    rows.append(Row("gateware: random stream", per_action_cycles, "cycles/action",
                    note=f"exactly {per_action_cycles:.3f}; {len(orders):,} actions, "
                         f"{total:,} cycles from the first taken to the last event"))
    fmax_note = f"at Fmax {FMAX_MHZ:.1f} MHz (ECP5-85F)"
    gw_rate = FMAX_MHZ * 1e6 / per_action_cycles
    rows.append(Row("gateware actions/s", gw_rate, "actions/s", baseline="model actions/s",
                    note=fmax_note))
    rows.append(Row("model actions/s", len(orders) / model_s, "actions/s",
                    note="MatchingModel, Python, same stream"))
    rows.append(Row("lightmatchingengine calls/s", lme_done / lme_s, "calls/s",
                    baseline="model actions/s",
                    note=f"{lme_done:,} calls; skipped "
                         + ", ".join(f"{k} {v:,}" for k, v in sorted(skipped.items()))))
    rows.append(Row("gateware ns/action", _ns(per_action_cycles), "ns",
                    note=f"mean first event {_ns(mean_first):.0f} ns, {fmax_note}"))
    rows.append(Row("model ns/action", model_s / len(orders) * 1e9, "ns",
                    baseline="gateware ns/action"))
    rows.append(Row("lightmatchingengine ns/call", lme_s / lme_done * 1e9, "ns",
                    baseline="gateware ns/action"))
    rows.append(Row("anchor: Liquibook inserts/s", 2_250_000, "inserts/s",
                    baseline="gateware actions/s",
                    note="2.0-2.5 M sustained, C++ (github.com/enewhuis/liquibook README)"))
    rows.append(Row("anchor: exchange-core ops/s", 5_000_000, "ops/s",
                    baseline="gateware actions/s",
                    note="one order book, 1.5 us median at 5 M/s, Xeon X5690, Java "
                         "(github.com/exchange-core/exchange-core README)"))
    rows.append(Row("harness: simulated cycles/s", engine.cycles / sim_seconds, "cycle/s",
                    note=f"{len(orders):,} actions simulated in {sim_seconds:.1f} s"))
    return rows
