"""README and docs/ stay true: every relative link resolves, every repository file and module
they name exists, and the README stays a page a newcomer reads first."""
import importlib.util
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md"] + sorted((ROOT / "docs").glob("*.md"))
# files of other repositories the docs compare against (CoOp's), not of this one
EXTERNAL = {"trainers/coop.py", "trainers/zsclip.py"}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
SPAN = re.compile(r"`([^`\n]+)`")
REPO_PATH = re.compile(r"(?<![\w~./-])((?:scripts|ptnl|tests|configs|benchmarks|datasets|trainers|docs)/[\w./-]*[\w/])")
MODULE = re.compile(r"python -m ([A-Za-z_][\w.]*\w)")  # a name may end in a digit (benchmarks.figure1)


def _ids(pages):
    return [str(p.relative_to(ROOT)) for p in pages]


def _anchors(page: Path):
    """GitHub's heading anchors of a markdown page."""
    out = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_every_relative_link_resolves(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(target)
    assert not broken, f"{page.name}: links that do not resolve: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_every_named_file_and_module_exists(page):
    text = page.read_text()
    missing = []
    for span in SPAN.findall(text) + re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for path in REPO_PATH.findall(span):
            if any(c in path for c in "<>{}*") or path in EXTERNAL:
                continue
            if not (ROOT / path).exists():
                missing.append(path)
        for module in MODULE.findall(span):
            if module.split(".")[0] in ("ptnl", "benchmarks") and importlib.util.find_spec(module) is None:
                missing.append("python -m " + module)
    assert not missing, f"{page.name} names what is not in the repository: {sorted(set(missing))}"


def test_readme_is_a_first_page():
    # the reference lives in docs/; the README is what a newcomer reads first (about 15 kB at most)
    assert os.path.getsize(ROOT / "README.md") <= 16000
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in (ROOT / "README.md").read_text(), f"README links no {page.name}"
