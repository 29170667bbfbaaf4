"""What a batch run did, per file and in total, as text, JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

DONE, SKIPPED, FAILED = "done", "skipped", "failed"
STATUSES = (DONE, SKIPPED, FAILED)
CSV_COLUMNS = (
    "input",
    "output",
    "status",
    "reason",
    "objects",
    "planes",
    "attempts",
    "worker",
    "seconds",
    "notes",
)
REUSED = "plane ranges reused"
OTHER_SERIES = "DICOM series not segmented"  # as batch._files says it (shown in lines())


def reused_note(reused: int, total: int) -> str:
    """The note of a split file resumed from an interrupted run: "3 of 5 plane ranges
    reused" (those ranges were not segmented again)."""
    return f"{reused} of {total} {REUSED}"


@dataclass
class FileResult:
    """The outcome of one input file.

    ``status`` is ``done`` (output written), ``skipped`` (a complete output already
    existed, or the input was not meant to be segmented) or ``failed``; ``reason`` says
    why for the last two.  ``objects``: label IDs written; ``planes``: planes segmented
    (prompted, automatic and propagated); ``attempts``: how many times the file was
    started (more than 1 when a worker was lost or an error was retried on a cluster).
    """

    input: str
    output: str | None
    status: str
    reason: str = ""
    objects: list[int] = field(default_factory=list)
    planes: int = 0
    attempts: int = 1
    worker: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status != FAILED

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Summary:
    """All :class:`FileResult` of a run, in input order."""

    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    where: str = "in-process"

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(r.status for r in self.results)
        return {s: c.get(s, 0) for s in STATUSES}

    @property
    def done(self) -> list[FileResult]:
        return [r for r in self.results if r.status == DONE]

    @property
    def skipped(self) -> list[FileResult]:
        return [r for r in self.results if r.status == SKIPPED]

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == FAILED]

    @property
    def retried(self) -> list[FileResult]:
        return [r for r in self.results if r.attempts > 1]

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.failed

    def to_dict(self) -> dict:
        return {
            "where": self.where,
            "seconds": round(self.seconds, 3),
            "counts": self.counts,
            "retried": len(self.retried),
            "files": [r.to_dict() for r in self.results],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for r in self.results:
            d = r.to_dict()
            d["objects"] = " ".join(map(str, r.objects))
            d["notes"] = " | ".join(r.notes)
            d["seconds"] = f"{r.seconds:.3f}"
            w.writerow([d[c] if d[c] is not None else "" for c in CSV_COLUMNS])
        return buf.getvalue()

    def write(self, path) -> Path:
        """Write the summary as JSON (``.json``) or CSV (any other suffix), atomically."""
        path = Path(path)
        text = self.to_json() if path.suffix.lower() == ".json" else self.to_csv()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        return path

    def lines(self) -> list[str]:
        """Human-readable report: one line per skipped/failed/retried/resumed file and per
        DICOM input with series left out, then totals."""
        out = []
        seen = Counter(r.input for r in self.results)
        for r in self.results:
            # an input with several jobs (--series all): each line names its output too
            name = f"{r.input} -> {r.output}" if seen[r.input] > 1 and r.output else r.input
            out += [f"resumed {name}: {n}" for n in r.notes if n.endswith(REUSED)]
            out += [f"note    {name}: {n}" for n in r.notes if OTHER_SERIES in n]
            out += [f"        {name}: {n}" for n in r.notes if n.startswith("propagated")]
            if r.status == FAILED:
                out.append(f"FAILED  {name}: {r.reason}")
            elif r.status == SKIPPED:
                out.append(f"skipped {name}: {r.reason}")
            if r.attempts > 1:
                out.append(f"retried {name}: {r.attempts} attempts ({r.status})")
        c = self.counts
        out.append(
            f"{len(self.results)} file(s): {c[DONE]} done, {c[SKIPPED]} skipped, "
            f"{c[FAILED]} failed ({self.where}, {self.seconds:.1f} s)"
        )
        return out
