"""Markdown tables from `vrfam-rt eval --json` reports: methods or backends side by side.

    python -m vrfam_rt.benchmarks.compare NAME=report.json [NAME=report.json ...]

prints a summary table (one row per report: the Table 1 metrics and the mean scores)
and a per-edit table (one row per attribute and alpha, one column per report and score).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

SUMMARY = (("distortion L2", "distortion_l2", ".4f"), ("perception FID", "perception_fid", ".2f"),
           ("editability FID", "editability_fid", ".2f"), ("W+ variance", "wplus_variance", ".3f"),
           ("identity", "identity_similarity", ".3f"), ("target acc", "target_accuracy", ".3f"),
           ("non-target acc", "non_target_accuracy", ".3f"))
PER_EDIT = (("target", "target_accuracy", ".3f"), ("non-target", "non_target_accuracy", ".3f"),
            ("identity", "identity_similarity", ".3f"))


def _row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def _cell(value, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def summary_table(reports: dict[str, dict]) -> str:
    lines = [_row(["", *(h for h, _, _ in SUMMARY)]), _row(["---"] * (len(SUMMARY) + 1))]
    for name, report in reports.items():
        lines.append(_row([name, *(_cell(report.get(k), f) for _, k, f in SUMMARY)]))
    return "\n".join(lines)


def per_edit_table(reports: dict[str, dict]) -> str:
    """Rows (attribute, alpha) in the first report's order; for each score, one column
    per report."""
    names = list(reports)
    index = {name: {(e["attribute"], e["alpha"]): e for e in r["per_edit"]}
             for name, r in reports.items()}
    header = ["attribute", "alpha"] + [f"{h}: {n}" for h, _, _ in PER_EDIT for n in names]
    lines = [_row(header), _row(["---"] * len(header))]
    for edit in reports[names[0]]["per_edit"]:
        key = (edit["attribute"], edit["alpha"])
        cells = [key[0], format(key[1], "+.1f")]
        for _, score, fmt in PER_EDIT:
            cells += [_cell(index[n].get(key, {}).get(score), fmt) for n in names]
        lines.append(_row(cells))
    return "\n".join(lines)


def load(specs: list[str]) -> dict[str, dict]:
    reports = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            raise SystemExit(f"error: {spec!r} is not NAME=report.json")
        try:
            reports[name] = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"error: {path}: not a readable eval report ({exc})") from None
    return reports


def main(argv: list[str] | None = None) -> None:
    specs = sys.argv[1:] if argv is None else argv
    if not specs:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    reports = load(specs)
    print(summary_table(reports))
    print()
    print(per_edit_table(reports))


if __name__ == "__main__":
    main()
