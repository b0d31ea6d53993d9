"""The documentation holds together: README.md stays a front page, every relative link in it and in
docs/ reaches an existing file (and heading, for ``#anchor`` links), and every docs page is listed in
the docs index."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_MAX_BYTES = 12_500

FENCE = re.compile(r"^ {0,3}(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def _prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, inline code spans removed (links there are not links)."""
    lines, in_fence = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            lines.append(INLINE_CODE.sub("", line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text lower-cased, punctuation (backticks, colons,
    dots, ...) dropped, spaces turned into hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors on its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a markdown file's headings; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    text = path.read_text(encoding="utf-8")
    in_fence = False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        match = None if in_fence else HEADING.match(line)
        if match:
            base = slug(match.group(2))
            n = seen.get(base, 0)
            found.add(base if n == 0 else f"{base}-{n}")
            seen[base] = n + 1
    return found


def links(path: Path) -> list[str]:
    return [m.group(1) for line in _prose_lines(path.read_text(encoding="utf-8")) for m in LINK.finditer(line)]


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """Each relative link of ``path`` that does not reach a file (or, with ``#anchor``, a heading in it)."""
    problems = []
    for target in links(path):
        if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            problems.append(f"{path.relative_to(root)}: link '{target}': no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{path.relative_to(root)}: link '{target}': no heading with anchor '#{anchor}' "
                            f"in {dest.relative_to(root)}")
    return problems


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_readme_is_a_front_page():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_MAX_BYTES, (
        f"README.md is {size} bytes (at most {README_MAX_BYTES}): move detail into a docs/ page and link it")


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    assert links(path) or path.name != "README.md", f"{path}: no links found (is the link pattern broken?)"
    assert broken_links(path) == []


def test_every_docs_page_is_in_the_index():
    index = ROOT / "docs" / "README.md"
    listed = {(index.parent / t.partition("#")[0]).resolve() for t in links(index)}
    missing = [p.name for p in sorted((ROOT / "docs").rglob("*.md")) if p != index and p.resolve() not in listed]
    assert not missing, f"docs pages not linked from docs/README.md: {missing}"


def test_the_checker_finds_missing_files_and_anchors(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text(
        "# Page\n\n## Speed: image cache, `--compile`, GPUs\n\n## Notes\n\n## Notes\n", encoding="utf-8")
    (tmp_path / "README.md").write_text(
        "[ok](docs/page.md) [ok](docs/page.md#speed-image-cache---compile-gpus) [ok](docs/page.md#notes-1)\n"
        "[ok](#top) [web](https://example.org/x) `[code](nowhere.md)`\n"
        "```\n[fenced](nowhere.md)\n```\n"
        "[gone](docs/missing.md) [bad anchor](docs/page.md#nope) ![img](docs/pic.png)\n# Top\n",
        encoding="utf-8")
    problems = broken_links(tmp_path / "README.md", root=tmp_path)
    assert len(problems) == 3, problems
    assert "docs/missing.md" in problems[0] and "#nope" in problems[1] and "docs/pic.png" in problems[2]


def test_slugs_follow_github():
    assert slug("Ensembles: `comptk ensemble`") == "ensembles-comptk-ensemble"
    assert slug("Fashion-MNIST: the default recipe") == "fashion-mnist-the-default-recipe"
    assert slug("Runs and sweeps: artifacts, `comptk runs`, `comptk sweep`, plots") == \
        "runs-and-sweeps-artifacts-comptk-runs-comptk-sweep-plots"
    assert slug("See [the API](api.md)") == "see-the-api"
