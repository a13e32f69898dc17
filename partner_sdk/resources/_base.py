"""What every resource shares: the client's requester and body building."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from ..pagination import Pager, T
from ..requester import Requester
from ..signing import segment


def as_dict(item: dict[str, Any]) -> dict[str, Any]:
    """A pager's item parser for answers the SDK hands out as plain dicts."""
    return item


def compact(**fields: Any) -> dict[str, Any]:
    """A request body without the fields left unset (the API refuses ``null``), instants
    as RFC 3339."""
    return {name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in fields.items() if value is not None}


class Resource:
    """A group of endpoints sharing one :class:`~partner_sdk.requester.Requester`."""

    def __init__(self, requester: Requester) -> None:
        self._requester = requester

    def _post(self, path: str, body: Mapping[str, Any], idempotency_key: str | None) -> Any:
        return self._requester.request("POST", path, json=dict(body),
                                       idempotency_key=idempotency_key).body

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self._requester.request("GET", path, params=params).body

    def _pager(self, path: str, params: Mapping[str, Any],
               parse: Callable[[dict[str, Any]], T]) -> Pager[T]:
        return Pager(lambda page_params: self._get(path, page_params), params, parse)


__all__ = ["Resource", "compact", "segment"]
