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


def read_user_file(path, where: str, max_bytes: int, what: str) -> bytes:
    """The bytes of a file a user names, at most `max_bytes`; one sentence naming `where` for a
    missing file, an oversized one, or an OS refusal (name too long, permission, a directory, NUL)."""
    from pathlib import Path

    p = Path(path)
    try:
        if not p.is_file():
            raise TokenmathError(f"{where} does not exist")
        size = p.stat().st_size
        if size > max_bytes:
            raise TokenmathError(f"{where} is {size:,} bytes; {what} is at most {max_bytes:,} bytes")
        return p.read_bytes()
    except TokenmathError:
        raise
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise TokenmathError(f"{where} cannot be read ({reason})") from None
