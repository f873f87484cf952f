"""Backtest = recovery = replay: the state of a namespace at any point, rebuilt from its log."""
