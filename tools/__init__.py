"""Typed tools the agents call, and the SQLite sandbox they act on."""
