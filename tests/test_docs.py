"""The documents stay true to the code: every environment variable in docs/operations.md,
every metric key in docs/statistics.md, every relative link resolving, and the README
pointing nowhere outside the repository (the house rule)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

import modelwatch.settings as settings
from evaluators.base import metric_keys

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
OPERATIONS = ROOT / "docs" / "operations.md"
STATISTICS = ROOT / "docs" / "statistics.md"
LOOPBACK = {"127.0.0.1", "localhost", "0.0.0.0", "::1"}

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.DOTALL)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
AUTOLINK = re.compile(r"<([a-zA-Z][a-zA-Z0-9+.-]*:[^>\s]+)>")
BARE_URL = re.compile(r"\b(?:https?|ftp)://[^\s)>\]`\"']+")
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code spans (examples, not links)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def link_targets(text: str) -> list[str]:
    """Targets of inline links, images, reference definitions and autolinks."""
    body = prose(text)
    found = INLINE_LINK.findall(body) + REFERENCE_DEF.findall(body) + AUTOLINK.findall(body)
    return [t for t in found if t]


def outside_links(text: str) -> list[str]:
    """Every link or bare URL of the prose that leaves the repository (loopback URLs, the
    service started on this machine, stay)."""
    body = prose(text)
    candidates = link_targets(text) + BARE_URL.findall(body)
    out = []
    for target in candidates:
        parts = urlsplit(target)
        if not parts.scheme and not target.startswith("//"):
            continue  # relative: inside the repository
        if parts.scheme in ("http", "https") and (parts.hostname or "") in LOOPBACK:
            continue
        out.append(target)
    return sorted(set(out))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed,
    spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(FENCE.sub("", text)):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(path: Path) -> list[str]:
    """Relative links of ``path`` whose file (or heading anchor, in Markdown) is missing."""
    broken = []
    for target in link_targets(path.read_text(encoding="utf-8")):
        parts = urlsplit(target)
        if parts.scheme or target.startswith("//"):
            continue
        file = (path.parent / unquote(parts.path)).resolve() if parts.path else path
        if not file.exists() or (
            parts.fragment
            and file.suffix == ".md"
            and parts.fragment not in anchors(file.read_text(encoding="utf-8"))
        ):
            broken.append(target)
    return broken


def env_vars() -> list[str]:
    return sorted(
        value
        for name, value in vars(settings).items()
        if name.startswith("ENV_") and isinstance(value, str)
    )


def test_every_environment_variable_is_in_operations() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    missing = [v for v in env_vars() if f"`{v}`" not in text]
    assert env_vars() and not missing, f"add to docs/operations.md (Settings): {missing}"


def test_every_registered_metric_key_is_in_statistics() -> None:
    text = STATISTICS.read_text(encoding="utf-8")
    keys = [k for k in metric_keys() if not k.startswith("test_")]  # tests register test_*
    missing = [k for k in keys if f"`{k}`" not in text]
    assert keys and not missing, f"add to docs/statistics.md (section and key table): {missing}"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_relative_links_resolve(path: Path) -> None:
    assert not broken_links(path), f"{path.name}: links to nothing: {broken_links(path)}"


def test_the_readme_points_nowhere_outside_the_repository() -> None:
    found = outside_links(README.read_text(encoding="utf-8"))
    assert not found, f"README.md links outside the repository: {found}"


def test_the_readme_lists_the_documentation() -> None:
    targets = set(link_targets(README.read_text(encoding="utf-8")))
    wanted = {"docs/architecture.md", "docs/statistics.md", "docs/operations.md"}
    assert wanted <= targets, f"README.md should link {sorted(wanted - targets)}"


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    """The helpers find a broken link, a missing anchor and an outside link, and leave
    code, loopback URLs and good links alone."""
    (tmp_path / "there.md").write_text("# A heading: `x` and y\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md) [ok](there.md#a-heading-x-and-y) [gone](missing.md) "
        "[bad anchor](there.md#nope) [self](#title)\n# Title\n"
        "[out](https://example.org/x) <https://example.net> see http://example.com/y\n"
        "the demo at http://127.0.0.1:8000/dash/ and `https://in.code/span`\n"
        "```\ncurl https://in.a.fence/\n```\n",
        encoding="utf-8",
    )
    assert broken_links(page) == ["missing.md", "there.md#nope"]
    assert outside_links(page.read_text(encoding="utf-8")) == [
        "http://example.com/y",
        "https://example.net",
        "https://example.org/x",
    ]
