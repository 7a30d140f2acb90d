"""What every run record and report says about the machine: versions, CPU features, kernel choices."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from lesionaug.environment import cpu_description, describe_environment, environment_record, library_versions
from lesionaug.evaluate.report import REPORT_JSON, TIMINGS_JSON, write_report

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz
flags\t\t: fpu sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni

processor\t: 1
model name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz
flags\t\t: fpu sse2
"""


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    cpu = cpu_description(path)
    # The first processor's flags, only those that choose SIMD paths, in CPU_FLAGS order.
    assert cpu == {
        "model": "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz",
        "flags": ["sse2", "sse4_1", "sse4_2", "avx", "fma", "f16c", "avx2", "avx512f", "avx512bw", "avx512vl",
                  "avx512dq", "avx512_vnni"],
    }


def test_the_record_names_versions_and_kernel_choices():
    record = environment_record()
    assert record["libraries"]["numpy"] == np.__version__ and record["libraries"]["torch"] == torch.__version__
    assert record["torch"]["num_threads"] == torch.get_num_threads()
    assert record["torch"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert library_versions()["lesionaug"] is not None
    assert record == environment_record()  # nothing timed: the same for every run on one machine
    line = describe_environment({
        "python": "3.11.7", "cpu": {"model": "X", "flags": ["sse2", "avx", "avx2"]},
        "numpy": {"blas": [{"architecture": "Haswell"}]}, "torch": {"cpu_capability": "AVX2", "num_threads": 2},
        "libraries": {"numpy": "2.4.6", "torch": "2.13.0"},
    })
    assert line == ("X (avx2); OpenBLAS kernel Haswell, torch CPU capability AVX2 with 2 threads; "
                    "Python 3.11.7, numpy 2.4.6, torch 2.13.0")


def test_reports_carry_the_environment_and_keep_timings_apart(tmp_path: Path):
    write_report(tmp_path, "quality", {"n": 1}, {}, timings={"seconds": 1.5})
    write_report(tmp_path, "evaluate", {"results": []}, {}, timings={"seconds": 2.5})
    report = json.loads((tmp_path / REPORT_JSON).read_text())
    assert report["environment"] == environment_record()
    assert "seconds" not in json.dumps(report["sections"])
    assert json.loads((tmp_path / TIMINGS_JSON).read_text()) == {"evaluate": {"seconds": 2.5}, "quality": {"seconds": 1.5}}
    assert "## Machine" in (tmp_path / "report.md").read_text()
