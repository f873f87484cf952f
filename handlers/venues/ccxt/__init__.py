"""The venue adapter for real venues through ccxt: mapping, error classes, the REST adapter and the market feed."""
