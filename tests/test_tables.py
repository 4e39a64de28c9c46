"""The one table renderer: aligned plain text for the terminal, GitHub markdown for results."""
from vrfam_rt.tables import render

ROWS = [{"stage": "encoder", "ms": 12.345}, {"stage": "generator", "ms": None}]
COLUMNS = [("stage", "stage", ""), ("p50 ms", "ms", ".1f")]


def test_plain_tables_align_columns_and_leave_missing_cells_empty():
    lines = render(ROWS, COLUMNS).splitlines()
    assert lines == ["stage      p50 ms", "---------  ------", "encoder    12.3", "generator"]


def test_markdown_tables_have_a_header_rule_and_one_row_per_dict():
    assert render(ROWS, COLUMNS, markdown=True).splitlines() == [
        "| stage | p50 ms |", "| --- | --- |", "| encoder | 12.3 |", "| generator |  |"]
