"""`skiplock bench` end to end, tiny: it finishes, writes its tables, keeps the rest.

No speed is asserted: the figures depend on the machine.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cli_helpers import run_cli

BEGIN, END = "<!-- skiplock bench: begin -->", "<!-- skiplock bench: end -->"


@pytest.mark.slow
@pytest.mark.timeout(330)
def test_quick_bench_writes_its_section_and_keeps_the_rest(server_url: str, tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    out.write_text(
        f"# Results\n\nHand-written history.\n\n{BEGIN}\nold figures\n{END}\n\nFooter.\n"
    )
    done = run_cli(
        "bench", "--quick", "--no-peers", "--jobs", "200", "--out", str(out),
        env={"DATABASE_URL": server_url},  # the tests' server: no second cluster
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    text = out.read_text()
    assert text.startswith("# Results\n\nHand-written history.\n")
    assert text.rstrip().endswith("Footer.")
    assert text.count(BEGIN) == 1 and text.count(END) == 1 and "old figures" not in text
    assert "### Drain" in text and "### Postgres ceiling" in text and "### Targets" in text
    assert re.search(r"^\| 1 \| skiplock \| default \| [0-9,]+", text, re.MULTILINE)
    assert re.search(r"^\| INSERT \+ NOTIFY \| 8 \| [0-9,]+", text, re.MULTILINE)
    assert "| pgqueuer | default | not run |" in text
    assert re.search(r"^\| companies take turns \(shipped\) \| [0-9.]+", text, re.MULTILINE)
    assert re.search(r"^\| FIFO \(before 0006\) \| [0-9,.]+", text, re.MULTILINE)
    assert re.search(r"^\| database CPU per drained job, 1 process, µs \|", text, re.MULTILINE)
