"""Regenerate docs/dev/reliability.md: what the reliability suites try, and what happened.

Runs pytest on the reliability test files (parity with sam2's predictor, fuzzed input,
the defects of issue 9, injected faults, widget teardown/robustness/first use — whichever
exist) with ``--junitxml`` and hypothesis statistics, then writes one table row per test:
file, what was tried (the test's docstring, first paragraph), result and time, plus the
number of hypothesis examples and their outcomes.

Usage (from the repository root; the widget tests need a display)::

    xvfb-run -a .venv/bin/python scripts/reliability_report.py
    python scripts/reliability_report.py --output /tmp/reliability.md -- -x

Arguments after ``--`` go to pytest.  The exit code is pytest's, and the page is written
whatever the result (failures are part of the report).
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = (
    "tests/test_parity_sam2.py",
    "tests/test_fuzz_engine.py",
    "tests/test_defects_core.py",
    "tests/test_faults.py",
    "tests/test_widget_teardown.py",
    "tests/test_widget_lifecycle.py",
    "tests/test_widget_robust.py",
    "tests/test_widget_first_use.py",
    "tests/test_server.py",
    "tests/test_server_faults.py",
    "tests/test_commit_waits.py",
)
SECTIONS = {
    "test_parity_sam2.py": "Parity with sam2's SAM2ImagePredictor (same random-weight checkpoint)",
    "test_fuzz_engine.py": "Fuzzed input through the engine API (hypothesis)",
    "test_defects_core.py": "Defects of issue 9 (engine, adapter, packaging)",
    "test_faults.py": "Injected faults (out of memory, worker errors, cancels, bad checkpoints)",
    "test_widget_teardown.py": "Widget teardown",
    "test_widget_lifecycle.py": "Widget lifecycle: close, reopen, first use",
    "test_widget_robust.py": "Widget robustness (wrong layers, removed layers, replaced data)",
    "test_widget_first_use.py": "Widget first use",
    "test_server.py": "Remote GPU inference (napari-sam2 serve): parity with local masks, auth, limits, concurrency",
    "test_server_faults.py": "Remote GPU inference: server killed mid-request, restarted, unreachable",
    "test_commit_waits.py": "A commit is never lost (Commit pressed while Segment runs)",
}


def docstrings(path: Path) -> dict[str, str]:
    """``{test name: first paragraph of its docstring, on one line}`` of a test file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
            "test"
        ):
            doc = ast.get_docstring(node) or ""
            first = " ".join(doc.strip().split("\n\n")[0].split())
            out[node.name] = first or node.name.removeprefix("test_").replace("_", " ")
    return out


def parse_junit(path: Path) -> list[dict]:
    rows = []
    for case in ET.parse(path).getroot().iter("testcase"):
        result, detail = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                result = {"failure": "FAILED", "error": "ERROR", "skipped": "skipped"}[tag]
                detail = (
                    (el.get("message") or "").splitlines()[0][:160] if el.get("message") else ""
                )
                break
        rows.append(
            {
                "file": case.get("file") or case.get("classname", "").replace(".", "/") + ".py",
                "classname": case.get("classname", ""),
                "name": case.get("name", ""),
                "time": float(case.get("time") or 0.0),
                "result": result,
                "detail": detail,
            }
        )
    return rows


_STAT_HEAD = re.compile(r"^(\S+\.py)::(\S+?):\s*$")
_STAT_COUNT = re.compile(r"- (\d+) passing, (\d+) failing, and (\d+) invalid test cases")
_STAT_EVENT = re.compile(r"\*\s+([\d.]+)%, (.+)$")


def parse_hypothesis_stats(text: str) -> dict[str, dict]:
    """``{test name: {"examples": n, "failing": n, "events": [(pct, label)]}}``."""
    stats: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        m = _STAT_HEAD.match(line.strip())
        if m:
            current = stats.setdefault(m.group(2), {"examples": 0, "failing": 0, "events": []})
            continue
        if current is None:
            continue
        m = _STAT_COUNT.search(line)
        if m:
            current["examples"] += int(m.group(1)) + int(m.group(2))
            current["failing"] += int(m.group(2))
            continue
        m = _STAT_EVENT.search(line)
        if m and (float(m.group(1)), m.group(2)) not in current["events"]:
            current["events"].append((float(m.group(1)), m.group(2).strip()))
    return stats


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(rows: list[dict], docs: dict, stats: dict, files: list[str], meta: dict) -> str:
    by_file: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_file[Path(r["file"]).name].append(r)
    total = defaultdict(int)
    for r in rows:
        total[r["result"]] += 1
    lines = [
        "# Reliability report",
        "",
        "What the reliability suites try and what happened, one row per test.  This page is",
        "generated: do not edit it by hand, run `xvfb-run -a .venv/bin/python "
        "scripts/reliability_report.py`.",
        "",
        f"- Commit `{meta['commit']}`, generated {meta['date']} (UTC), "
        f"Python {meta['python']}, on {meta['platform']}.",
        f"- {len(rows)} tests: "
        + ", ".join(f"{n} {k}" for k, n in sorted(total.items()))
        + f"; {sum(r['time'] for r in rows):.0f} s in all.",
        f"- Hypothesis: {sum(s['examples'] for s in stats.values())} fuzzed examples "
        f"in {len(stats)} properties, {sum(s['failing'] for s in stats.values())} failing.",
        "- Files: " + ", ".join(f"`{f}`" for f in files) + ".",
        "",
        "## Summary",
        "",
        "| File | Tests | Passed | Failed | Skipped | Time (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for f in files:
        name = Path(f).name
        rs = by_file.get(name, [])
        n = defaultdict(int)
        for r in rs:
            n[r["result"]] += 1
        lines.append(
            f"| `{name}` | {len(rs)} | {n['passed']} | {n['FAILED'] + n['ERROR']} | "
            f"{n['skipped']} | {sum(r['time'] for r in rs):.1f} |"
        )
    if stats:
        lines += [
            "",
            "## Fuzzed examples (hypothesis)",
            "",
            "Examples run per property (derandomized: the same examples on every machine) and",
            "how often each outcome occurred (an example can count under several stages).",
            "Every outcome is either a valid result or a documented `napari_sam2.engine.errors`",
            "type; any other exception fails the property.",
            "",
            "| Property | Examples | Failing | Outcomes |",
            "|---|---:|---:|---|",
        ]
        for name, s in stats.items():
            events = "; ".join(f"{label} {pct:.0f} %" for pct, label in s["events"])
            lines.append(f"| `{name}` | {s['examples']} | {s['failing']} | {_cell(events)} |")
    for f in files:
        name = Path(f).name
        rs = by_file.get(name)
        if not rs:
            continue
        lines += [
            "",
            f"## {SECTIONS.get(name, name)}",
            "",
            f"`{f}`",
            "",
            "| Test | What was tried | Result | Time (s) |",
            "|---|---|---|---:|",
        ]
        for r in rs:
            base = r["name"].split("[")[0]
            tried = docs.get(name, {}).get(base, base)
            result = r["result"] if not r["detail"] else f"{r['result']}: {r['detail']}"
            lines.append(
                f"| `{_cell(r['name'])}` | {_cell(tried)} | {_cell(result)} | {r['time']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return out + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", default=str(ROOT / "docs" / "dev" / "reliability.md"))
    p.add_argument("--files", nargs="*", default=list(FILES), help="test files to run")
    args = p.parse_args(argv)
    files = [f for f in args.files if (ROOT / f).is_file()]
    if not files:
        print("reliability_report: none of the test files exists", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            *files,
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={xml}",
            "-o",
            "junit_family=xunit1",
            "--hypothesis-show-statistics",
            *extra,
        ]
        print("running:", " ".join(cmd), flush=True)
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        sys.stdout.write(proc.stdout[-3000:])
        sys.stderr.write(proc.stderr[-3000:])
        if not xml.is_file():
            print("reliability_report: pytest wrote no junit XML", file=sys.stderr)
            return proc.returncode or 2
        rows = parse_junit(xml)
    docs = {Path(f).name: docstrings(ROOT / f) for f in files}
    stats = parse_hypothesis_stats(proc.stdout)
    meta = {
        "commit": _git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "python": sys.version.split()[0],
        "platform": sys.platform,
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(rows, docs, stats, files, meta), encoding="utf-8")
    print(f"wrote {out} ({len(rows)} tests)")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
