"""Pre-trade risk: configuration (:mod:`.config`), checks, account state, rate limits and the
kill switch (:mod:`.checks`). Figures: ``python -m tickpath.host.risk.measure``."""

from .checks import BookReference, Reason, ReferencePrices, RiskChecker, TokenBucket
from .config import ConfigError, ConfigHolder, RiskConfig, load_config, parse_config

__all__ = [
    "RiskChecker", "Reason", "ReferencePrices", "BookReference", "TokenBucket",
    "RiskConfig", "ConfigError", "ConfigHolder", "load_config", "parse_config",
]
