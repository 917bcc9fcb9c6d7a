"""Describes the machine, the build and the tools of a benchmark run, for the results page."""

import os
import platform
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path


def output_of(command, stream="stdout"):
    """Returns the stripped output of `command`, or "unknown" when it cannot run."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = result.stdout if stream == "stdout" else result.stderr
    return text.strip() or "unknown"


def load_average():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_gib():
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 2**20
    return 0.0


def cmake_cache(build_dir):
    values = {}
    cache = Path(build_dir) / "CMakeCache.txt"
    if cache.exists():
        for line in cache.read_text().splitlines():
            match = re.match(r"([A-Za-z_]+):[A-Z]+=(.*)", line)
            if match:
                values[match.group(1)] = match.group(2)
    return values


def git_commit(root):
    commit = output_of(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"])
    if commit == "unknown":
        return "no commit yet"
    dirty = output_of(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"])
    return commit + (" with uncommitted changes" if dirty != "unknown" else "")


def describe(root, build_dir):
    cache = cmake_cache(build_dir)
    compiler = cache.get("CMAKE_CXX_COMPILER", "c++")
    build_type = cache.get("CMAKE_BUILD_TYPE", "unknown")
    flags = " ".join(
        f for f in (cache.get("CMAKE_CXX_FLAGS", ""),
                    cache.get(f"CMAKE_CXX_FLAGS_{build_type.upper()}", "")) if f)
    aiohttp = output_of(["/usr/bin/python3", "-c", "import aiohttp; print(aiohttp.__version__)"])
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory": f"{memory_gib():.1f} GiB",
        "kernel": platform.release(),
        "os": output_of(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "compiler": output_of([compiler, "--version"]).splitlines()[0],
        "build_type": build_type,
        "flags": flags or "(none)",
        "commit": git_commit(root),
        "openssl": output_of(["openssl", "version"]),
        "wrk": output_of(["wrk", "--version"]).splitlines()[0].split(" [")[0],
        "node": output_of(["node", "--version"]),
        "python": output_of(["/usr/bin/python3", "--version"]) + f", aiohttp {aiohttp}",
        "perf": output_of(["perf", "--version"]),
        "load_before": load_average(),
    }
