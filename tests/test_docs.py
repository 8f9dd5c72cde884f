"""The project's documentation lives in the repository and points nowhere outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / name for name in out.splitlines() if (ROOT / name).is_file()]


def test_no_tracked_file_points_outside_the_repository():
    outside = re.compile(r"\.\./shared|shared/docs|DESIGN\.md|STYLE\.md")
    offenders = []
    for path in _tracked_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        offenders += [f"{path.relative_to(ROOT)}:{n}" for n, line in enumerate(text.splitlines(), 1)
                      if outside.search(line) and path.name != "test_docs.py"]
    assert not offenders, offenders


def test_every_relative_link_in_the_markdown_docs_resolves_to_a_file_in_the_repository():
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in _MARKDOWN_LINK.findall(doc.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://", "#", "mailto:")):
                continue
            resolved = (doc.parent / target.split("#")[0]).resolve()
            assert resolved.is_relative_to(ROOT) and resolved.exists(), f"{doc.name}: broken link {target}"


def test_the_readme_links_the_architecture_document():
    assert "](docs/architecture.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
