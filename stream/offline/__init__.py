"""Offline tools: replay and backtest of event files, and the traffic simulator."""
