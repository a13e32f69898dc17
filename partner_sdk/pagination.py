"""Auto-paging over the API's cursor lists.

A list answers ``{"items": [...], "next_cursor": "..." | null}``; the next page is the
same request with ``cursor=next_cursor``. A :class:`Pager` fetches a page only when
iteration reaches it, so ``next(iter(pager))`` costs one request and breaking out of a
loop stops the fetching. Iterating again starts again from the first page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: ``fetch(params) -> page body``: one GET of the list with these query parameters.
Fetch = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page: its items (parsed) and the cursor of the next (None on the last)."""

    items: list[T]
    next_cursor: str | None


class Pager(Generic[T]):
    """Every item of a cursor-paginated list, fetched lazily page by page.

    ``params`` are the list's filters; ``limit`` among them is the page size, not a
    total (use :func:`itertools.islice` to take the first N).
    """

    def __init__(self, fetch: Fetch, params: Mapping[str, Any],
                 parse: Callable[[dict[str, Any]], T]) -> None:
        self._fetch = fetch
        self._params = dict(params)
        self._parse = parse

    def pages(self) -> Iterator[Page[T]]:
        """Each page in turn, fetched when the previous one has been handed out."""
        cursor: str | None = self._params.get("cursor")
        while True:
            body = self._fetch({**self._params, "cursor": cursor})
            if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                raise TypeError("a list answer must be {'items': [...], 'next_cursor': ...}")
            next_cursor = body.get("next_cursor") or None
            yield Page([self._parse(item) for item in body["items"]], next_cursor)
            if next_cursor is None or next_cursor == cursor:
                return
            cursor = next_cursor

    def __iter__(self) -> Iterator[T]:
        for page in self.pages():
            yield from page.items

    def first_page(self) -> Page[T]:
        """Just the first page (one request)."""
        return next(self.pages())

    def to_list(self) -> list[T]:
        """Every item of every page (as many requests as there are pages)."""
        return list(self)
