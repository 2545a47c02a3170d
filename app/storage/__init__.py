"""The app database and its tables: runs, events, threads, the tool-call ledger,
the model-call journal and costs, and the LangGraph checkpointers."""
