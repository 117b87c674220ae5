"""The paper's published numbers beside ours (benchmarks/study_paper.py): every table is captioned as the paper's,
the numbers are the data's exactly, and the section never calls them measured."""

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import study_paper  # noqa: E402

SECTION = study_paper.paper_section()


def _tables(text: str) -> list[tuple[str, list[str]]]:
    """(the caption: the last non-blank line before the table, the table's lines) for every markdown table."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        if lines[i].startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            caption = next((x for x in reversed(lines[:i]) if x.strip()), "")
            out.append((caption, lines[i:j]))
            i = j
        else:
            i += 1
    return out


def test_every_table_is_captioned_as_the_papers():
    tables = _tables(SECTION)
    assert len(tables) == len(study_paper.TABLES) == 3
    for caption, _ in tables:
        assert "published by the paper, not measured here" in caption
    assert "Li & Zeng" in SECTION and "2606.07835" in SECTION and "50k samples" in SECTION


def test_numbers_are_the_data_exactly():
    for (_, lines), table in zip(_tables(SECTION), study_paper.TABLES):
        assert len(lines) == 2 + len(table.rows)
        for line, (method, values) in zip(lines[2:], table.rows):
            cells = [c.strip() for c in line.strip("|").split("|")]
            assert cells[0] == method and len(cells) == 1 + len(table.columns) == 1 + len(values)
            assert [None if c == "-" else float(c) for c in cells[1:]] == list(values)
    # every number in a table row is one of the data's (nothing invented by the formatting)
    data = {v for t in study_paper.TABLES for _, values in t.rows for v in values if v is not None}
    for _, lines in _tables(SECTION):
        for line in lines[2:]:
            assert {float(x) for x in re.findall(r"\d+\.\d+", line)} <= data


def test_data_as_published():
    """Spot checks typed from the paper's tables (a transposed or mistyped value fails)."""
    lsun, imagenet, cifar = study_paper.TABLES
    assert dict(lsun.rows)["SteinDiff (SC)"] == (7.64, 4.71, 3.72, 3.38, 2.77)
    assert dict(lsun.rows)["DPM-Solver++ (2M)"][0] == 21.29 and dict(lsun.rows)["DPM-Solver++ (3M)"][-1] == 3.17
    before, after = dict(imagenet.rows)["Heun"][0], dict(imagenet.rows)["Heun + SteinDiff"][0]
    assert (before, after) == (230.05, 124.69) and round(100 * (after - before) / before, 1) == -45.8
    assert dict(cifar.rows)["Heun"] == (None, 99.74, 38.06, 15.93)
    assert dict(cifar.rows)["iPNDM-4"] == (13.59, 7.05, 3.69, 2.77)
    assert "| 3.00 |" in SECTION  # published with two decimals, shown so


def test_never_called_measured():
    rest = SECTION.lower().replace("not measured here", "")
    assert "measured" not in rest and "measure" not in rest
    assert "not comparable cell for cell" in SECTION and "different models and data" in SECTION
    assert "FID on 50k samples" in SECTION
    assert SECTION.startswith("## The paper's published numbers\n")
