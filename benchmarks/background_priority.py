"""How much CPU a background training campaign takes from the work in front of it.

The campaign (`scripts/campaign.py start`) runs in a session of its own at nice 19. On a kernel
that schedules sessions as groups (autogroup), nice only ranks processes inside their group, so
this measures, for each way of lowering the background's priority, the CPU seconds that busy
processes get beside it:

- `nice 19`: the background process only calls nice(19) after setsid;
- `campaign`: it calls the campaign's own `lowest_priority` (nice 19 and the group's nice 19).

Each run starts --background busy processes in new sessions and --foreground busy processes in
this one, all spinning for --seconds on the same cores, and reports each side's CPU seconds.

    python benchmarks/background_priority.py [--seconds 6] [--foreground 2] [--background 1]

Needs nothing beyond the standard library. Prints one markdown table and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from campaign import lowest_priority  # noqa: E402

# Spins for the given seconds of wall time, then prints the CPU seconds it got.
SPIN = "import os, time\nend = time.time() + {seconds}\nwhile time.time() < end: pass\nprint(sum(os.times()[:2]))"


def nice_only() -> None:
    os.nice(19)


def measure(lower: Callable[[], None], *, seconds: float, foreground: int, background: int) -> tuple[float, float]:
    """CPU seconds of the background processes (summed) and of the foreground ones (summed)."""
    code = SPIN.format(seconds=seconds)
    run = [sys.executable, "-c", code]
    behind = [
        subprocess.Popen(run, start_new_session=True, preexec_fn=lower, stdout=subprocess.PIPE, text=True)
        for _ in range(background)
    ]
    front = [subprocess.Popen(run, stdout=subprocess.PIPE, text=True) for _ in range(foreground)]
    cpu = [sum(float(p.communicate()[0]) for p in group) for group in (behind, front)]
    return cpu[0], cpu[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--foreground", type=int, default=2, help="busy processes at normal priority")
    parser.add_argument("--background", type=int, default=1, help="busy processes lowered as the campaign is")
    args = parser.parse_args()
    autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled")
    grouped = autogroup.read_text().strip() if autogroup.exists() else "absent"
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, sched_autogroup_enabled={grouped}; {args.background} background and "
        f"{args.foreground} foreground busy processes for {args.seconds:g} s"
    )
    print("| background lowered by | background CPU s | foreground CPU s | foreground share |")
    print("|---|---|---|---|")
    for name, lower in (("nice 19", nice_only), ("campaign (nice 19 and autogroup 19)", lowest_priority)):
        behind, front = measure(lower, seconds=args.seconds, foreground=args.foreground, background=args.background)
        print(f"| {name} | {behind:.2f} | {front:.2f} | {front / (behind + front):.0%} |")


if __name__ == "__main__":
    main()
