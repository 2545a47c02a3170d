"""The HTTP API: app factory and one router module per resource."""
