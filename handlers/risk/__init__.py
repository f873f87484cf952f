"""Pre-trade risk: the limits (limits.py), the rules (rules.py) and the engine that runs them (engine.py)."""
