"""What a scan writes: records encoded as JSON Lines or CSV (``sinks``), into files that appear whole
or not at all (``files``), and progress and the summary table for people (``progress``)."""
