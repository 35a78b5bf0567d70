"""``rexec env``: show what this host would record about itself for a run.

The same capture goes into every run record (``host.json``), so this is the
way to see, before running, which GPUs a spec can name by UUID and what a
replay on another machine will be compared against.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from executor.host import capture_host


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rexec env`` to the parser."""
    p = sub.add_parser(
        "env",
        help="show this host's GPUs, driver, CPU, memory, OS and container engine",
        description=(
            "Capture this host as a run would record it: NVIDIA GPUs by UUID (driver, CUDA, "
            "topology) through NVML, CPU, memory and cgroup limits, OS, and the container "
            'engine. Name GPUs in a spec with `[resources] gpus = ["GPU-…"]` using the UUIDs '
            "shown. A host without an NVIDIA driver is reported, not an error."
        ),
    )
    p.add_argument(
        "--json", action="store_true", help="print the full capture as one JSON document"
    )
    p.add_argument("--no-engine", action="store_true", help="do not contact the container engine")
    p.add_argument(
        "--helper-path",
        action="store_true",
        help="print only the folder holding rexec_runtime (seed_everything), to debug a job "
        "outside its container: PYTHONPATH=$(rexec env --helper-path) python3 train.py",
    )
    p.set_defaults(handler=handle)


def engine_facts() -> dict[str, Any]:
    """The engine as the runtime reports it; never raises: `env` must work without Docker."""
    from executor.runtime import engine_info

    return engine_info()


def _size(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**30:.1f} GiB"


def summary(host: dict[str, Any]) -> str:
    """A few lines a person reads; ``--json`` has everything."""
    lines: list[str] = []
    gpu = host["gpu"]
    if gpu.get("available"):
        lines.append(
            f"GPUs: {gpu['count']}  driver {gpu.get('driver_version')}  "
            f"CUDA (driver) {gpu.get('cuda_driver_version')}"
        )
        for uuid, d in gpu["devices"].items():
            bus = (d.get("pci") or {}).get("bus_id")
            lines.append(
                f"  {uuid}  {d.get('name')}  {_size(d.get('memory_total_bytes'))}  "
                f"sm_{(d.get('compute_capability') or '?').replace('.', '')}  pci {bus}"
            )
            for mig in (d.get("mig") or {}).get("instances", []):
                lines.append(f"    {mig['uuid']}  MIG {mig.get('profile')}")
        links = sorted({p["link"] for p in gpu.get("topology", []) if p.get("link")})
        if links:
            lines.append(f"  interconnect: {', '.join(links)}")
    else:
        lines.append(f"GPUs: none ({gpu.get('reason')})")
    cpu, mem, os_ = host["cpu"], host["memory"], host["os"]
    quota = cpu["cgroup"].get("cpu_limit")
    lines.append(
        f"CPU: {cpu.get('model')}  {cpu.get('logical')} logical / {cpu.get('physical')} physical, "
        f"affinity {cpu.get('affinity')}" + (f", cgroup quota {quota:g} CPUs" if quota else "")
    )
    limit = mem.get("cgroup_limit_bytes")
    lines.append(
        f"Memory: {_size(mem.get('total_bytes'))}"
        + (f" (cgroup limit {_size(limit)})" if limit else "")
    )
    lines.append(f"OS: {os_.get('name')}  kernel {os_.get('kernel')}  ({cpu.get('architecture')})")
    engine = host["engine"]
    if engine.get("available"):
        lines.append(
            f"Engine: {engine.get('name', 'docker')} {engine.get('version')} "
            f"(API {engine.get('api_version')}), "
            f"runtimes {', '.join(engine.get('runtimes') or [])}, "
            f"storage {engine.get('storage_driver')}"
        )
    else:
        lines.append(f"Engine: unavailable ({engine.get('reason')})")
    return "\n".join(lines)


def handle(args: argparse.Namespace) -> int:
    """Print what rexec would record about this host, without running anything."""
    if args.helper_path:
        from executor.determinism import HELPER_DIR

        print(HELPER_DIR)
        return 0
    engine = (
        {"available": False, "reason": "not queried (--no-engine)"}
        if args.no_engine
        else engine_facts()
    )
    host = capture_host(engine=engine)
    if args.json:
        json.dump(host, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(summary(host))
    return 0
