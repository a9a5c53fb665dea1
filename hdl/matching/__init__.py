"""Gateware price-time matching engine (issue 4, component 3) and its pre-trade risk gate."""

from .engine import MatchingEngine
from .gated import GatedEngine
from .risk_gate import RiskGate

__all__ = ["MatchingEngine", "GatedEngine", "RiskGate"]
