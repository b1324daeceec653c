"""python -m collectors agent … | simulate … | event … | check …"""

from __future__ import annotations

import sys

COMMANDS = ("agent", "simulate", "event", "check")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(
            f"usage: python -m collectors {{{','.join(COMMANDS)}}} [options]   (-h for help on each)",
            file=sys.stderr,
        )
        return 2
    if argv[0] == "agent":
        from collectors.agent import main as run
    elif argv[0] == "simulate":
        from collectors.simulate import main as run
    elif argv[0] == "event":
        from collectors.event import main as run
    else:
        from collectors.check import main as run
    return run(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
