"""The measured clients. Each runs alone in its own process: ``python -m benchmarks.clients NAME``.

The job (endpoints, keys, output path, options) comes as JSON on stdin; the result is one JSON line
on stdout: ``wall_s``, ``records``, ``cpu_s`` and ``peak_rss_mb`` (``getrusage`` of this process,
taken when the client is done, before its output is checked), ``errors``, and ``digest``, the
content digest (``scanner.simulator.digest``) of the JSON Lines it wrote.
"""
