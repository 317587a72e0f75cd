"""Training speed beside other work: OpenMP's default (spinning) wait policy against PASSIVE.

The training campaign trains at the lowest priority on cores that development work also uses.
A PyTorch step runs on a team of OpenMP threads that meet at barriers; with the default policy
a thread that arrives first spins, and when its partner is descheduled by the other work, the
step waits for the scheduler. PASSIVE threads sleep at the barrier instead.

Each measurement is a separate process (the policy is read when OpenMP starts) training the
campaign's distillation step, srvgg_medium at x4 on batch 16 of 32x32 LR crops with L1 and
AdamW, for --seconds, at nice 19, with --threads OpenMP threads; --load busy processes
(plain Python loops at normal priority) stand for the development work beside it. Policies
alternate over --rounds rounds.

    python benchmarks/omp_contention.py [--rounds 2] [--seconds 10] [--threads 2] [--load 1]

Needs the train extra. Prints one markdown table (steps/s per round) and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]

STEP_LOOP = """
import time, torch
from img2img.nets import build_net
torch.manual_seed(0)
net = build_net("srvgg_medium", scale=4)
optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
lr, hr = torch.rand(16, 3, 32, 32), torch.rand(16, 3, 128, 128)
def step():
    optimizer.zero_grad()
    torch.nn.functional.l1_loss(net(lr), hr).backward()
    optimizer.step()
for _ in range(3):
    step()
start, steps = time.perf_counter(), 0
while time.perf_counter() - start < {seconds}:
    step()
    steps += 1
print(steps / (time.perf_counter() - start))
"""


def measure(policy: str | None, *, seconds: float, threads: int) -> float:
    environment = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    environment |= {"OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPOSITORY)}
    if policy is not None:
        environment["OMP_WAIT_POLICY"] = policy
    command = ["nice", "-n", "19", sys.executable, "-c", STEP_LOOP.format(seconds=seconds)]
    result = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
    return float(result.stdout.strip())


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--load", type=int, default=1, help="busy processes beside the training")
    args = parser.parse_args()

    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    try:
        rows = {"default (spin)": [], "PASSIVE": []}
        for _ in range(args.rounds):
            rows["default (spin)"].append(measure(None, seconds=args.seconds, threads=args.threads))
            rows["PASSIVE"].append(measure("PASSIVE", seconds=args.seconds, threads=args.threads))
    finally:
        for process in busy:
            process.kill()
    print(f"{cpu_name()}, {os.cpu_count()} cores; {args.threads} OpenMP threads at nice 19 beside {args.load} busy process(es)")
    print()
    print("| OMP_WAIT_POLICY | " + " | ".join(f"round {i + 1}" for i in range(args.rounds)) + " | median |")
    print("|---|" + "---|" * (args.rounds + 1))
    for name, values in rows.items():
        cells = " | ".join(f"{value:.2f}" for value in values)
        print(f"| {name} | {cells} | {statistics.median(values):.2f} steps/s |")


if __name__ == "__main__":
    main()
