"""Gateware price-time matching engine (issue 4, component 3)."""

from .engine import MatchingEngine

__all__ = ["MatchingEngine"]
