"""Run every benchmark in one process and print their ratios (``make bench``).

Each benchmark measures bitloot against a baseline in the same run, so the ratios hold
on any machine; absolute numbers are printed for context only. ``--quick`` runs fewer
rounds.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

HERE = Path(__file__).parent
BENCHMARKS = [
    "bench_chart",
    "bench_ipn",
    "bench_store",
    "bench_postgres",
    "bench_webhook",
    "bench_flood",
]


def _load(name: str) -> object:
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def main() -> None:
    quick = "--quick" in sys.argv
    for name in BENCHMARKS:
        if not (HERE / f"{name}.py").exists():
            continue
        print(f"\n== {name}")
        module = _load(name)
        run = module.main  # type: ignore[attr-defined]
        parameters = inspect.signature(run).parameters
        if "quick" in parameters:
            run(quick=quick)
        elif "argv" in parameters:
            run(["--quick"] if quick else [])
        else:
            run()


if __name__ == "__main__":
    main()
