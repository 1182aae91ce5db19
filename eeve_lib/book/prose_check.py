"""Defects a careful reader catches in the built book, found by rule in its HTML.

Each rule is a class of defect that once reached the pages: a sentence assembled from a template
("better than uniform ... better than uniform", "at most 0%", "about about 2 billion"), a glued value
or substitution left raw, a placeholder where a real value belongs, the wording of a changelog
("issue 11", "before the fix"), the seven stages rendered as fewer list items, and a figure with no
number, caption or alt text of its own. :func:`book_defects` reads every page of a built book;
``tests/test_prose_check.py`` runs it on the book that the tests build, and puts each defect back
into a real page to show that its rule catches it. ``make book`` does not run it: a page that reads
wrong is a test failure, not a build failure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

#: Pages of the HTML build that are not the book's prose.
SKIPPED_PAGES = frozenset({"genindex.html", "search.html", "py-modindex.html"})

_REPEATED_WORD = re.compile(r"\b([A-Za-z]{2,})\s+\1\b", re.IGNORECASE)
# A clause that ends twice on the same words of three or more: "the base is better than uniform, the
# extended model better than uniform."
_REPEATED_ENDING = re.compile(r"\b([A-Za-z]+(?: [A-Za-z]+){2,})[,.;:][^.;]{1,120}?\b\1[,.;:]")
_TEMPLATE = [
    (re.compile(r"\b(?:at most|up to|only|just|no more than) 0(?:\.0+)?\s?%"), "a bound of 0%"),
    (re.compile(r"\b(?:at least|all but|no less than) 100(?:\.0+)?\s?%"), "a bound of 100%"),
    (re.compile(r"\b(0|100)(?:\.0+)?\s?%[^.;]{0,160}\b\1(?:\.0+)?\s?%"), "the same 0% or 100% twice"),
    (re.compile(r"(?<![\w.])nan(?![\w.])"), "a value that was never computed (nan)"),
    (re.compile(r"\{glue(?::\w+)?\}|\{\{\s*\w+\s*\}\}"), "a raw glue role or substitution"),
    (re.compile(r"\(\s*\)"), "empty parentheses"),
    (re.compile(r"`[^`]+`|(?<![\w*])\*[A-Za-z][^*]{0,40}\*(?![\w*])"), "raw Markdown in a glued value"),
]
_PLACEHOLDER = re.compile(r"<(?:the|your|a|an|some) [^<>]{2,60}>|\b(?:TODO|FIXME|TBD)\b|lorem ipsum", re.IGNORECASE)
_CHANGELOG = re.compile(r"\bissue #?\d+\b|\b(?:before|after) the fix\b|\(the fix\)|\bthe fix\b|\bbug ?fix",
                        re.IGNORECASE)
# The first and last of the seven stages, as every page lists them.
_FIRST_STAGE, _LAST_STAGE, _STAGES = "new input embeddings", "all but the embeddings", 7
_FILE_NAME = re.compile(r"\.(?:png|jpe?g|svg|gif)$", re.IGNORECASE)


@dataclass(frozen=True)
class Defect:
    """One defect: the page, its class, and the text around it."""

    page: str
    kind: str
    text: str

    def __str__(self) -> str:
        return f"{self.page}: {self.kind}: {self.text}"


def _soup(html: str):
    from bs4 import BeautifulSoup

    return BeautifulSoup(html, "html.parser")


def _article(soup):
    """The page's own content: the article, without the theme's navigation around it."""
    return soup.find("article") or soup.find("main") or soup.body or soup


def _prose_blocks(article):
    """Paragraphs, list items, captions and headings (a Markdown output's too), without the code,
    stream outputs and tables in them."""
    for block in article.find_all(["p", "li", "figcaption", "h1", "h2", "h3", "h4", "dt", "dd"]):
        if block.find_parent(["pre", "table", "figcaption"]) and block.name != "figcaption":
            continue
        if block.name == "li" and block.find(["p", "ul", "ol"]):
            continue  # its paragraphs are read on their own
        copy = _soup(str(block))
        for shown in copy.find_all(["pre", "table"]):
            shown.decompose()
        for code in copy.find_all("code"):  # inline code is a word of the sentence, not its prose
            code.replace_with(" CODE ")
        text = " ".join(copy.get_text(" ").split())
        # get_text(" ") spaces every inline element apart: "9.04 ," was "9.04," on the page
        yield re.sub(r"\(\s+", "(", re.sub(r"\s+([,.;:!?)])", r"\1", text))


def _context(text: str, match: re.Match, width: int = 60) -> str:
    return text[max(0, match.start() - width):match.end() + width]


def page_defects(html: str, page: str = "page") -> list[Defect]:
    """Every defect found in one page of the built book."""
    article = _article(_soup(html))
    found: list[Defect] = []
    for text in _prose_blocks(article):
        for match in _REPEATED_WORD.finditer(text):
            found.append(Defect(page, "repeated word", _context(text, match)))
        for match in _REPEATED_ENDING.finditer(text):
            found.append(Defect(page, "template fragment (a clause ending repeated)", _context(text, match)))
        for pattern, what in _TEMPLATE:
            for match in pattern.finditer(text):
                found.append(Defect(page, f"template fragment ({what})", _context(text, match)))
        for match in _CHANGELOG.finditer(text):
            found.append(Defect(page, "changelog wording", _context(text, match)))
    visible = " ".join(article.get_text(" ").split())  # code and outputs too: a reader copies them
    for match in _PLACEHOLDER.finditer(visible):
        found.append(Defect(page, "placeholder", _context(visible, match)))
    for listing in article.find_all(["ol", "ul"]):
        text = " ".join(listing.get_text(" ").split())
        if _FIRST_STAGE in text and _LAST_STAGE in text:
            items = listing.find_all("li", recursive=False)
            if len(items) < _STAGES:
                found.append(Defect(page, f"stage list of {len(items)} items, not {_STAGES}", text[:160]))
    for image in article.find_all("img"):
        figure = image.find_parent("figure")
        caption = figure.find("figcaption") if figure is not None else None
        source = image.get("src", "")
        if caption is None or not caption.get_text(strip=True):
            found.append(Defect(page, "figure without a caption", source))
        elif not re.search(r"\b(?:Fig\.|Figure)\s*\d+", caption.get_text(" ")):
            found.append(Defect(page, "figure without a number", source))
        alt = (image.get("alt") or "").strip()
        if not alt or alt == source or _FILE_NAME.search(alt):
            found.append(Defect(page, "figure without alt text", source))
    return found


def book_defects(html_dir: Path) -> list[Defect]:
    """Every defect on every page of a built book (``_build/html``)."""
    html_dir = Path(html_dir)
    found: list[Defect] = []
    for path in sorted(html_dir.rglob("*.html")):
        if path.name in SKIPPED_PAGES or "_static" in path.parts or "_sources" in path.parts:
            continue
        found += page_defects(path.read_text(encoding="utf-8"), str(path.relative_to(html_dir)))
    return found


__all__ = ["Defect", "book_defects", "page_defects"]
