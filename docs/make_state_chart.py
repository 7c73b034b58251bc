"""Write docs/state-chart.md from the core's chart tables (run by `make docs`)."""

from pathlib import Path

from bitloot_core.chart_docs import render

target = Path(__file__).with_name("state-chart.md")
target.write_text(render(), encoding="utf-8")
print(f"wrote {target}")
