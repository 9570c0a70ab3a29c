"""Run a command while CPU-bound processes keep the machine busy (`make test-busy`).

    python tests/busy.py [--burners N] -- COMMAND [ARG...]

The suite must pass on a busy machine, not only an idle one: this starts N processes that
spin on the CPU (default 2, one per core here), runs COMMAND, stops them and exits with
COMMAND's status. The elapsed time is printed at the end.
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import time


def burn(stop) -> None:
    x = 0
    while not stop.is_set():
        for i in range(100_000):
            x += i * i


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burners", type=int, default=2)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    stop = multiprocessing.Event()
    burners = [multiprocessing.Process(target=burn, args=(stop,)) for _ in range(args.burners)]
    for b in burners:
        b.start()
    start = time.monotonic()
    try:
        code = subprocess.call(command)
    finally:
        stop.set()
        for b in burners:
            b.join()
    print(f"busy run ({args.burners} CPU-bound processes): {time.monotonic() - start:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
