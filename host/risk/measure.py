"""Pre-trade risk figures: checks per second and per-check latency (p50, p99), every check on.

``python -m tickpath.host.risk.measure [--orders N] [--seed S] [--json]``

A seeded random flow of enters over 20 accounts and 50 symbols, with reference prices, open
orders and positions in place, through :meth:`RiskChecker.check_enter` with the limits of
``docs/risk.example.toml``-like configuration (generous enough that most orders pass every check,
so every check runs). Throughput is timed over the whole loop; latency per call with
``perf_counter_ns`` around each one (the timer's own cost, ~50-100 ns, is included). Then the
kill switch: time from command to the last cancel with ``--resting`` orders in the engine.
"""

from __future__ import annotations

import argparse
import json
import random
import time

from tickpath.host.risk.checks import ReferencePrices, RiskChecker
from tickpath.host.risk.config import parse_config
from tickpath.protocol.records import Side

CONFIG = """
[global]
max_order_shares = 50_000
max_order_notional = 50_000_000_000
collar_bp = 500
check_duplicate_id = false
max_position = 10_000_000
max_gross_exposure = 9_000_000_000_000_000
max_daily_loss = 9_000_000_000_000
orders_per_second = 1_000_000
burst = 1_000_000
[session]
orders_per_second = 1_000_000
burst = 1_000_000
[account.A0]
max_position = 5_000_000
[symbol.S0]
collar_bp = 1000
"""


def _setup(seed: int, n: int):
    rng = random.Random(seed)
    ref = ReferencePrices()
    symbols = [f"S{i}" for i in range(50)]
    accounts = [f"A{i}" for i in range(20)]
    for s in symbols:
        mid = rng.randrange(100, 5000) * 10_000
        ref.set_bbo(s, mid - 100, mid + 100)
        ref.trade(s, mid)
    risk = RiskChecker(parse_config(CONFIG), ref)
    for a in accounts:
        for s in rng.sample(symbols, 10):
            side = rng.choice((Side.Buy, Side.Sell))
            price = ref.best(s, Side.Sell if side is Side.Buy else Side.Buy)
            risk.on_fill(a, s, side, rng.randrange(1, 1000), price)
            risk.on_open(a, s, side, rng.randrange(1, 1000), price)
    flow = []
    for i in range(n):
        s = rng.choice(symbols)
        side = rng.choice((Side.Buy, Side.Sell))
        best = ref.best(s, Side.Sell if side is Side.Buy else Side.Buy)
        price = best + rng.randrange(-50, 51) * 100 * (1 if side is Side.Buy else -1)
        flow.append((rng.choice(accounts), f"sess{i % 4}", f"T{i}", s, side,
                     rng.randrange(1, 2000), price))
    return risk, flow


def measure(orders: int = 200_000, seed: int = 1) -> dict:
    risk, flow = _setup(seed, orders)
    check = risk.check_enter
    t = 0
    start = time.perf_counter_ns()
    passed = 0
    for account, session, token, symbol, side, shares, price in flow:
        t += 1000
        if check(account, session, token, symbol, side, shares, price, False, t) is None:
            passed += 1
    elapsed = time.perf_counter_ns() - start

    risk, flow = _setup(seed, orders)
    check = risk.check_enter
    clock = time.perf_counter_ns
    lat = []
    append = lat.append
    t = 0
    for account, session, token, symbol, side, shares, price in flow:
        t += 1000
        t0 = clock()
        check(account, session, token, symbol, side, shares, price, False, t)
        append(clock() - t0)
    lat.sort()
    return {
        "checks": orders, "passed": passed, "checks_per_s": orders * 1_000_000_000 // elapsed,
        "p50_ns": lat[len(lat) // 2], "p99_ns": lat[len(lat) * 99 // 100], "max_ns": lat[-1],
    }


def measure_kill(resting: int = 10_000, seed: int = 1) -> dict:
    """Kill switch: ``resting`` orders of one account rest in the golden engine behind the
    order path (journal in memory); time from the kill command to the last cancel's event."""
    import asyncio

    from tickpath.engine import ModelEngine
    from tickpath.host.orders.path import MemoryJournal, OrderPath, Submission
    from tickpath.protocol.records import Action, Order

    rng = random.Random(seed)
    path = OrderPath(ModelEngine(), RiskChecker(None), MemoryJournal())
    path.set_symbol(0, "AAPL")
    ctx = Submission("s", "A", "")

    async def run():
        for i in range(1, resting + 1):
            await path.submit(Order(action=Action.Enter, side=Side.Buy, order_id=i, firm=1,
                                    symbol=0, shares=100,
                                    price=rng.randrange(100, 1000) * 1000), ctx)
        return await path.kill(account="A")

    report = asyncio.run(run())
    return {"resting": resting, "orders_canceled": report.orders_canceled,
            "time_to_last_cancel_ns": report.time_to_last_cancel_ns}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tickpath.host.risk.measure",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--resting", type=int, default=10_000,
                        help="orders resting when the kill switch is measured")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.orders, args.seed)
    kill = measure_kill(args.resting, args.seed)
    if args.json:
        print(json.dumps({**result, "kill": kill}))
    else:
        print(f"risk checks: {result['checks_per_s']:,} checks/s "
              f"({result['passed']:,} of {result['checks']:,} passed), "
              f"p50 {result['p50_ns']:,} ns, p99 {result['p99_ns']:,} ns, "
              f"max {result['max_ns']:,} ns")
        print(f"kill switch: {kill['orders_canceled']:,} resting orders canceled, "
              f"{kill['time_to_last_cancel_ns']:,} ns from command to last cancel")


if __name__ == "__main__":
    main()
