"""Observability: JSON logs, Prometheus metrics, OpenTelemetry traces of runs, webhooks."""
