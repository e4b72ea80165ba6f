"""Scheduling: fan-out, pagination, rate limits and retries. Knows nothing of HTTP."""
