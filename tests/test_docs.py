"""The documentation holds together: every relative link in README.md, docs/ and
benchmarks/README.md leads to a file or folder that exists, and the README stays an index
(at most README_LINES lines; the details live in docs/)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_LINES = 220
# [text](target) and ![alt](target); the target ends at the first space (a title may follow)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
EXTERNAL = ("http://", "https://", "mailto:")


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")),
            ROOT / "benchmarks" / "README.md"]


def links(text: str) -> list[str]:
    """Link targets outside code blocks and inline code."""
    prose = FENCE.sub("", text)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    return LINK.findall(prose)


def broken(page: Path) -> list[str]:
    """The relative links of ``page`` whose file does not exist (anchors are not checked)."""
    missing = []
    for target in links(page.read_text(encoding="utf-8")):
        if target.startswith(EXTERNAL):
            continue
        path = unquote(target.split("#", 1)[0])
        if not path:  # a link to an anchor of the page itself
            continue
        if not (page.parent / path).exists():
            missing.append(target)
    return missing


def test_the_link_finder_reads_markdown_links():
    text = ("See [a](docs/a.md#part), ![img](images/x.png \"title\"), [web](https://x.org), "
            "`[not](code.md)` and [mail](mailto:a@b.c).\n```\n[fenced](no.md)\n```\n")
    assert links(text) == ["docs/a.md#part", "images/x.png", "https://x.org", "mailto:a@b.c"]


def test_the_pages_exist():
    assert all(page.is_file() for page in pages())
    assert (ROOT / "docs" / "architecture.md").is_file()


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert broken(page) == []


def test_the_readme_is_an_index():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_LINES, f"README.md has {lines} lines; move details to docs/"
