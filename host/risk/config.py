"""Risk configuration: one TOML file, validated at load, reloadable while running.

The same file will set the hardware risk gate's limits, so every limit is an integer in the units
the gateware compares (shares, ticks, ticks x shares, basis points, orders per second) and is
keyed by account (a firm on the wire), by symbol (an ITCH stock name), or by both. The documented
example is ``docs/risk.example.toml``.

Tables and keys
---------------
``[global]``
    Every limit key below (it applies to every account and symbol), and ``collar`` (bool, default
    true), ``collar_bp`` (default 500 = 5 %), ``no_reference`` (``"pass"`` or ``"reject"``,
    default ``"pass"``), ``check_price`` and ``check_duplicate_id`` (bool, default true),
    ``halted`` and ``restricted`` (lists of symbols).
``[session]``
    ``orders_per_second``, ``burst``: the order-rate limit of every session.
``[account.NAME]``
    Every limit key, ``restricted`` (symbols this account may not trade), and sub-tables
    ``[account.NAME.symbol.SYM]`` with the per-order limits and ``max_position``.
``[symbol.SYM]``
    The per-order limits, ``max_position`` (per account) and ``collar_bp``.

Limit keys (absent = no limit): ``max_order_shares`` (shares of one order), ``max_order_notional``
(shares x limit price, ticks x shares), ``max_position`` (the absolute position, in shares, an
account could reach in one symbol counting its open orders), ``max_gross_exposure`` (per account:
sum of |position| x mark plus open orders' notional), ``max_daily_loss`` (per account: the loss,
realized plus unrealized, beyond which new orders are refused), ``orders_per_second`` and
``burst`` (token bucket per account; ``burst`` defaults to ``orders_per_second``).

Every limit that applies to an order must hold, so a more specific table can only tighten; the
collar is the exception: the most specific ``collar_bp`` wins (account.symbol, symbol, account,
global), so one volatile symbol can have a wider collar.

No configuration at all (:meth:`RiskConfig.off`) turns every check off.
"""

from __future__ import annotations

import hashlib
import pathlib
import tomllib
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "RiskConfig", "ConfigError", "AccountLimits", "SymbolLimits", "load_config", "parse_config",
    "ConfigHolder", "U32", "U63", "DEFAULT_COLLAR_BP",
]

U32 = (1 << 32) - 1
U63 = (1 << 63) - 1
U16 = (1 << 16) - 1
DEFAULT_COLLAR_BP = 500

# key -> (largest value, smallest value, unit for messages)
_INT_KEYS: dict[str, tuple[int, int, str]] = {
    "max_order_shares": (U32, 0, "shares"),
    "max_order_notional": (U63, 0, "ticks x shares"),
    "max_position": (U32, 0, "shares"),
    "max_gross_exposure": (U63, 0, "ticks x shares"),
    "max_daily_loss": (U63, 0, "ticks x shares"),
    "orders_per_second": (U32, 1, "orders per second"),
    "burst": (U32, 1, "orders"),
    "collar_bp": (U16, 0, "basis points"),
}
_ORDER_KEYS = {"max_order_shares", "max_order_notional", "max_position", "collar_bp"}
_ACCOUNT_KEYS = {"max_order_shares", "max_order_notional", "max_position", "max_gross_exposure",
                 "max_daily_loss", "orders_per_second", "burst", "collar_bp", "restricted",
                 "symbol"}
_GLOBAL_KEYS = (_ACCOUNT_KEYS - {"symbol"}) | {"collar", "no_reference", "check_price",
                                                "check_duplicate_id", "halted"}
_SESSION_KEYS = {"orders_per_second", "burst"}
_TOP_KEYS = ("global", "session", "account", "symbol")


class ConfigError(ValueError):
    """A risk configuration that cannot be used. ``errors`` lists every problem, each naming
    the key (``account.ACME.max_position``) and what is wrong with it."""

    def __init__(self, errors: list[str], source: str = ""):
        self.errors = list(errors)
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "; ".join(self.errors))


@dataclass(frozen=True)
class SymbolLimits:
    """Per-order limits and the position limit of one table (None: not set)."""
    max_order_shares: int | None = None
    max_order_notional: int | None = None
    max_position: int | None = None
    collar_bp: int | None = None


@dataclass(frozen=True)
class AccountLimits:
    max_order_shares: int | None = None
    max_order_notional: int | None = None
    max_position: int | None = None
    max_gross_exposure: int | None = None
    max_daily_loss: int | None = None
    orders_per_second: int | None = None
    burst: int | None = None
    collar_bp: int | None = None
    restricted: frozenset[str] = frozenset()
    symbols: dict[str, SymbolLimits] = field(default_factory=dict)


@dataclass(frozen=True)
class RiskConfig:
    """A validated configuration. ``enabled`` is False only for :meth:`off`."""
    enabled: bool = True
    glob: AccountLimits = field(default_factory=AccountLimits)
    collar: bool = True
    collar_bp: int = DEFAULT_COLLAR_BP
    no_reference_reject: bool = False
    check_price: bool = True
    check_duplicate_id: bool = True
    halted: frozenset[str] = frozenset()
    session_rate: int | None = None
    session_burst: int | None = None
    accounts: dict[str, AccountLimits] = field(default_factory=dict)
    symbols: dict[str, SymbolLimits] = field(default_factory=dict)
    digest: str = ""
    source: str = ""

    @classmethod
    def off(cls) -> RiskConfig:
        """No configuration: every check off (the kill switch still works)."""
        return cls(enabled=False, collar=False, check_price=False, check_duplicate_id=False,
                   source="(none)")

    def as_dict(self) -> dict[str, Any]:
        """The effective limits as plain values (``tickpath risk show --json``)."""
        def limits(obj) -> dict[str, Any]:
            out = {}
            for name in ("max_order_shares", "max_order_notional", "max_position",
                         "max_gross_exposure", "max_daily_loss", "orders_per_second", "burst",
                         "collar_bp"):
                value = getattr(obj, name, None)
                if value is not None:
                    out[name] = value
            restricted = getattr(obj, "restricted", None)
            if restricted:
                out["restricted"] = sorted(restricted)
            return out

        return {
            "enabled": self.enabled, "source": self.source, "digest": self.digest,
            "global": {**limits(self.glob),
                       "collar": self.collar, "collar_bp": self.collar_bp,
                       "no_reference": "reject" if self.no_reference_reject else "pass",
                       "check_price": self.check_price,
                       "check_duplicate_id": self.check_duplicate_id,
                       "halted": sorted(self.halted)},
            "session": {k: v for k, v in (("orders_per_second", self.session_rate),
                                          ("burst", self.session_burst)) if v is not None},
            "account": {name: {**limits(a),
                               "symbol": {s: limits(sl) for s, sl in sorted(a.symbols.items())}}
                        for name, a in sorted(self.accounts.items())},
            "symbol": {name: limits(s) for name, s in sorted(self.symbols.items())},
        }


# --- validation ------------------------------------------------------------------------------

def _is_symbol(name: Any) -> bool:
    return (isinstance(name, str) and 1 <= len(name) <= 8 and name.isascii()
            and name.isprintable() and " " not in name)


def _is_account(name: Any) -> bool:
    return (isinstance(name, str) and 1 <= len(name) <= 16 and name.isascii()
            and name.isprintable() and " " not in name)


class _Checker:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, key: str, problem: str) -> None:
        self.errors.append(f"{key}: {problem}")

    def table(self, key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.error(key, f"expected a table, got {_kind(value)}")
            return {}
        return value

    def integer(self, key: str, name: str, value: Any) -> int | None:
        top, low, unit = _INT_KEYS[name]
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(key, f"expected an integer ({unit}), got {_kind(value)} {value!r}")
            return None
        if not low <= value <= top:
            self.error(key, f"{value} is out of range: expected {low} to {top} ({unit})")
            return None
        return value

    def boolean(self, key: str, value: Any) -> bool | None:
        if not isinstance(value, bool):
            self.error(key, f"expected true or false, got {_kind(value)} {value!r}")
            return None
        return value

    def symbols(self, key: str, value: Any) -> frozenset[str]:
        if not isinstance(value, list):
            self.error(key, f"expected a list of symbols, got {_kind(value)}")
            return frozenset()
        out = set()
        for i, item in enumerate(value):
            if not _is_symbol(item):
                self.error(f"{key}[{i}]", f"{item!r} is not a symbol (1 to 8 ASCII characters, "
                           "no spaces)")
            else:
                out.add(item)
        return frozenset(out)

    def limits(self, key: str, body: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
        """The integer limits and ``restricted`` of one table; unknown keys are errors."""
        out: dict[str, Any] = {}
        for name, value in body.items():
            path = f"{key}.{name}"
            if name not in allowed:
                self.error(path, f"unknown key (expected one of {', '.join(sorted(allowed))})")
            elif name in _INT_KEYS:
                out[name] = self.integer(path, name, value)
            elif name == "restricted":
                out[name] = self.symbols(path, value)
        if out.get("burst") is not None and "orders_per_second" not in body:
            self.error(f"{key}.burst", "set without orders_per_second")
        if out.get("orders_per_second") is not None and out.get("burst") is None \
                and "burst" not in body:
            out["burst"] = out["orders_per_second"]
        return out


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def _symbol_limits(c: _Checker, key: str, body: Any) -> SymbolLimits:
    fields = c.limits(key, c.table(key, body), _ORDER_KEYS)
    return SymbolLimits(**{k: v for k, v in fields.items() if v is not None})


def _account_limits(c: _Checker, key: str, body: dict[str, Any],
                    allowed: set[str]) -> AccountLimits:
    syms = body.get("symbol") if "symbol" in allowed else None
    fields = c.limits(key, {k: v for k, v in body.items() if k != "symbol" or syms is None},
                      allowed)
    symbols: dict[str, SymbolLimits] = {}
    if syms is not None:
        for name, sub in c.table(f"{key}.symbol", syms).items():
            if not _is_symbol(name):
                c.error(f"{key}.symbol.{name}", "not a symbol (1 to 8 ASCII characters)")
                continue
            symbols[name] = _symbol_limits(c, f"{key}.symbol.{name}", sub)
    return AccountLimits(symbols=symbols,
                         **{k: v for k, v in fields.items() if v is not None and k != "symbol"})


def parse_config(text: str, source: str = "") -> RiskConfig:
    """Validate TOML text; raise :class:`ConfigError` listing every problem."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"not valid TOML: {e}"], source) from None
    c = _Checker()
    for key in doc:
        if key not in _TOP_KEYS:
            c.error(key, f"unknown table (expected one of {', '.join(_TOP_KEYS)})")

    g = c.table("global", doc.get("global", {}))
    glob = _account_limits(c, "global", g, _GLOBAL_KEYS)
    options: dict[str, Any] = {}
    for name in ("collar", "check_price", "check_duplicate_id"):
        if name in g:
            value = c.boolean(f"global.{name}", g[name])
            if value is not None:
                options[name] = value
    if glob.collar_bp is not None:
        options["collar_bp"] = glob.collar_bp
    if "no_reference" in g:
        value = g["no_reference"]
        if value not in ("pass", "reject"):
            c.error("global.no_reference", f"expected \"pass\" or \"reject\", got {value!r}")
        else:
            options["no_reference_reject"] = value == "reject"
    halted = c.symbols("global.halted", g["halted"]) if "halted" in g else frozenset()

    s = c.limits("session", c.table("session", doc.get("session", {})), _SESSION_KEYS)

    accounts: dict[str, AccountLimits] = {}
    for name, body in c.table("account", doc.get("account", {})).items():
        key = f"account.{name}"
        if not _is_account(name):
            c.error(key, "not an account name (1 to 16 ASCII characters, no spaces)")
            continue
        accounts[name] = _account_limits(c, key, c.table(key, body), _ACCOUNT_KEYS)

    symbols: dict[str, SymbolLimits] = {}
    for name, body in c.table("symbol", doc.get("symbol", {})).items():
        if not _is_symbol(name):
            c.error(f"symbol.{name}", "not a symbol (1 to 8 ASCII characters, no spaces)")
            continue
        symbols[name] = _symbol_limits(c, f"symbol.{name}", body)

    if c.errors:
        raise ConfigError(c.errors, source)
    return RiskConfig(glob=glob, halted=halted, session_rate=s.get("orders_per_second"),
                      session_burst=s.get("burst"), accounts=accounts, symbols=symbols,
                      digest=hashlib.sha256(text.encode()).hexdigest(), source=source,
                      **options)


def load_config(path: str | pathlib.Path) -> RiskConfig:
    """Read and validate a TOML file; raise :class:`ConfigError` (also for an unreadable file)."""
    path = pathlib.Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(["no such file"], str(path)) from None
    except IsADirectoryError:
        raise ConfigError(["is a directory"], str(path)) from None
    except OSError as e:
        raise ConfigError([e.strerror or str(e)], str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError([f"not UTF-8 text (byte {e.start})"], str(path)) from None
    return parse_config(text, str(path))


class ConfigHolder:
    """The live configuration and where it came from. :meth:`reload` re-reads the file; if the
    new file is bad, the old configuration stays in force and the errors are returned."""

    def __init__(self, path: str | pathlib.Path | None = None):
        self.path = None if path is None else pathlib.Path(path)
        self.config = RiskConfig.off() if self.path is None else load_config(self.path)

    def reload(self) -> tuple[bool, list[str]]:
        """``(True, [])`` when the new file is in force, else ``(False, errors)``."""
        if self.path is None:
            return False, ["no configuration file to reload"]
        try:
            self.config = load_config(self.path)
        except ConfigError as e:
            return False, e.errors
        return True, []
