"""A fake OpenAI-compatible model server, run as its own process on 127.0.0.1 (see app.py)."""
