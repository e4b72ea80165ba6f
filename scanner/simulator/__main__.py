"""``python -m scanner.simulator``: serve the simulator until SIGINT or SIGTERM."""

from scanner.simulator.standalone import main

raise SystemExit(main())
