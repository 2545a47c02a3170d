"""Governance: the policy gate and its rules, approvals, the audit chain, the kill
switch, rate limits and redaction."""
