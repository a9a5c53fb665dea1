"""Pre-trade risk: configuration validation and reload, each check at its exact boundary, token
buckets with injected time, kill switch state."""

import pytest

from tickpath.host.risk import (
    ConfigError,
    ConfigHolder,
    Reason,
    ReferencePrices,
    RiskChecker,
    TokenBucket,
    load_config,
    parse_config,
)
from tickpath.host.risk.config import RiskConfig
from tickpath.protocol.records import Side  # noqa: E402

B, S = Side.Buy, Side.Sell


def checker(toml: str = "", ref: ReferencePrices | None = None) -> RiskChecker:
    return RiskChecker(parse_config(toml), ref)


_n = iter(range(10**9))


def enter(r: RiskChecker, shares=100, price=1_000_000, side=B, account="A", symbol="AAPL",
          session="s", market=False, now=0, token=None):
    token = token or f"T{next(_n)}"
    return r.check_enter(account, session, token, symbol, side, shares, price, market, now)


# --- configuration --------------------------------------------------------------------------

def test_example_file_loads(tmp_path):
    import pathlib
    config = load_config(pathlib.Path(__file__).parent.parent / "docs" / "risk.example.toml")
    assert config.glob.max_order_shares == 50_000
    assert config.accounts["ACME"].symbols["AAPL"].max_position == 20_000
    assert config.symbols["GME"].collar_bp == 1_500
    assert config.session_rate == 5_000 and config.session_burst == 500


@pytest.mark.parametrize("toml, error", [
    ("[global]\nmax_order_shares = -1", "global.max_order_shares: -1 is out of range"),
    ("[global]\nmax_order_shares = 1.5", "global.max_order_shares: expected an integer"),
    ("[global]\nmax_order_shares = true", "global.max_order_shares: expected an integer"),
    ("[global]\nmax_order_shares = 4294967296", "global.max_order_shares: 4294967296 is out"),
    ("[global]\nmax_shares = 5", "global.max_shares: unknown key"),
    ("[globl]\n", "globl: unknown table"),
    ("[account.ACME]\nhalted = []", "account.ACME.halted: unknown key"),
    ("[account.ACME.symbol.AAPL]\nmax_daily_loss = 5",
     "account.ACME.symbol.AAPL.max_daily_loss: unknown key"),
    ("[symbol.TOOLONGNAME]\ncollar_bp = 5", "symbol.TOOLONGNAME: not a symbol"),
    ("[global]\nno_reference = \"maybe\"", "global.no_reference: expected \"pass\" or"),
    ("[global]\ncollar = 1", "global.collar: expected true or false"),
    ("[global]\nrestricted = [\"A B\"]", "global.restricted[0]: 'A B' is not a symbol"),
    ("[session]\nburst = 5", "session.burst: set without orders_per_second"),
    ("[session]\norders_per_second = 0", "session.orders_per_second: 0 is out of range"),
    ("global = 3", "global: expected a table"),
    ("[global\n", "not valid TOML"),
])
def test_bad_config_names_key_and_problem(toml, error):
    with pytest.raises(ConfigError) as info:
        parse_config(toml, "r.toml")
    assert any(e.startswith(error) for e in info.value.errors), info.value.errors
    assert str(info.value).startswith("r.toml: ")


def test_every_problem_reported_at_once():
    with pytest.raises(ConfigError) as info:
        parse_config("[global]\nmax_position = -1\nbogus = 1\n[account.X]\nburst = 0\n")
    assert len(info.value.errors) == 3


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")


def test_reload_keeps_old_config_on_error(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text("[global]\nmax_order_shares = 100\n")
    holder = ConfigHolder(path)
    assert holder.config.glob.max_order_shares == 100
    path.write_text("[global]\nmax_order_shares = 200\n")
    assert holder.reload() == (True, [])
    assert holder.config.glob.max_order_shares == 200
    path.write_text("[global]\nmax_order_shares = -5\n")
    ok, errors = holder.reload()
    assert not ok and errors[0].startswith("global.max_order_shares")
    assert holder.config.glob.max_order_shares == 200


def test_no_config_every_check_off():
    r = RiskChecker(None)
    assert r.config == RiskConfig.off()
    # an absurd order passes: nothing is checked
    assert enter(r, shares=10**9, price=7) is None
    assert enter(r, token="SAME") is None and enter(r, token="SAME") is None


def test_set_config_applies_new_limits():
    r = checker("[global]\nmax_order_shares = 100")
    assert enter(r, shares=101) is Reason.MAX_QTY
    r.set_config(parse_config("[global]\nmax_order_shares = 200"))
    assert enter(r, shares=101) is None


# --- per-order checks at their boundaries ---------------------------------------------------

def test_max_qty_boundary_strictest_table_wins():
    r = checker("[global]\nmax_order_shares = 1000\n[account.A]\nmax_order_shares = 500\n"
                "[symbol.MSFT]\nmax_order_shares = 2000")
    assert enter(r, shares=500) is None
    assert enter(r, shares=501) is Reason.MAX_QTY
    assert enter(r, shares=1000, account="B") is None
    assert enter(r, shares=1001, account="B") is Reason.MAX_QTY
    assert enter(r, shares=1001, account="B", symbol="MSFT") is Reason.MAX_QTY


def test_max_notional_boundary():
    r = checker("[global]\nmax_order_notional = 100000000\ncollar = false")
    assert enter(r, shares=100, price=1_000_000) is None             # exactly 1e8
    assert enter(r, shares=100, price=1_000_100) is Reason.MAX_NOTIONAL
    assert enter(r, shares=101, price=1_000_000) is Reason.MAX_NOTIONAL


def test_market_order_notional_uses_reference():
    ref = ReferencePrices()
    r = checker("[global]\nmax_order_notional = 100000000", ref)
    assert enter(r, shares=10**6, price=0, market=True) is None       # no reference: pass
    ref.set_bbo("AAPL", 990_000, 1_000_000)
    assert enter(r, shares=100, market=True, price=0) is None
    assert enter(r, shares=101, market=True, price=0) is Reason.MAX_NOTIONAL
    assert enter(r, shares=101, market=True, price=0, side=S) is None   # 101 x 990000


def test_collar_boundaries():
    ref = ReferencePrices()
    ref.set_bbo("AAPL", 1_000_000, 1_000_000)
    r = checker("[global]\ncollar_bp = 500", ref)
    assert enter(r, price=1_050_000) is None                         # ask + 5.00 %
    assert enter(r, price=1_050_100) is Reason.COLLAR
    assert enter(r, price=950_000, side=S) is None                   # bid - 5.00 %
    assert enter(r, price=949_900, side=S) is Reason.COLLAR
    assert enter(r, price=10_000) is None                            # passive buy: no collar


def test_collar_default_500bp_and_reference_order():
    ref = ReferencePrices()
    r = checker("", ref)                                              # a file: collar on
    assert enter(r, price=9_000_000) is None                         # no reference: pass
    ref.trade("AAPL", 1_000_000)                                     # last trade only
    assert enter(r, price=1_050_000) is None
    assert enter(r, price=1_050_100) is Reason.COLLAR
    ref.set_bbo("AAPL", 1_990_000, 2_000_000)                        # BBO beats last trade
    assert enter(r, price=2_100_000) is None
    assert enter(r, price=2_100_100) is Reason.COLLAR
    assert enter(r, price=1_890_500, side=S) is None                 # 1990000 x 0.95
    assert enter(r, price=1_890_400, side=S) is Reason.COLLAR


def test_collar_most_specific_wins_and_can_be_off():
    ref = ReferencePrices()
    ref.set_bbo("GME", 1_000_000, 1_000_000)
    r = checker("[global]\ncollar_bp = 100\n[symbol.GME]\ncollar_bp = 1000", ref)
    assert enter(r, symbol="GME", price=1_100_000) is None
    assert enter(r, symbol="GME", price=1_100_100) is Reason.COLLAR
    r = checker("[global]\ncollar = false", ref)
    assert enter(r, symbol="GME", price=9_000_000) is None


def test_no_reference_reject():
    ref = ReferencePrices()
    r = checker("[global]\nno_reference = \"reject\"", ref)
    assert enter(r) is Reason.NO_REFERENCE
    assert enter(r, market=True, price=0) is Reason.NO_REFERENCE
    ref.trade("AAPL", 1_000_000)
    assert enter(r) is None


def test_price_validity():
    r = checker("[global]\ncollar = false")
    assert enter(r, price=10_000) is None
    assert enter(r, price=9_900) is Reason.PRICE_INVALID
    assert enter(r, price=1_000_050) is Reason.PRICE_INVALID
    assert enter(r, price=1_999_999_900) is None
    assert enter(r, price=2_000_000_000) is Reason.PRICE_INVALID
    assert enter(r, price=0, market=True) is None
    r = checker("[global]\ncheck_price = false\ncollar = false")
    assert enter(r, price=9_900) is None


def test_restricted_and_halted():
    ref = ReferencePrices()
    r = checker("[global]\nhalted = [\"HALT\"]\nrestricted = [\"BAD\"]\n"
                "[account.A]\nrestricted = [\"MINE\"]", ref)
    assert enter(r, symbol="HALT") is Reason.HALTED
    assert enter(r, symbol="BAD") is Reason.RESTRICTED
    assert enter(r, symbol="MINE") is Reason.RESTRICTED
    assert enter(r, symbol="MINE", account="B") is None
    r.halt("AAPL")
    assert enter(r) is Reason.HALTED
    r.resume("AAPL")
    assert enter(r) is None
    ref.halted.add("AAPL")                                           # the feed's H message
    assert enter(r) is Reason.HALTED


def test_duplicate_client_order_id():
    r = checker()
    assert enter(r, token="X1") is None
    assert enter(r, token="X1") is Reason.DUPLICATE_ID
    assert enter(r, token="X1", account="B") is None                 # per account
    assert enter(r, token="X2", shares=0, price=5) is Reason.PRICE_INVALID
    assert enter(r, token="X2") is Reason.DUPLICATE_ID               # used, even if refused
    assert r.check_replace("A", "s", "X1", "AAPL", B, 100, 1_000_000, 50,
                           1_000_000, 0) is Reason.DUPLICATE_ID


# --- per-account checks -----------------------------------------------------------------------

def test_position_limit_counts_open_orders_and_fills():
    r = checker("[global]\nmax_position = 1000\ncollar = false")
    r.on_fill("A", "AAPL", B, 300, 1_000_000)
    r.on_open("A", "AAPL", B, 200, 1_000_000)
    assert r.position("A", "AAPL") == (300, 200, 0)
    assert enter(r, shares=500) is None                              # 300 + 200 + 500
    assert enter(r, shares=501) is Reason.MAX_POSITION
    # sells: open sells + shares - position <= 1000
    assert enter(r, side=S, shares=1300) is None
    assert enter(r, side=S, shares=1301) is Reason.MAX_POSITION
    r.on_open("A", "AAPL", S, 300, 1_000_000)
    assert enter(r, side=S, shares=1001) is Reason.MAX_POSITION
    assert enter(r, side=S, shares=1000) is None
    # a replace counts its new size instead of the old open size
    assert r.check_replace("A", "s", "R1", "AAPL", B, 200, 1_000_000, 700, 1_000_000,
                           0) is None
    assert r.check_replace("A", "s", "R2", "AAPL", B, 200, 1_000_000, 701, 1_000_000,
                           0) is Reason.MAX_POSITION
    r.on_reduce("A", "AAPL", B, 200, 1_000_000)
    assert enter(r, shares=700) is None


def test_position_limit_per_account_symbol():
    r = checker("[global]\nmax_position = 1000\ncollar = false\n"
                "[account.A.symbol.AAPL]\nmax_position = 10")
    assert enter(r, shares=10) is None
    assert enter(r, shares=11) is Reason.MAX_POSITION
    assert enter(r, shares=11, symbol="MSFT") is None
    assert enter(r, shares=11, account="B") is None


def test_gross_exposure_boundary():
    ref = ReferencePrices()
    ref.set_bbo("AAPL", 990_000, 1_010_000)                          # mark 1,000,000
    r = checker("[global]\nmax_gross_exposure = 1000000000\ncollar = false", ref)
    r.on_fill("A", "AAPL", S, 400, 1_000_000)                        # |-400| x 1e6 = 4e8
    r.on_open("A", "MSFT", B, 100, 2_000_000)                        # open 2e8
    assert r.exposure2("A")[0] == 2 * 600_000_000
    assert enter(r, symbol="IBM", shares=400, price=1_000_000) is None   # exactly 1e9
    assert enter(r, symbol="IBM", shares=401, price=1_000_000) is Reason.MAX_GROSS_EXPOSURE
    ref.set_bbo("AAPL", 990_000, 1_010_100)                          # mark 1,000,050
    assert enter(r, symbol="IBM", shares=400, price=1_000_000) is Reason.MAX_GROSS_EXPOSURE


def test_daily_loss_realized_plus_unrealized():
    ref = ReferencePrices()
    r = checker("[global]\nmax_daily_loss = 100000\ncollar = false", ref)
    r.on_fill("A", "AAPL", B, 100, 1_000_000)
    r.on_fill("A", "AAPL", S, 50, 999_000)           # realized -50,000
    ref.trade("AAPL", 999_000)                       # unrealized 50 x -1,000 = -50,000
    assert r.exposure2("A")[1] == -200_000
    assert enter(r) is None                          # loss exactly 100,000
    ref.set_bbo("AAPL", 998_900, 999_000)            # mark 998,950: one more 2,500 lost
    assert enter(r) is Reason.DAILY_LOSS
    assert enter(r, account="B") is None


# --- rate limits ------------------------------------------------------------------------------

def test_token_bucket_exact_refill():
    b = TokenBucket(rate=10, burst=3, now_ns=0)
    assert [b.take(0) for _ in range(4)] == [True, True, True, False]
    assert not b.take(99_999_999)                    # 0.0999... tokens
    assert b.take(100_000_000)                       # 1 token after 100 ms
    assert not b.take(100_000_000)
    assert not b.take(50_000_000)                    # time going back refills nothing
    assert [b.take(10**10) for _ in range(4)] == [True, True, True, False]   # capped at burst


def test_rate_limits_per_account_and_session():
    r = checker("[global]\norders_per_second = 2\nburst = 2\ncollar = false\n"
                "[session]\norders_per_second = 3\nburst = 3")
    assert enter(r, account="A", session="s1", now=0) is None
    assert enter(r, account="A", session="s1", now=0) is None
    assert enter(r, account="A", session="s1", now=0) is Reason.RATE_ACCOUNT
    assert enter(r, account="B", session="s1", now=0) is None        # session's third
    assert enter(r, account="C", session="s1", now=0) is Reason.RATE_SESSION
    assert enter(r, account="C", session="s2", now=0) is None
    assert enter(r, account="A", session="s2", now=499_999_999) is Reason.RATE_ACCOUNT
    assert enter(r, account="A", session="s2", now=500_000_000) is None
    # a refused order takes no token
    assert enter(r, account="D", session="s3", shares=0, price=1) is Reason.PRICE_INVALID
    assert [enter(r, account="D", session="s3") for _ in range(3)] == [
        None, None, Reason.RATE_ACCOUNT]


def test_reload_keeps_rate_bucket_when_unchanged():
    text = "[global]\norders_per_second = 1\nburst = 1\ncollar = false"
    r = checker(text)
    assert enter(r) is None
    r.set_config(parse_config(text + "\nmax_order_shares = 1000"))
    assert enter(r) is Reason.RATE_ACCOUNT
    r.set_config(parse_config(text.replace("burst = 1", "burst = 2")))
    assert enter(r) is None                                          # new bucket, full


# --- kill switch state ------------------------------------------------------------------------

def test_kill_scopes_block_even_without_config():
    r = RiskChecker(None)
    r.kill(account="A")
    assert enter(r, account="A") is Reason.KILLED_ACCOUNT
    assert enter(r, account="B") is None
    r.kill(session="s9")
    assert enter(r, account="B", session="s9") is Reason.KILLED_SESSION
    r.kill()
    assert enter(r, account="B") is Reason.KILLED_GLOBAL
    r.unkill()
    r.unkill(account="A")
    assert enter(r, account="A") is None
    assert enter(r, account="A", session="s9") is Reason.KILLED_SESSION
