"""Run a command as a grandchild of the test process, and report its own peak RSS and exit status.

Usage: ``python launch.py REPORT -- COMMAND...``. Writes the command's pid to ``REPORT.pid`` once it
runs, and ``<ru_maxrss KiB> <exit code>`` to ``REPORT`` when it ends; exits with its code.

Why not measure the scanner as a direct child: ``subprocess`` starts children with ``vfork``, and
Linux carries the parent's peak RSS across ``exec`` into the child's ``ru_maxrss`` (the test
process, serving a runaway scan, can be hundreds of MB). A child forked from this small process
starts from this process's few MB instead, so its ``ru_maxrss`` is the scanner's own.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    report, separator, *command = sys.argv[1:]
    if separator != "--" or not command:
        print("usage: launch.py REPORT -- COMMAND...", file=sys.stderr)
        return 2
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(command[0], command)
        finally:
            os._exit(127)
    with open(report + ".pid", "w") as out:
        out.write(str(pid))
    _, status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    with open(report, "w") as out:
        out.write(f"{usage.ru_maxrss} {code}")
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
