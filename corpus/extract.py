"""Prose out of documentation formats: HTML (the paragraphs, list items and definitions, never code), and helpers
shared by the corpus build. Standard library only, so the build needs nothing but Python."""

from __future__ import annotations

import html.parser
import re
import unicodedata

WS = re.compile(r"[ \t\n\r\f\v\u00a0\u2000-\u200b]+")


def norm(text: str) -> str:
    return WS.sub(" ", unicodedata.normalize("NFC", text)).strip()


# The commonest English function words: a line of English prose has some; other languages and code rarely do.
ENGLISH = set("the of and to a in is that for it as with was on be by this are or from at an not which have but "
              "you can if will has its all one their there they when more also may been other these we than".split())


def english(line: str) -> bool:
    words = [w.strip(".,;:!?()\"'").lower() for w in line.split()]
    return sum(w in ENGLISH for w in words) >= max(2, 0.15 * len(words))


def prose(line: str, min_words: int = 5) -> bool:
    """An English sentence-like line: enough words, mostly letters, not a code fragment."""
    words = line.split()
    if len(words) < min_words or not english(line):
        return False
    letters = sum(c.isalpha() for c in line)
    if letters < 0.7 * len(line.replace(" ", "")):
        return False
    code = sum(c in "{}[]<>=;$\\|_#" for c in line)
    return code <= 0.02 * len(line)


class _Paragraphs(html.parser.HTMLParser):
    BLOCKS = {"p", "li", "dd", "dt", "blockquote", "td", "h1", "h2", "h3", "h4", "h5", "h6", "div", "br", "tr",
              "section", "article", "table", "ul", "ol", "dl", "title"}
    SKIP = {"pre", "script", "style", "nav", "head", "footer", "header", "button", "select", "textarea", "svg",
            "math"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.buf: list[str] = []
        self.skip = 0

    def _flush(self) -> None:
        text = norm("".join(self.buf))
        if text:
            self.out.append(text)
        self.buf = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self.SKIP:
            self.skip += 1
        elif tag in self.BLOCKS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.buf.append(data)


def html_paragraphs(text: str) -> list[str]:
    """The text blocks of an HTML page, outside code blocks (inline code stays: a name in a sentence reads as a
    word; a line that is mostly code fails `prose`)."""
    p = _Paragraphs()
    p.feed(text)
    p.close()
    p._flush()
    return p.out
