"""Plain-text tables of evaluation rows (percentages, as papers report them)."""

from __future__ import annotations

COLUMNS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")


def render_rows(rows: list[dict], title: str = "") -> str:
    header = f"{'protocol':<14}{'feature':<8}{'trial':>6}" + "".join(f"{c:>9}" for c in COLUMNS)
    lines = [title, header] if title else [header]
    for row in rows:
        values = "".join(f"{100 * row[c]:>9.2f}" for c in COLUMNS)
        lines.append(f"{row['protocol']:<14}{row['feature']:<8}{str(row['trial']):>6}{values}")
    return "\n".join(lines)
