"""Speed and memory benchmarks: prints a markdown table and writes JSON.

python scripts/benchmark.py                 # every section, a few minutes on CPU
python scripts/benchmark.py --quick         # smaller sizes and fewer repeats, under a minute
python scripts/benchmark.py --sections layers model --json bench.json
"""

from __future__ import annotations

import argparse
import json
import platform

import torch

from segnet.benchmarks import SECTIONS, markdown_table, run_sections


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--json", default="benchmark.json", help="where to write the results")
    args = parser.parse_args()

    results = run_sections(args.sections, quick=args.quick)
    print(markdown_table(results))
    machine = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "quick": args.quick,
    }
    with open(args.json, "w") as f:
        json.dump({"machine": machine, "results": [r.as_dict() for r in results]}, f, indent=2)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
