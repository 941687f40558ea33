"""Run a Python program at the test suite's clock (``TEST_CLOCK_START`` moves the tests' clock; a process a test
starts would otherwise run at the machine's): ``python -m tests.clocked ISO-TIME -c CODE ARGS…`` or
``python -m tests.clocked ISO-TIME path/to/script.py ARGS…``."""

from __future__ import annotations

import datetime as dt
import runpy
import sys

import time_machine


def command(*program: str) -> list[str]:
    """The argv that runs ``program`` (``-c CODE args`` or ``script args``) at this process's portal clock, ticking."""
    from app import clock

    return [sys.executable, "-m", "tests.clocked", clock.utcnow().replace(tzinfo=dt.UTC).isoformat(), *program]


def main() -> None:
    start, program = sys.argv[1], sys.argv[2:]
    with time_machine.travel(start, tick=True):
        if program[0] == "-c":
            sys.argv = ["-c", *program[2:]]
            exec(compile(program[1], "<clocked>", "exec"), {"__name__": "__main__"})  # noqa: S102 - the test's code
        else:
            sys.argv = program
            runpy.run_path(program[0], run_name="__main__")


if __name__ == "__main__":
    main()
