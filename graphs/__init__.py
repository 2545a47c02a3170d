"""The orchestration graphs: ledgers, the manager loop and the specialist loop."""
