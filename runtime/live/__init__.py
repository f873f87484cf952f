"""The live runtime: the engine loop on a venue's real market data, trading through ccxt or (paper) the simulated
venue; startup is recovery (the log replayed through the engine) and reconciliation with the venue."""
