"""The one exception type users see (a sentence naming the bad value and what was expected), and the
one bounded reader every file a user names goes through (read_user_file, read_user_text, read_user_json)."""

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


# ---- the one bounded reader: every file a user names goes through here -------------------------------

READ_CHUNK_BYTES = 1 << 20
MAX_JSON_DEPTH = 64  # the deepest file tokenmath reads (a preset, a benchmark result) nests ~6 levels
MAX_JSON_ITEMS = 5_000_000  # values in one JSON document (a 64 MB vLLM result of per-request arrays: ~3M)


def file_kind(mode: int) -> str | None:
    """What a path that is not a regular file is, in words (None for a regular file)."""
    import stat

    for test, words in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                        (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return None if stat.S_ISREG(mode) else "not a regular file"


def read_user_file(path, where: str, max_bytes: int, what: str) -> bytes:
    """The bytes of a file a user names, at most `max_bytes`, or one sentence naming `where` and the
    reason: it does not exist, it is a folder, a FIFO or a device (never read: /dev/zero and a pipe
    are endless), it is larger than `max_bytes` (by stat, and again while reading, for files whose
    size stat does not know, e.g. under /proc), or the OS refuses (permission, a name too long, a
    NUL in the name, an I/O error). Opened without blocking, so a FIFO with no writer cannot hang."""
    import errno
    import os

    try:
        name = os.fspath(path)
    except TypeError:
        raise TokenmathError(f"{where} is not a file name") from None
    if not (name.strip() if isinstance(name, str) else name):
        raise TokenmathError(f"{where}: the file name is empty; give the path of {what}")
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise TokenmathError(f"{where} does not exist") from None
    except ValueError:  # an embedded NUL
        raise TokenmathError(f"{where} cannot be read (its name holds a NUL character)") from None
    except OSError as e:
        if e.errno == errno.EISDIR:
            raise TokenmathError(f"{where} is a folder; expected {what}") from None
        raise TokenmathError(f"{where} cannot be read ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)
        kind = file_kind(st.st_mode)
        if kind is not None:
            raise TokenmathError(f"{where} is {kind}, not a regular file; expected {what}")
        if st.st_size > max_bytes:
            raise TokenmathError(f"{where} is {st.st_size:,} bytes; {what} is at most {max_bytes:,} bytes")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(READ_CHUNK_BYTES, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise TokenmathError(f"{where} is more than {max_bytes:,} bytes; {what} is at most {max_bytes:,} bytes")
        return b"".join(chunks)
    except TokenmathError:
        raise
    except OSError as e:
        raise TokenmathError(f"{where} cannot be read ({e.strerror or e})") from None
    finally:
        os.close(fd)


def decode_text(raw: bytes, where: str, kind: str) -> str:
    """UTF-8 text (a leading byte-order mark dropped), or one sentence: UTF-16 and binary data (a NUL
    byte) are named as such, other bad bytes by their offset and line."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in raw:
        raise TokenmathError(f"{where} looks like UTF-16 or binary data; expected UTF-8 {kind}")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise TokenmathError(f"{where} is not UTF-8 text (byte {raw[e.start]:#04x} at offset {e.start:,}, line"
                             f" {line:,}); expected UTF-8 {kind}") from None


def read_user_text(path, where: str, max_bytes: int, what: str, kind: str = "text") -> str:
    """read_user_file, then decode_text."""
    return decode_text(read_user_file(path, where, max_bytes, what), where, kind)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json(text: str, where: str, *, max_depth: int = MAX_JSON_DEPTH, max_items: int = MAX_JSON_ITEMS,
               allow_nan: bool = False):
    """A JSON document with bounded nesting and size, or one sentence: not JSON (with the line), nested
    deeper than `max_depth`, more than `max_items` values, NaN/Infinity (unless allow_nan), an integer
    too long to convert."""
    import json

    try:
        data = json.loads(text) if allow_nan else json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise TokenmathError(f"{where} is not JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise TokenmathError(f"{where} nests arrays or objects too deeply to read (at most {max_depth} levels)") from None
    except ValueError as e:  # NaN/Infinity refused, an integer past Python's 4,300-digit limit
        raise TokenmathError(f"{where} is not JSON that tokenmath can read ({str(e)[:80]})") from None
    check_nesting(data, where, max_depth=max_depth, max_items=max_items)
    return data


def check_nesting(data, where: str, *, max_depth: int = MAX_JSON_DEPTH, max_items: int = MAX_JSON_ITEMS) -> None:
    """One sentence when parsed JSON/TOML nests deeper than `max_depth` or holds more than `max_items`
    values (an explicit stack: no recursion, however deep the data)."""
    stack, items = [(data, 1)], 0
    while stack:
        x, depth = stack.pop()
        items += 1
        if items > max_items:
            raise TokenmathError(f"{where} holds more than {max_items:,} values; tokenmath reads at most that many")
        if isinstance(x, (dict, list)):
            if depth > max_depth:
                raise TokenmathError(f"{where} nests arrays or objects {depth} levels deep; at most {max_depth}")
            stack.extend((v, depth + 1) for v in (x.values() if isinstance(x, dict) else x))


def read_user_json(path, where: str, max_bytes: int, what: str, **kw):
    """read_user_text, then parse_json (bounded depth and size)."""
    return parse_json(read_user_text(path, where, max_bytes, what, "JSON"), where, **kw)


MAX_CASE_FILE_BYTES = 8_000_000  # one case file (a case is ~1.5 KB: ~5,000 cases)
MAX_CASES_PER_FILE = 10_000


def read_json_lines(path, where: str, *, max_bytes: int = MAX_CASE_FILE_BYTES, max_records: int = MAX_CASES_PER_FILE,
                    max_depth: int = 4, what: str = "a case file"):
    """(line number, parsed object) for each record of a JSON-lines user file, read through the one
    bounded reader: size first, UTF-8, each line's nesting bounded, at most `max_records` records;
    blank lines and lines starting with '#' skipped. One sentence naming the file and line on error."""
    text = read_user_text(path, where, max_bytes, what, "JSON lines")
    n = 0
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        n += 1
        if n > max_records:
            raise TokenmathError(f"{where} holds more than {max_records:,} records; split it")
        yield i, parse_json(line, f"{where}, line {i}", max_depth=max_depth)


def validation_message(e) -> str:
    """A pydantic ValidationError's first error as one phrase: "field 'loc': message"."""
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err.get("loc", ()))
    return f"field {loc!r}: {err.get('msg', '').removeprefix('Value error, ')}"

