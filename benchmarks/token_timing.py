"""
The token check's timing side channel (issue #12): how long
``TokenStore.authenticate`` takes for a wrong secret under an existing token
name and for an unknown name, measured in-process, interleaved, many times.

    python benchmarks/token_timing.py [--rounds 200000] [--provisioned 1]

Prints the median and 10th percentile of each, in nanoseconds, and their
difference.  Before #12 a wrong secret under an existing name was about
4 µs slower (one HMAC-SHA256 more); now both run the same checks.  A
measurement, not a test: the unit test ``test_wrong_secret_and_unknown_name_
take_the_same_path`` proves the paths are equal without timing.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reduct_twisted.auth.tokens import TokenStore  # noqa: E402


class _Clock:
    def seconds(self) -> float:
        return 1_700_000_000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200_000)
    parser.add_argument("--provisioned", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reduct-token-timing-") as root:
        store = TokenStore(str(Path(root) / ".auth.json"), _Clock())
        store.create("tok", {})
        for i in range(args.provisioned):
            store.provision(f"p{i}", f"provisioned secret {i}")
        cases = {"wrong secret, existing name": b"tok-" + b"0" * 32,
                 "unknown name": b"nop-" + b"0" * 32}
        times = {name: [] for name in cases}
        clock = time.perf_counter_ns
        for _ in range(args.rounds):
            for name, value in cases.items():
                start = clock()
                store.authenticate(value)
                times[name].append(clock() - start)
    medians = {}
    for name, samples in times.items():
        samples.sort()
        medians[name] = statistics.median(samples)
        print(f"{name:30} median {medians[name]:8.0f} ns   p10 {samples[len(samples) // 10]:8.0f} ns")
    first, second = medians.values()
    print(f"{'difference':30} median {first - second:8.0f} ns")


if __name__ == "__main__":
    main()
