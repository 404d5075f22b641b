"""The README and docs/*.md name only things that exist.

Checked in every page: relative links (Markdown and image links; http(s)://, mailto: and pure
#anchors are not followed) point to a file or folder, and a #anchor on a link to a .md page
names one of its headings (GitHub's anchors); every
``make TARGET`` is a target of the Makefile; every ``scripts/NAME.py`` (``python scripts/...``,
``torchrun ... scripts/...``) is a script; every ``python -m MODULE`` is a module that can be
found (located without running any package's ``__init__``); every ``test_x.py`` or
``tests/test_x.py`` is a test file, and ``test_x.py::name`` (or a later ``::name`` on the same
line, meaning the same file) a ``def name`` in it (``name*``: some ``def`` starting so).
Text only: no network, nothing heavy imported.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[ \t]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)"
)
REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
MAKE = re.compile(r"(?:^|[;&|(]\s*|\$\s+)make\s+([A-Za-z_][\w.-]*)")
SCRIPT = re.compile(r"(?<![\w/.-])scripts/([\w-]+)\.py\b")
PYTHON_M = re.compile(r"\bpython3?\s+-m\s+([A-Za-z_][\w.]*)")
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)
TEST_REF = re.compile(r"(?<![\w/.-])(?:tests/)?(test_\w+\.py)\b|::(\w+)(\*?)")


def _read(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def _prose(text: str) -> str:
    """The text without code blocks and code spans (where brackets are not links)."""
    return CODE_SPAN.sub(" ", FENCE.sub("\n", text))


def _code(text: str) -> list[str]:
    """The lines of the code blocks and the code spans, where commands are written."""
    lines = []
    for block in FENCE.finditer(text):
        lines += block.group(0).splitlines()[1:-1]
    for span in CODE_SPAN.finditer(FENCE.sub("\n", text)):
        lines += span.group(2).splitlines()
    return [line.strip() for line in lines]


def relative_links(text: str) -> list[str]:
    prose = _prose(text)
    targets = INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)
    return [
        t
        for t in targets
        if not re.match(r"(?i)(https?:|mailto:|#)", t) and not re.match(r"^[a-z][\w+.-]*://", t)
    ]


def make_targets(text: str) -> list[str]:
    return [target for line in _code(text) for target in MAKE.findall(line)]


def scripts(text: str) -> list[str]:
    return SCRIPT.findall(text)


def python_modules(text: str) -> list[str]:
    return PYTHON_M.findall(text)


def named_tests(text: str) -> list[tuple[str, str | None, bool]]:
    """(file, function or None, prefix?) for every test file and test function named."""
    found = []
    for line in text.splitlines():
        current = None
        for match in TEST_REF.finditer(line):
            file, name, star = match.groups()
            if file:
                current = file
                found.append((file, None, False))
            elif current is not None:
                found.append((current, name, bool(star)))
    return found


def anchors(text: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces -> '-'."""
    found: set[str] = set()
    for heading in HEADING.findall(FENCE.sub("\n", text)):
        heading = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        unique, n = slug, 0
        while unique in found:
            n += 1
            unique = f"{slug}-{n}"
        found.add(unique)
    return found


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z_][\w.-]*)\s*:(?!=)", text, re.MULTILINE))


def module_exists(name: str) -> bool:
    """Whether ``python -m name`` finds a module, without importing any of its packages."""
    top, *rest = name.split(".")
    spec = importlib.util.find_spec(top)
    for part in rest:
        if spec is None or spec.submodule_search_locations is None:
            return False
        spec = importlib.machinery.PathFinder.find_spec(part, spec.submodule_search_locations)
    return spec is not None


def _id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_relative_links_point_to_files_that_exist(page):
    broken = []
    for target in relative_links(_read(page)):
        path, _, anchor = target.partition("#")
        linked = page.parent / unquote(path)
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and unquote(anchor) not in anchors(_read(linked)):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{_id(page)} links to missing paths: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_make_targets_scripts_and_modules_exist(page):
    text = _read(page)
    targets = makefile_targets()
    problems = [
        f"make {t}: no such Makefile target" for t in make_targets(text) if t not in targets
    ]
    problems += [
        f"scripts/{s}.py: no such script"
        for s in scripts(text)
        if not (ROOT / "scripts" / f"{s}.py").is_file()
    ]
    problems += [
        f"python -m {m}: no such module" for m in python_modules(text) if not module_exists(m)
    ]
    assert not problems, f"{_id(page)}: " + "; ".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_named_test_files_and_functions_exist(page):
    problems = []
    for file, name, prefix in named_tests(_read(page)):
        path = ROOT / "tests" / file
        if not path.is_file():
            problems.append(f"{file}: no such test file")
        elif name is not None:
            pattern = rf"^\s*(?:async\s+)?def {re.escape(name)}" + ("" if prefix else r"\b")
            if not re.search(pattern, path.read_text(encoding="utf-8"), re.MULTILINE):
                problems.append(f"{file}::{name}{'*' if prefix else ''}: no such test function")
    assert not problems, f"{_id(page)}: " + "; ".join(problems)


def test_the_readme_keeps_its_commands_and_links_every_docs_page():
    readme = _read(ROOT / "README.md")
    assert {"demo", "test", "lint", "benchmark"} <= set(make_targets(readme))
    linked = {(ROOT / unquote(t.split("#", 1)[0])).resolve() for t in relative_links(readme)}
    unlinked = [_id(p) for p in PAGES[1:] if p.resolve() not in linked]
    assert not unlinked, f"README.md does not link to {unlinked}"


def test_the_checks_see_what_they_check():
    """Each extractor finds something on a sample, so a broken pattern cannot pass vacuously."""
    sample = (
        "See [training](docs/training.md#resume), ![pic](docs/images/a.png) and\n"
        "[site](https://example.org), [me](mailto:a@b.c), [top](#top).\n"
        "```bash\nmake demo && make test\ntorchrun --nproc_per_node=2 scripts/infer.py x=1\n"
        "python -m segnet.benchmarks.quantize m.onnx d\n```\n"
        "`make lint`; `a code span [not](a-link.md)`; `test_api.py::test_a`, `::test_b*` and "
        "tests/test_cli.py.\n"
    )
    assert relative_links(sample) == ["docs/training.md#resume", "docs/images/a.png"]
    assert make_targets(sample) == ["demo", "test", "lint"]
    assert scripts(sample) == ["infer"]
    assert python_modules(sample) == ["segnet.benchmarks.quantize"]
    assert named_tests(sample) == [
        ("test_api.py", None, False),
        ("test_api.py", "test_a", False),
        ("test_api.py", "test_b", True),
        ("test_cli.py", None, False),
    ]
    assert module_exists("segnet.benchmarks.quantize") and not module_exists("segnet.no_such")
    headings = "# The demo (`make demo`)\n## Why X, not Y\n## FastAPI + uvicorn\n## Why X, not Y\n"
    assert anchors(headings) == {
        "the-demo-make-demo",
        "why-x-not-y",
        "fastapi--uvicorn",
        "why-x-not-y-1",
    }
