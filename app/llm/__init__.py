"""Model access: the router seam's implementations and the providers behind it."""
