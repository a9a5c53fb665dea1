"""Shared cocotb bench parts: stream driver/monitor, scoreboard, TB base, simulator runner."""
