"""How domain records look to API clients: operations as JSON-ready dicts.

The presentation lives in the clearing layer (:mod:`app.clearing.presentation`) because
webhooks, written in the booking's own transaction, carry the very same shape; this
module is the API's name for it.
"""

from __future__ import annotations

from app.clearing.presentation import PARTNER_ONLY, operation, operations

__all__ = ["PARTNER_ONLY", "operation", "operations"]
