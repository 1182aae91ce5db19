"""The built book reads right: no template fragments, placeholders, changelog wording, broken stage
lists or uncaptioned figures (eeve_lib.book.prose_check), and each of those defects, put back into
a real page of the built book, is caught."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from eeve_lib.book.prose_check import book_defects, page_defects


def _html(micro_run) -> Path:
    return Path(micro_run["index"]).parent


def _page(micro_run, name: str) -> str:
    return (_html(micro_run) / "book" / name).read_text(encoding="utf-8")


def test_the_built_book_reads_without_defects(micro_run):
    defects = book_defects(_html(micro_run))
    assert not defects, "\n".join(map(str, defects))


def _first_paragraph_after(html: str, heading_text: str) -> tuple[int, int]:
    """Where the first <p> after a heading's text starts and ends."""
    at = html.index(heading_text)
    start = html.index("<p>", at)
    return start, html.index("</p>", start)


PUT_BACK = {
    # the defect class: (page, how to put it back, the kind the checker must report)
    "repeated word": ("05_evaluation.html",
                      lambda p, e: p[:e] + " It is is shown twice." + p[e:], "repeated word"),
    "repeated clause": ("03_embedding_init.html",
                        lambda p, e: p[:e] + " The base is better than uniform, the other better than uniform." + p[e:],
                        "clause ending repeated"),
    "0% bound": ("05_evaluation.html",
                 lambda p, e: p[:e] + " (at most 0% of the letters are Hangul)" + p[e:], "a bound of 0%"),
    "100% twice": ("02_frequency_loop.html",
                   lambda p, e: p[:e] + " It keeps 100% of the tokens and 100% of the merges." + p[e:],
                   "the same 0% or 100% twice"),
    "nan": ("05_evaluation.html", lambda p, e: p[:e] + " It scores nan bits." + p[e:], "never computed"),
    "raw role": ("04_seven_stages.html",
                 lambda p, e: p[:e] + " It fell to {glue:text}`ko_after:.2f`." + p[e:], "raw glue role"),
    "placeholder": ("04_seven_stages.html",
                    lambda p, e: p[:e] + " Clone &lt;the course repository&gt; first." + p[e:], "placeholder"),
    "changelog": ("02_frequency_loop.html",
                  lambda p, e: p[:e] + " The ids changed (issue 11) before the fix." + p[e:], "changelog"),
}


@pytest.mark.parametrize("name", list(PUT_BACK))
def test_a_prose_defect_put_back_is_caught(micro_run, name):
    page_name, put_back, kind = PUT_BACK[name]
    page = _page(micro_run, page_name)
    assert not [d for d in page_defects(page, page_name) if kind in d.kind]
    _, end = _first_paragraph_after(page, "</h1>")
    broken = put_back(page, end)
    assert [d for d in page_defects(broken, page_name) if kind in d.kind], name


def test_a_stage_list_run_together_is_caught(micro_run):
    page = _page(micro_run, "04_seven_stages.html")
    items = page.count("<li>", page.index("new input embeddings") - 200, page.index("all but the embeddings"))
    assert items >= 7 and not [d for d in page_defects(page) if "stage list" in d.kind]
    # Markdown that puts two stages on one line renders them as one item: what the page once showed
    start = page.index("<li>", page.index("new input embeddings") - 200)
    second = page.index("<li>", start + 4)
    run_together = page[:page.rindex("</li>", 0, second)] + "; 2." + page[second + 4:]
    assert [d for d in page_defects(run_together) if "stage list of 6 items" in d.kind]


def test_a_figure_without_caption_number_or_alt_text_is_caught(micro_run):
    page = _page(micro_run, "04_seven_stages.html")
    assert "<figcaption" in page and not [d for d in page_defects(page) if "figure" in d.kind]
    uncaptioned = page.replace("<figcaption", "<div").replace("</figcaption>", "</div>")
    assert [d for d in page_defects(uncaptioned) if d.kind == "figure without a caption"]
    unnumbered = re.sub(r'<span class="caption-number">.*?</span>', "", page)
    assert [d for d in page_defects(unnumbered) if d.kind == "figure without a number"]
    no_alt = re.sub(r'alt="[^"]*"', lambda m: 'alt="../_images/x.png"', page)
    assert [d for d in page_defects(no_alt) if d.kind == "figure without alt text"]
