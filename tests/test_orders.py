"""The host order path: risk + journal + engine + positions, the kill switch, ``tickpath orders
run`` against ``tickpath match``, and the audit journal it leaves."""

import asyncio
import json
import random

import pytest
from click.testing import CliRunner

from tickpath.engine import ModelEngine
from tickpath.host.audit import Kind, iter_records, replay, verify
from tickpath.host.commands.kill import command as kill_command
from tickpath.host.commands.match import command as match_command
from tickpath.host.commands.orders import command as orders_command
from tickpath.host.commands.risk import command as risk_command
from tickpath.host.orders import KillFile, KillState, MemoryJournal, OrderPath, Submission
from tickpath.host.orders.control import diff
from tickpath.host.positions import Positions
from tickpath.host.risk import RiskChecker, parse_config
from tickpath.protocol.records import (
    Action,
    CancelReason,
    EventKind,
    Order,
    OrderType,
    Side,
    TimeInForce,
)

# --- the path itself (in memory) ------------------------------------------------------------


def make_path(toml=None):
    engine = ModelEngine()
    risk = RiskChecker(None if toml is None else parse_config(toml))
    journal = MemoryJournal()
    path = OrderPath(engine, risk, journal)
    path.set_symbol(0, "AAPL")
    path.set_symbol(1, "MSFT")
    return path, journal


def enter(path, oid, side, shares, price, account="A", session="s", symbol=0, firm=None,
          tif=TimeInForce.Day):
    order = Order(action=Action.Enter, side=side, tif=tif, ord_type=OrderType.Limit,
                  order_id=oid, firm=firm or (1 + ord(account[0])), symbol=symbol,
                  shares=shares, price=price)
    return asyncio.run(path.submit(order, Submission(session, account, f"C{oid}")))


def test_kill_account_cancels_every_resting_order_and_blocks():
    path, journal = make_path()
    for i in range(1, 6):
        enter(path, i, Side.Buy, 100, 1_000_000 - 100 * i, account="A", symbol=i % 2)
    enter(path, 10, Side.Sell, 50, 2_000_000, account="B")
    assert len(path.live) == 6
    report = asyncio.run(path.kill(account="A"))
    assert report.orders_canceled == 5 and report.time_to_last_cancel_ns > 0
    canceled = [e for e in report.events if e.kind is EventKind.Canceled]
    assert sorted(e.order_id for e in canceled) == [1, 2, 3, 4, 5]
    assert all(e.reason == CancelReason.Supervisory and e.shares == 100 for e in canceled)
    assert list(path.live) == [10]                               # B's order still rests
    assert path.engine.model.order(10) is not None and path.engine.model.order(1) is None
    events = enter(path, 20, Side.Buy, 1, 1_000_000, account="A")
    assert [(e.kind, e.reason, e.last) for e in events] == [(EventKind.Rejected, ord("a"), 1)]
    assert path.last_risk_reason == "killed_account"
    assert enter(path, 21, Side.Buy, 1, 1_000_000, account="B")[0].kind is EventKind.Accepted
    path.unkill(account="A")
    assert enter(path, 22, Side.Buy, 1, 1_000_000, account="A")[0].kind is EventKind.Accepted
    kills = [f["detail"] for k, f in journal.records if k is Kind.KILL]
    assert [d["state"] for d in kills] == ["on", "on", "off"]
    assert kills[1]["orders_canceled"] == 5


def test_kill_global_and_session():
    path, _ = make_path()
    enter(path, 1, Side.Buy, 100, 1_000_000, account="A", session="x")
    enter(path, 2, Side.Buy, 100, 1_000_000, account="B", session="y")
    enter(path, 3, Side.Sell, 100, 1_100_000, account="C", session="y")
    heard = []
    path.unsolicited.append(heard.append)
    report = asyncio.run(path.kill(session="y"))
    assert report.orders_canceled == 2 and list(path.live) == [1]
    assert heard == [report.events]
    assert enter(path, 4, Side.Buy, 1, 1_000_000, account="A", session="y")[0].reason == ord("a")
    report = asyncio.run(path.kill())
    assert report.orders_canceled == 1 and not path.live and len(path.engine.model) == 0
    assert enter(path, 5, Side.Buy, 1, 1_000_000, account="Z", session="z")[0].reason == ord("a")
    # cancels still pass under a kill
    events = asyncio.run(path.submit(Order(action=Action.Cancel, order_id=99, shares=0),
                                     Submission("z", "Z", "C99")))
    assert events[0].kind is EventKind.Rejected and events[0].reason == ord("u")


def test_open_orders_positions_and_journal_order():
    path, journal = make_path("[global]\nmax_position = 150\ncollar = false")
    enter(path, 1, Side.Sell, 100, 1_000_000, account="S")
    enter(path, 2, Side.Buy, 60, 1_000_000, account="A")       # fills 60
    assert path.risk.position("A", "AAPL") == (60, 0, 0)
    assert path.risk.position("S", "AAPL") == (-60, 0, 40)
    enter(path, 3, Side.Buy, 90, 900_000, account="A")         # reach 150: passes
    assert path.risk.position("A", "AAPL") == (60, 90, 0)
    assert enter(path, 4, Side.Buy, 1, 900_000, account="A")[0].reason == ord("p")
    # replace 3 -> 5 bigger: refused; smaller: passes and the open size follows
    rep = Order(action=Action.Replace, order_id=3, new_order_id=5, shares=91, price=900_000)
    assert asyncio.run(path.submit(rep, Submission("s", "A", "C5")))[0].reason == ord("p")
    rep = rep._replace(shares=30)                       # C5 was used: a new client id
    assert asyncio.run(path.submit(rep, Submission("s", "A", "C6")))[0].kind \
        is EventKind.Replaced
    assert path.risk.position("A", "AAPL") == (60, 30, 0) and 5 in path.live
    assert path.positions.get("A", "AAPL").position == 60
    kinds = [k for k, _ in journal.records]
    assert kinds[:3] == [Kind.ORDER, Kind.RISK, Kind.ACCEPTED]
    risk = [f["reason"] for k, f in journal.records if k is Kind.RISK]
    assert risk == ["pass", "pass", "pass", "max_position", "max_position", "pass"]
    fills = [f for k, f in journal.records if k is Kind.EXECUTED]
    assert [(f["account"], f["side"], f["quantity"], f["price"]) for f in fills] == [
        ("A", "B", 60, 1_000_000), ("S", "S", 60, 1_000_000)]


def test_reload_while_running_keeps_old_limits_on_error(tmp_path):
    from tickpath.host.risk import ConfigHolder
    file = tmp_path / "r.toml"
    file.write_text("[global]\nmax_order_shares = 10\ncollar = false\n")
    holder = ConfigHolder(file)
    path, journal = make_path()
    path.risk.set_config(holder.config)
    assert enter(path, 1, Side.Buy, 11, 1_000_000)[0].reason == ord("Z")
    file.write_text("[global]\nmax_order_shares = 20\ncollar = false\n")
    assert path.reload(holder) == (True, [])
    assert enter(path, 2, Side.Buy, 11, 1_000_000)[0].kind is EventKind.Accepted
    file.write_text("[global]\nmax_order_shares = [20]\n")
    ok, errors = path.reload(holder)
    assert not ok and errors[0].startswith("global.max_order_shares: expected an integer")
    assert enter(path, 3, Side.Buy, 21, 1_000_000)[0].reason == ord("Z")
    assert enter(path, 4, Side.Buy, 20, 1_000_000)[0].kind is EventKind.Accepted
    configs = [f["detail"] for k, f in journal.records if k is Kind.CONFIG]
    assert [c["ok"] for c in configs] == [True, False]
    assert configs[1]["errors"] == errors


def test_engine_duplicate_token_keeps_the_live_order():
    path, _ = make_path()                  # no config: the engine itself refuses (d)
    enter(path, 1, Side.Buy, 100, 1_000_000)
    events = enter(path, 1, Side.Buy, 5, 1_000_000)
    assert events[0].kind is EventKind.Rejected and events[0].reason == ord("d")
    assert path.live[1].open == 100
    assert path.risk.position("A", "AAPL") == (0, 100, 0)


# --- control file and operator commands -----------------------------------------------------

def test_kill_file_and_commands(tmp_path):
    kf = KillFile(tmp_path)
    assert kf.read() == KillState()
    runner = CliRunner()
    r = runner.invoke(kill_command, ["--account", "A", "--control", str(tmp_path), "--json"],
                      prog_name="kill")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"global": False, "accounts": ["A"], "sessions": []}
    r = runner.invoke(kill_command, ["--control", str(tmp_path)], prog_name="kill")
    assert r.exit_code == 0 and "killed: everything" in r.stdout
    r = runner.invoke(kill_command, ["--control", str(tmp_path)], prog_name="unkill")
    assert r.exit_code == 0 and "released" in r.stdout
    assert kf.read() == KillState(False, frozenset({"A"}))
    assert diff(KillState(True), kf.read()) == [(False, None, None), (True, "A", None)]
    (tmp_path / "kill.json").write_text("[1]")
    r = runner.invoke(kill_command, ["--control", str(tmp_path)], prog_name="kill")
    assert r.exit_code == 1 and "not a kill state" in r.output


def test_risk_check_and_show(tmp_path):
    runner = CliRunner()
    bad = tmp_path / "bad.toml"
    bad.write_text("[global]\nmax_position = -3\nfoo = 1\n")
    r = runner.invoke(risk_command, ["check", str(bad)])
    assert r.exit_code == 1
    assert f"{bad}: global.max_position: -3 is out of range" in r.output
    assert f"{bad}: global.foo: unknown key" in r.output and "2 problems" in r.output
    good = tmp_path / "good.toml"
    good.write_text("[account.ACME]\nmax_position = 1000\n")
    r = runner.invoke(risk_command, ["check", str(good)])
    assert r.exit_code == 0 and "ok" in r.stdout
    r = runner.invoke(risk_command, ["show", str(good), "--json"])
    assert json.loads(r.stdout)["account"]["ACME"]["max_position"] == 1000
    r = runner.invoke(risk_command, ["show", str(good)])
    assert "account.ACME  max_position" in r.stdout and "1,000" in r.stdout


# --- tickpath orders run ------------------------------------------------------------------------

def write_lines(path, lines):
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def orders_run(tmp_path, lines, toml=None, *extra, name="orders.jsonl", journal="journal"):
    args = ["run", str(write_lines(tmp_path / name, lines)), "--journal", str(tmp_path / journal)]
    if toml is not None:
        (tmp_path / "risk.toml").write_text(toml)
        args += ["--risk", str(tmp_path / "risk.toml")]
    return CliRunner().invoke(orders_command, args + list(extra))


def match_run(tmp_path, lines):
    path = write_lines(tmp_path / "match.jsonl", lines)
    return CliRunner().invoke(match_command, [str(path)])


def ent(token, side, shares, price, firm="ACME", stock="AAPL", **kw):
    return {"action": "enter", "token": token, "firm": firm, "side": side, "shares": shares,
            "stock": stock, "price": price, **kw}


def test_orders_run_kill_reload_and_journal(tmp_path):
    toml = "[global]\nmax_order_shares = 1000\n"
    lines = [
        ent("T1", "S", 100, 1_234_500),
        ent("T2", "B", 60, 1_234_600, firm="BETA", account="B1"),
        ent("T3", "B", 1001, 1_234_600, firm="BETA", account="B1"),
        ent("T4", "B", 10, 1_000_000, firm="BETA", account="B1"),
        {"action": "kill", "account": "B1"},
        ent("T5", "B", 10, 1_000_000, firm="BETA", account="B1"),
        {"action": "unkill", "account": "B1"},
        {"action": "reload"},
        ent("T6", "B", 2000, 1_000_000, firm="BETA", account="B1"),
    ]
    path = tmp_path / "risk.toml"
    path.write_text(toml)
    # each reload line re-reads the (unchanged) file; the limits stay in force
    r = orders_run(tmp_path, lines[:8] + [{"action": "reload"}] + lines[8:], None,
                   "--risk", str(path))
    assert r.exit_code == 0, r.output
    out = [json.loads(x) for x in r.stdout.splitlines()]
    assert {"event": "risk_reject", "token": "T3", "reason": "max_qty"} in out
    assert {"event": "risk_reject", "token": "T5", "reason": "killed_account"} in out
    assert {"event": "risk_reject", "token": "T6", "reason": "max_qty"} in out
    kill = next(x for x in out if x.get("event") == "kill")
    assert kill["orders_canceled"] == 1 and kill["time_to_last_cancel_ns"] > 0
    assert {"event": "canceled", "token": "T4", "stock": "AAPL", "side": "B", "shares": 10,
            "price": 1_000_000, "reason": "S"} in out
    assert [x["ok"] for x in out if x.get("event") == "reload"] == [True, True]

    report = verify(tmp_path / "journal")
    assert report.ok, report.summary()
    records = list(iter_records(tmp_path / "journal"))
    assert records[0].kind is Kind.CONFIG
    risk = [(r.client_id, r.reason) for r in records if r.kind is Kind.RISK]
    assert risk == [("T1", "pass"), ("T2", "pass"), ("T3", "max_qty"), ("T4", "pass"),
                    ("T5", "killed_account"), ("T6", "max_qty")]
    # every order is journaled before its risk decision, and that before the engine's answer
    seqs = {(r.kind, r.client_id): r.seq for r in records}
    for token in ("T1", "T2", "T4"):
        assert seqs[(Kind.ORDER, token)] < seqs[(Kind.RISK, token)] \
            < seqs[(Kind.ACCEPTED, token)]
    fills = [(r.account, r.side, r.quantity, r.price) for r in records
             if r.kind is Kind.EXECUTED]
    assert fills == [("B1", "B", 60, 1_234_500), ("ACME", "S", 60, 1_234_500)]
    rows = list(replay(tmp_path / "journal").rows())
    assert [(x["account"], x["position"]) for x in rows] == [("ACME", -60), ("B1", 60)]


def test_orders_run_bad_risk_file_is_one_clean_error(tmp_path):
    r = orders_run(tmp_path, [ent("T1", "B", 11, 1_000_000)],
                   "[global]\nmax_order_shares = \"ten\"\n")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "global.max_order_shares: expected an integer (shares), got a string 'ten'" \
        in r.output


def test_orders_run_control_file_and_rate_with_ts(tmp_path):
    KillFile(tmp_path / "ctl").change(kill=True, account="A")
    lines = [ent("T1", "B", 1, 1_000_000, firm="A"),
             ent("T2", "B", 1, 1_000_000, firm="B", ts_ns=0),
             ent("T3", "B", 1, 1_000_000, firm="B", ts_ns=10),
             ent("T4", "B", 1, 1_000_000, firm="B", ts_ns=1_000_000_000)]
    r = orders_run(tmp_path, lines, "[global]\norders_per_second = 1\n",
                   "--control", str(tmp_path / "ctl"))
    assert r.exit_code == 0, r.output
    rejects = [json.loads(x) for x in r.stdout.splitlines() if "risk_reject" in x]
    assert [(x["token"], x["reason"]) for x in rejects] == [("T1", "killed_account"),
                                                            ("T3", "rate_account")]


@pytest.mark.parametrize("bad, error", [
    ({"action": "enter", "token": "T", "firm": "F", "side": "B", "shares": 1,
      "stock": "AAPL", "price": 1, "account": ""}, "bad value for 'account'"),
    ({"action": "kill", "bogus": 1}, "unknown field 'bogus' for kill"),
    ({"action": "enter", "token": "T", "firm": "F", "side": "B", "shares": 1,
      "stock": "AAPL", "price": 1, "ts_ns": -1}, "bad value for 'ts_ns'"),
    ({"action": "fly"}, "bad value for 'action'"),
])
def test_orders_run_bad_lines(tmp_path, bad, error):
    r = orders_run(tmp_path, [bad])
    assert r.exit_code == 1 and error in r.output and "Traceback" not in r.output


def random_flow(seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    lines, live, k = [], [], 0
    for _ in range(n):
        roll = rng.random()
        if roll < 0.65 or not live:
            k += 1
            token = f"E{k}"
            side = rng.choice("BS")
            base = 1_000_000 if side == "B" else 1_001_000
            line = ent(token, side, rng.randrange(1, 2600),
                       base + rng.randrange(-80, 81) * 100, firm=rng.choice(["AA", "BB", "CC"]),
                       stock=rng.choice(["AAPL", "MSFT"]), tif=rng.choice(["day"] * 4 + ["ioc"]))
            if rng.random() < 0.3:
                line["account"] = line["firm"] + "X"
            lines.append(line)
            live.append(token)
        elif roll < 0.85:
            lines.append({"action": "cancel", "token": rng.choice(live),
                          "shares": rng.choice([0, 0, 50])})
        else:
            k += 1
            old = rng.choice(live)
            lines.append({"action": "replace", "token": old, "new_token": f"R{k}",
                          "shares": rng.randrange(1, 2600),
                          "price": 1_000_000 + rng.randrange(-80, 81) * 100})
            live.append(f"R{k}")
    return lines


@pytest.mark.parametrize("seed", [1, 2])
def test_random_flow_equals_match_minus_risk_rejects(tmp_path, seed):
    toml = ("[global]\nmax_order_shares = 2000\nmax_position = 4000\ncollar_bp = 40\n"
            "max_order_notional = 1900000000\n[account.BBX]\nmax_gross_exposure = 3000000000\n")
    lines = random_flow(seed, 700)
    r = orders_run(tmp_path, lines, toml, "--end-of-day")
    assert r.exit_code == 0, r.output
    out = [json.loads(x) for x in r.stdout.splitlines()]
    rejects = [x for x in out if x.get("event") == "risk_reject"]
    reasons = {x["reason"] for x in rejects}
    assert {"max_qty", "max_position", "collar", "max_notional"} <= reasons, reasons
    refused = {(x["token"], x.get("new_token")) for x in rejects}
    kept = [ln for ln in lines if ln["action"] == "cancel" or
            (ln["token"], ln.get("new_token")) not in refused]
    assert len(kept) == len(lines) - len(rejects)
    kept = [{k: v for k, v in ln.items() if k != "account"} for ln in kept]
    m = CliRunner().invoke(match_command, [str(write_lines(tmp_path / "m.jsonl", kept)),
                                           "--end-of-day"])
    assert m.exit_code == 0, m.output
    expected = [json.loads(x) for x in m.stdout.splitlines()]
    got = [x for x in out if x.get("event") != "risk_reject"]
    assert got == expected
    assert sum(x.get("event") == "executed" for x in got) > 20

    # the journal: intact, one risk decision per enter/replace, positions rebuild from it
    assert verify(tmp_path / "journal").ok
    records = list(iter_records(tmp_path / "journal"))
    decisions = [r.reason for r in records if r.kind is Kind.RISK]
    assert len(decisions) == sum(ln["action"] != "cancel" for ln in lines)
    assert [d for d in decisions if d != "pass"] == [x["reason"] for x in rejects]
    accounts = {ln["token"]: ln.get("account", ln["firm"]) for ln in lines
                if ln["action"] == "enter"}
    for ln in lines:
        if ln["action"] == "replace":
            accounts[ln["new_token"]] = accounts[ln["token"]]
    expected_positions = Positions()
    for x in got:
        if x.get("event") == "executed":
            expected_positions.apply_fill(accounts[x["token"]], x["stock"], x["side"],
                                          x["shares"], x["price"])
    assert list(replay(tmp_path / "journal").rows()) == list(expected_positions.rows())
