"""The one exception type users see: a sentence naming the bad value and what was expected."""

from __future__ import annotations

import difflib


class TokenmathError(ValueError):
    """Bad input. The message is one sentence for a person; the CLI prints it and exits 2."""


def unknown_name(kind: str, name: str, known: list[str]) -> TokenmathError:
    """An error for an unknown catalog name, listing the close matches (exact names only)."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    if not close:
        close = [k for k in known if name.lower() in k.lower()][:3]
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    shown = name if len(name) <= 80 else name[:77] + "..."
    listing = {"price sheet": "tokenmath prices sheets"}.get(kind, f"tokenmath {kind}s")
    return TokenmathError(f"unknown {kind} {shown!r}{hint} (run `{listing}` to list all {len(known)})")
