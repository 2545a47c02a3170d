"""Configuration: the one ``Settings`` object, its schema, sections and cross-checks."""
