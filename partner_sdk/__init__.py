"""Pointclear partner SDK (the client partners install). Built in a later issue; it will
import nothing from ``app`` or ``ledger`` so that it ships as its own wheel."""
