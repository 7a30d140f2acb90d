"""What checking an engine against its card costs: a graph file hashed cold, and found in the digest cache.

Writes one file of ``--mb`` MB of random bytes (a Stable Diffusion 1.5 fp16 denoiser is about 1,700 MB)
to a temporary folder, with its own temporary ``LESIONAUG_CACHE``, then times
``engine.integrity.file_digest`` on it: the first call reads and hashes the file (from the page
cache, as right after writing it) and records the digest; the repeats look it up by path, size,
mtime, ctime and inode. Prints the numbers and writes
benchmarks/results/engine_hash.json.

    python benchmarks/bench_engine_hash.py            # 512 MB
    python benchmarks/bench_engine_hash.py --mb 1700
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "engine_hash.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=512, help="size of the graph file in MB")
    parser.add_argument("--repeats", type=int, default=20, help="cached lookups to time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lesionaug-bench-hash-") as tmp:
        os.environ["LESIONAUG_CACHE"] = str(Path(tmp) / "cache")
        from lesionaug.engine.integrity import file_digest

        graph = Path(tmp) / "denoiser.onnx.data"
        with open(graph, "wb") as fh:
            for _ in range(args.mb):
                fh.write(os.urandom(1 << 20))
        start = time.perf_counter()
        digest = file_digest(graph)
        cold = time.perf_counter() - start
        warm = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            assert file_digest(graph) == digest
            warm.append(time.perf_counter() - start)
    result = {
        "benchmark": "engine_hash",
        "mb": args.mb,
        "cold_seconds": round(cold, 4),
        "cold_mb_per_second": round(args.mb / cold, 1),
        "cached_seconds_median": round(statistics.median(warm), 6),
        "repeats": args.repeats,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }
    print(f"{args.mb} MB: cold {cold:.3f} s ({result['cold_mb_per_second']} MB/s), "
          f"cached {result['cached_seconds_median'] * 1000:.3f} ms (median of {args.repeats})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
