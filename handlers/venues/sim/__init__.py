"""The simulated venue: deterministic matching against the history being replayed."""
