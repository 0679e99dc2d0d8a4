"""Start-up of the command line and of `import pointclip_hf` (issue 18 §5: `--version` < 0.5 s, `classify --help` <
1.5 s), each in a fresh process, interleaved with `hf version` (huggingface_hub's CLI) as the yardstick.

    python benchmarks/bench_startup.py [--rounds 7]
"""

import argparse
import shutil
import statistics
import subprocess
import sys

from machine import header, interleaved

COMMANDS = {
    "pointclip --version": [sys.executable, "-m", "pointclip_hf.cli", "--version"],
    "pointclip classify --help": [sys.executable, "-m", "pointclip_hf.cli", "classify", "--help"],
    "import pointclip_hf": [sys.executable, "-c", "import pointclip_hf"],
    "import pointclip_hf; PointCLIPModel": [sys.executable, "-c", "import pointclip_hf; pointclip_hf.PointCLIPModel"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    commands = dict(COMMANDS)
    if shutil.which("hf"):
        commands["hf version"] = ["hf", "version"]
    times = interleaved({name: lambda c=command: subprocess.run(c, capture_output=True, check=True)
                         for name, command in commands.items()}, args.rounds)  # fmt: skip
    print(header())
    for name, seconds in times.items():
        print(f"{name:36s} median {statistics.median(seconds):5.2f} s (min {min(seconds):.2f}, max {max(seconds):.2f})")


if __name__ == "__main__":
    main()
