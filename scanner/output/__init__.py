"""Output sinks (JSON Lines, CSV) and the run summary."""
