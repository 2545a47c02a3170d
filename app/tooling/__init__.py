"""Tools beyond the bundled ones: packs, MCP servers, the registry built from them."""
