"""Markdown tables from `vrfam-rt eval --json` reports: methods or backends side by side.

    python -m vrfam_rt.benchmarks.compare NAME=report.json [NAME=report.json ...]

prints a summary table (one row per report: the Table 1 metrics and the mean scores)
and a per-edit table (one row per attribute and alpha, one column per report and score).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from vrfam_rt.tables import render

SUMMARY = (("distortion L2", "distortion_l2", ".4f"), ("perception FID", "perception_fid", ".2f"),
           ("editability FID", "editability_fid", ".2f"), ("W+ variance", "wplus_variance", ".3f"),
           ("identity", "identity_similarity", ".3f"), ("target acc", "target_accuracy", ".3f"),
           ("non-target acc", "non_target_accuracy", ".3f"))
PER_EDIT = (("target", "target_accuracy", ".3f"), ("non-target", "non_target_accuracy", ".3f"),
            ("identity", "identity_similarity", ".3f"))


def summary_table(reports: dict[str, dict]) -> str:
    rows = [{"name": name} | report for name, report in reports.items()]
    return render(rows, (("", "name", ""), *SUMMARY), markdown=True)


def identity_note(reports: dict[str, dict]) -> str:
    """One line with the identity embedding's anchors (the same for every report on one
    set of faces), or '' when the reports have none (real photos)."""
    first = next(iter(reports.values()))
    if "identity_same_person" not in first:
        return ""
    return (f"Identity anchors of the embedding on these faces: the same person under other "
            f"pose, light and background {first['identity_same_person']:.3f}; other people "
            f"{first['identity_other_person']:.3f}. Input vs reconstruction: "
            + ", ".join(f"{name} {r['identity_reconstruction']:.3f}"
                        for name, r in reports.items() if "identity_reconstruction" in r) + ".")


def per_edit_table(reports: dict[str, dict]) -> str:
    """Rows (attribute, alpha) in the first report's order; for each score, one column
    per report."""
    names = list(reports)
    index = {name: {(e["attribute"], e["alpha"]): e for e in r["per_edit"]}
             for name, r in reports.items()}
    columns = [("attribute", "attribute", ""), ("alpha", "alpha", "+.1f")]
    columns += [(f"{h}: {n}", f"{score}: {n}", fmt) for h, score, fmt in PER_EDIT for n in names]
    rows = []
    for edit in reports[names[0]]["per_edit"]:
        key = (edit["attribute"], edit["alpha"])
        row = {"attribute": key[0], "alpha": key[1]}
        for _, score, _ in PER_EDIT:
            row |= {f"{score}: {n}": index[n].get(key, {}).get(score) for n in names}
        rows.append(row)
    return render(rows, columns, markdown=True)


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
    if note := identity_note(reports):
        print(note)
        print()
    print(per_edit_table(reports))


if __name__ == "__main__":
    main()
