"""Where tokenmath writes: one policy for every file it writes (DESIGN.md habit 12).

Every output a user names (`--plot`, `--plot-energy`, `--plots DIR`, `--out`/`-o`, `--cases-out`) is
checked by `output_path` (or `output_folder`) before any work is done, and written by `write_atomic`:

- the folder must exist and be writable (tokenmath never creates a folder for a file; `--plots DIR`
  may be one new folder inside an existing one); the name must fit (255 bytes, 4,096 for the path);
- never the same file as an input: compared by device and inode (hard links, `./x` vs `x`) and by
  the fully resolved path (symbolic links), so `import in.json -o in.json` is refused;
- never through a symbolic link: a link at the output's name is refused unless the user passes
  `--force`, and then the link's target is written (the link stays); folders, FIFOs and devices are
  never written;
- an existing file is replaced only where the command says it replaces (charts: a view the command
  redraws from its inputs) or with `--force` (data others read as input: cases, presets, system
  TOML, whose loss cannot be undone by running the command again);
- written atomically: into a temporary file in the same folder, flushed to disk, then renamed over
  the name, so a failure at any point leaves the old file whole and no half-written file behind. A
  file that must not be replaced is linked into place (os.link), which fails if one appeared meanwhile.

Vocabulary layer: imports only errors.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .errors import TokenmathError, file_kind

MAX_NAME_BYTES = 255  # one path component (ext4, XFS, APFS, NTFS)
MAX_PATH_BYTES = 4096  # PATH_MAX on Linux


def _shown(text: str) -> str:
    return text if len(text) <= 120 else text[:117] + "..."


def _kind(mode: int) -> str:
    return file_kind(mode) or "not a regular file"


def _check_name(text: str, flag: str) -> None:
    if "\x00" in text:
        raise TokenmathError(f"{flag} = {_shown(text)!r} holds a NUL character; give a file name")
    name = os.path.basename(text.rstrip("/")) if text.rstrip("/") else text
    if len(name.encode(errors="surrogateescape")) > MAX_NAME_BYTES:
        raise TokenmathError(f"{flag}: the file name is {len(name.encode(errors='surrogateescape')):,} bytes long;"
                             f" at most {MAX_NAME_BYTES} fit")
    if len(text.encode(errors="surrogateescape")) > MAX_PATH_BYTES:
        raise TokenmathError(f"{flag}: the path is {len(text.encode(errors='surrogateescape')):,} bytes long;"
                             f" at most {MAX_PATH_BYTES:,} fit")


def _writable_folder(folder: Path, flag: str, given: str) -> None:
    try:
        is_dir = folder.is_dir()
        exists = is_dir or folder.exists()
    except (OSError, ValueError):
        is_dir = exists = False
    if not is_dir:
        what = "is not a folder" if exists else "does not exist"
        raise TokenmathError(f"{flag} = {_shown(given)!r}: the folder {_shown(str(folder))!r} {what}; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise TokenmathError(f"{flag} = {_shown(given)!r}: the folder {_shown(str(folder))!r} is not writable")


def _identity(path) -> tuple[tuple[int, int] | None, str | None]:
    """(device, inode) of what `path` names (links followed) and its fully resolved path; None where
    it cannot be known (a name the OS refuses)."""
    try:
        text = os.fspath(path)
        if not isinstance(text, str) or not text or "\x00" in text or len(text) > MAX_PATH_BYTES:
            return None, None
    except TypeError:
        return None, None
    try:
        st = os.stat(text)
        ident = (st.st_dev, st.st_ino)
    except (OSError, ValueError):
        ident = None
    try:
        real = os.path.realpath(text)
    except (OSError, ValueError):
        real = None
    return ident, real


def _same_as_input(target: str, flag: str, given: str, inputs) -> None:
    """Refuse an output that is an input. Only inputs that exist are files the command reads (a
    catalog name like 'llama-3.1-8b' is not); an output that does not exist yet cannot be one of them."""
    ident, real = _identity(target)
    if ident is None:
        return
    for x in inputs or ():
        if x is None:
            continue
        i_ident, i_real = _identity(x)
        if i_ident is not None and (ident == i_ident or real == i_real):
            raise TokenmathError(f"{flag} = {_shown(given)!r} is the same file as the input {_shown(os.fspath(x))!r};"
                                 " tokenmath never writes over what it reads: give another name")


_CHART_STARTS = (b"\x89PNG", b"<?xml", b"<svg", b"%PDF", b"\xff\xd8")  # PNG, SVG, PDF, JPEG


def _holds_a_chart(path) -> bool:
    """Whether an existing file is empty or begins as a chart does: what a chart output replaces
    without --force (a chart from an earlier run), where any other file needs it."""
    try:
        with open(path, "rb") as f:
            head = f.read(64).lstrip()
    except OSError:
        return True  # unreadable: the writability check says what is wrong
    return not head or head.startswith(_CHART_STARTS)


def output_path(path, flag: str, *, inputs=(), force: bool = False, replaces: bool = False,
                suffixes: tuple[str, ...] | None = None) -> Path:
    """Check, before any work, that `path` may be written under the policy above; return the path to
    write (the link's target when `force` writes through a symbolic link). `replaces`: the command
    documents that it replaces an existing file (charts); otherwise an existing file needs `force`.
    `suffixes`: the file name must end in one of them (chart formats). `inputs`: every path the
    command reads (strings that name no file are ignored)."""
    given = os.fspath(path)
    if not isinstance(given, str):
        given = os.fsdecode(given)
    if given.strip() in ("", "."):
        raise TokenmathError(f"{flag} = {given!r} names no file (an empty value reads as '.', this folder); give a"
                             " file name")
    _check_name(given, flag)
    p = Path(given)
    if suffixes is not None:
        formats = ", ".join(suffixes)
        if given.endswith("/"):
            raise TokenmathError(f"{flag} = {_shown(given)!r} is a folder; give a file name ending in one of {formats}")
        if not p.suffix:
            raise TokenmathError(f"{flag} = {_shown(given)!r} has no file extension; end it in one of {formats}")
        if p.suffix.lower() not in suffixes:
            raise TokenmathError(f"{flag} = {_shown(given)!r}: format {p.suffix!r} is not supported; use one of {formats}")
    try:
        st = os.lstat(given)
    except FileNotFoundError:
        st = None
    except (OSError, ValueError):  # e.g. a file where a folder should be: the folder check names it
        st = None
    target = given
    if st is not None and stat.S_ISLNK(st.st_mode):
        try:
            dest = os.readlink(given)
        except OSError:
            dest = "?"
        real = os.path.realpath(given)
        if not force:
            gone = "" if os.path.exists(given) else ", which does not exist"
            raise TokenmathError(f"{flag} = {_shown(given)!r} is a symbolic link (to {_shown(dest)!r}{gone}); tokenmath"
                                 " does not write through links: give another name, or --force to write to its target")
        target = real
        try:
            st = os.stat(target)
        except (OSError, ValueError):
            st = None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            ending = f" ending in one of {', '.join(suffixes)}" if suffixes else ""
            raise TokenmathError(f"{flag} = {_shown(given)!r} is a folder; give a file name{ending}")
        if not stat.S_ISREG(st.st_mode):
            raise TokenmathError(f"{flag} = {_shown(given)!r} is {_kind(st.st_mode)}; tokenmath writes only regular files")
    _writable_folder(Path(target).parent, flag, given)
    _same_as_input(target, flag, given, inputs)
    if st is not None:
        if not (force or replaces):
            raise TokenmathError(f"{flag} = {_shown(given)!r} already exists; give --force to replace it, or another name")
        if replaces and not force and not _holds_a_chart(target):
            raise TokenmathError(f"{flag} = {_shown(given)!r} already exists and holds no chart (a PNG, SVG or PDF): "
                                 "give --force to replace it, or another name")
        if not os.access(target, os.W_OK):
            raise TokenmathError(f"{flag} = {_shown(given)!r} exists and is read-only; tokenmath does not replace it")
    return Path(target)


def output_folder(path, flag: str, *, inputs=(), force: bool = False, files: tuple[str, ...] = (),
                  suffixes: tuple[str, ...] | None = None) -> Path:
    """A folder the command writes `files` into (charts, which replace): an existing writable folder
    (not a symbolic link unless `force`), or one new folder inside an existing writable one, made when
    the files are written. Each of `files` already there is checked by output_path."""
    given = os.fspath(path)
    if not isinstance(given, str):
        given = os.fsdecode(given)
    if given.strip() == "":  # (typer reads an empty Path as '.': the option is text, so '' is seen)
        raise TokenmathError(f"{flag} = {given!r} names no folder; give a folder name ('.' for this one)")
    _check_name(given, flag)
    p = Path(given)
    try:
        st = os.lstat(given)
    except (OSError, ValueError):
        st = None
    if st is not None and stat.S_ISLNK(st.st_mode) and not force:
        raise TokenmathError(f"{flag} = {_shown(given)!r} is a symbolic link; tokenmath does not write through links:"
                             " give another folder, or --force to write into its target")
    if st is None:
        _writable_folder(p.parent, flag, given)
        return p
    if not os.path.isdir(given):
        raise TokenmathError(f"{flag} = {_shown(given)!r} is {_kind(st.st_mode) if not stat.S_ISREG(st.st_mode) else 'a file'},"
                             " not a folder; give a folder for the charts")
    _writable_folder(p, flag, given)
    for name in files:
        output_path(p / name, flag, inputs=inputs, force=force, replaces=True, suffixes=suffixes)
    return p


def _mode_for(path: str) -> int:
    """The permission bits a new file gets (0o666 less the umask), or the old file's when replacing."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def write_atomic(path, data: bytes | str, *, flag: str = "output", replace: bool = True) -> Path:
    """Write `data` to `path` atomically: a temporary file in the same folder, flushed and synced,
    then renamed over `path` (replace=True) or linked to it (replace=False: fails if a file appeared
    there since the check). A symbolic link at `path` is replaced, never written through. On any
    failure the old file is whole and the temporary one removed; the error is one sentence."""
    p = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    folder = p.parent
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name[:100]}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(str(p)))
        if replace:
            os.replace(tmp, p)
            tmp = None
        else:
            try:
                os.link(tmp, p)
            except FileExistsError:
                raise TokenmathError(f"{flag} = {_shown(str(p))!r} appeared while tokenmath worked; give --force to"
                                     " replace it, or another name") from None
            except OSError:  # a filesystem without hard links: check, then rename
                if os.path.lexists(p):
                    raise TokenmathError(f"{flag} = {_shown(str(p))!r} appeared while tokenmath worked; give --force"
                                         " to replace it, or another name") from None
                os.replace(tmp, p)
                tmp = None
    except TokenmathError:
        raise
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise TokenmathError(f"{flag} = {_shown(str(p))!r} could not be written ({reason}); nothing was changed") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return p
