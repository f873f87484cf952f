"""Venue adapters: where orders meet a venue, simulated (sim/) or real."""
