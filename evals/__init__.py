"""Offline evaluation: scenarios with expected world state, run against scripted models."""
