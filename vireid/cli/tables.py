"""Plain-text tables of evaluation rows (percentages, as papers report them)."""

from __future__ import annotations

COLUMNS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")


def protocol_label(row: dict) -> str:
    """The protocol column: its name, then "(flip)" for flip-averaged features and
    "(re-ranked)" for a re-ranked row, e.g. "sysu-all (flip, re-ranked)"."""
    notes = [note for note, key in (("flip", "flip"), ("re-ranked", "reranked")) if row.get(key)]
    return f"{row['protocol']} ({', '.join(notes)})" if notes else row["protocol"]


def render_rows(rows: list[dict], title: str = "") -> str:
    width = max([14] + [len(protocol_label(r)) + 2 for r in rows])
    header = f"{'protocol':<{width}}{'feature':<8}{'trial':>6}" \
        + "".join(f"{c:>9}" for c in COLUMNS)
    lines = [title, header] if title else [header]
    for row in rows:
        values = "".join(f"{100 * row[c]:>9.2f}" for c in COLUMNS)
        lines.append(f"{protocol_label(row):<{width}}{row['feature']:<8}"
                     f"{str(row['trial']):>6}{values}")
    return "\n".join(lines)
