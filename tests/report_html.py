"""The tables of a study report's HTML, parsed back (for the report tests)."""

from __future__ import annotations

from html.parser import HTMLParser


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[dict[str, str]]]] = {}
        self.texts: dict[str, list[str]] = {}
        self._section = ""
        self._header: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_body = False
        self._para: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "h2":
            self._section = dict(attrs).get("id", "")
        elif tag == "table":
            self.tables.setdefault(self._section, []).append([])
            self._header = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "p":
            self._para = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._para is not None:
            self._para.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if self._in_body:
                self.tables[self._section][-1].append(dict(zip(self._header, self._row)))
            else:
                self._header = self._row
            self._row = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "p" and self._para is not None:
            self.texts.setdefault(self._section, []).append("".join(self._para))
            self._para = None


def report_tables(page: str) -> tuple[dict[str, list[list[dict[str, str]]]], dict[str, list[str]]]:
    """``(tables, texts)``: per section id, its tables (each a list of rows, a row ``{column: cell}``)
    and its paragraphs' text."""
    parser = _Tables()
    parser.feed(page)
    return parser.tables, parser.texts
