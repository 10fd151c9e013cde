"""Files on disk, written safely: content hashes, fsync, atomic replace and atomic swap.

One home for the file primitives the pipeline's writers share (ingest, the serving
database, the exports, the report, the erasure's compaction):

- :func:`file_sha256`: the SHA-256 of a file's bytes (raw.files lineage, export manifests).
- :func:`fsync_file`, :func:`fsync_dir`: flush a file's data, or a rename, to disk.
- :func:`copy_permissions`: a replacement file keeps the mode and group of the old one.
- :func:`safe_token`, :func:`temp_path_for`: hidden ``.<name>.tmp-<run_id>`` names beside
  a destination; :func:`remove_stale_temp_files` deletes those of crashed runs.
- :func:`publish_file_atomically`, :func:`write_text_atomically`: replace one file in one
  atomic step (readers see the old file or the new one, never a part).
- :func:`publish_directory`, :func:`recover_directory_swaps`: replace a whole directory
  (Linux ``renameat2`` exchange, else two renames) and repair what a crash left.

Nothing here knows about DuckDB, the exports or the report.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import logging
import os
import re
import shutil
import stat
import sys
from pathlib import Path

from pipelines.errors import StepError

log = logging.getLogger(__name__)

_TEMP_MARKER = ".tmp-"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- fsync and permissions ----------------------------------------------------------------


def fsync_file(path: Path) -> None:
    """Flush a closed file's data to disk, so a rename never publishes an empty file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a directory entry change (a rename) to disk; a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def copy_permissions(existing: Path, new: Path) -> None:
    """Give ``new`` the mode (and group, where allowed) of the file it will replace.

    A rename replaces the inode, so without this an administrator's ``chmod 640`` /
    ``chgrp bi`` on the serving database would be undone by every publish.
    """
    try:
        st = os.stat(existing)
    except FileNotFoundError:
        return
    os.chmod(new, stat.S_IMODE(st.st_mode))
    try:
        os.chown(new, -1, st.st_gid)
    except (PermissionError, AttributeError):  # not a member of that group; not POSIX
        pass


# --- atomic file replace ------------------------------------------------------------------


def safe_token(text: str) -> str:
    """``text`` reduced to characters that are safe in a file name (run ids, as-of dates)."""
    token = re.sub(r"[^A-Za-z0-9_.-]", "_", str(text))
    return token or "run"


def temp_path_for(dest: Path, run_id: str) -> Path:
    """The hidden temporary name beside ``dest`` that a writer fills before publishing.

    Same directory, hence same file system, so :func:`publish_file_atomically` can rename
    it into place. Creates the directory.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest.with_name(f".{dest.name}{_TEMP_MARKER}{safe_token(run_id)}")


def publish_file_atomically(src_tmp: Path, dest: Path) -> Path:
    """Move a completely written ``src_tmp`` over ``dest`` in one atomic step.

    ``src_tmp`` must be closed and on the same file system as ``dest`` (write it at
    :func:`temp_path_for` ``(dest, run_id)``). Readers see the old file or the new one,
    never a partial file. An existing ``dest`` passes its mode and group on. Returns
    ``dest``.
    """
    src_tmp, dest = Path(src_tmp), Path(dest)
    if not src_tmp.is_file():
        raise StepError(f"Cannot publish {dest}: the temporary file {src_tmp} does not exist.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if os.stat(src_tmp).st_dev != os.stat(dest.parent).st_dev:
        raise StepError(
            f"Cannot publish {dest} atomically: the temporary file {src_tmp} is "
            "on another file system. Write it beside the destination "
            "(pipelines.files.temp_path_for)."
        )
    copy_permissions(dest, src_tmp)
    fsync_file(src_tmp)
    os.replace(src_tmp, dest)
    fsync_dir(dest.parent)
    return dest


def remove_stale_temp_files(dest: Path, keep: Path | None = None) -> list[Path]:
    """Delete leftovers of crashed publishes of ``dest`` (``.<name>.tmp-*`` beside it).

    Runs on one warehouse are serialised by DuckDB's lock on the working database, so a
    temporary file that exists when a publish starts belongs to a run that died.
    """
    removed = []
    directory = Path(dest).parent
    if not directory.is_dir():
        return removed
    for path in directory.glob(f".{Path(dest).name}{_TEMP_MARKER}*"):
        if keep is not None and path == keep:
            continue
        if path.is_file():
            path.unlink()
            removed.append(path)
    if removed:
        log.info("removed %d leftover temporary file(s) of %s", len(removed), dest)
    return removed


def write_text_atomically(
    path: Path, text: str, run_id: str, new_file_mode: int | None = None
) -> Path:
    """Write beside ``path`` under :func:`temp_path_for`'s name, then swap it in with
    :func:`publish_file_atomically` (readers see the old file or the new one, never a part;
    a failure leaves the old one). Leftovers of a crashed run are removed first. A new
    file (no ``path`` yet) gets ``new_file_mode`` when given; an existing one passes its
    own mode on."""
    temporary = temp_path_for(path, run_id)
    remove_stale_temp_files(path)
    try:
        with open(temporary, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        if new_file_mode is not None and not path.exists():
            os.chmod(temporary, new_file_mode)
        return publish_file_atomically(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


# --- atomic directory swap ----------------------------------------------------------------

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directory entries atomically (Linux renameat2 RENAME_EXCHANGE).

    Returns False where the system or file system cannot (other OS, old kernel or libc,
    some network file systems); the caller then falls back to two renames.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def publish_directory(tmp: Path, final: Path) -> None:
    """Put the completely written directory ``tmp`` in place of ``final``.

    POSIX cannot rename a directory over a non-empty one, so:

    1. ``final`` absent: rename ``tmp`` to ``final`` (atomic).
    2. Linux: exchange ``tmp`` and ``final`` in one atomic step, then delete ``tmp`` (which
       now holds the old files). A crash before the delete leaves the new directory in
       place and the old one under the hidden tmp name, removed by the next run.
    3. Elsewhere: rename ``final`` to ``.<name>.old-<token>``, rename ``tmp`` to ``final``,
       delete the old one. A crash between the two renames leaves no ``final`` for a
       moment: :func:`recover_directory_swaps` (which a writer runs before it publishes)
       renames the old directory back. A crash after them leaves a hidden ``.old-`` that
       it removes.

    ``tmp`` and ``final`` must be siblings; name ``tmp`` ``.<name>.tmp-<token>`` so that
    :func:`recover_directory_swaps` finds it.
    """
    tmp, final = Path(tmp), Path(final)
    if tmp.parent != final.parent:
        raise ValueError("publish_directory needs tmp and final in one directory")
    root = final.parent
    if not final.exists():
        os.rename(tmp, final)
    elif _exchange(tmp, final):
        fsync_dir(root)
        shutil.rmtree(tmp)
    else:
        token = tmp.name.split(".tmp-", 1)[-1] if ".tmp-" in tmp.name else "swap"
        old = root / f".{final.name}.old-{safe_token(token)}"
        if old.exists():
            shutil.rmtree(old)
        os.rename(final, old)
        os.rename(tmp, final)
        fsync_dir(root)
        shutil.rmtree(old)
    fsync_dir(root)


def recover_directory_swaps(root: Path, name_pattern: str, what: str) -> list[str]:
    """Repair what a crashed :func:`publish_directory` left in ``root``; returns what was
    done. Only the directories whose names match ``name_pattern`` (a regular expression)
    are looked at; ``what`` names them in the log.

    - ``<name>/`` missing but ``.<name>.old-*/`` present (crash between the fallback's
      two renames): the newest old directory is renamed back, restoring the last good
      copy.
    - every other ``.<name>.tmp-*`` or ``.<name>.old-*`` is a leftover and is deleted
      (a tmp directory is never promoted: it may be half written).
    """
    leftover = re.compile(rf"^\.(?P<name>{name_pattern})\.(?P<kind>tmp|old)-[A-Za-z0-9_.-]+$")
    actions: list[str] = []
    if not root.is_dir():
        return actions
    leftovers = sorted(
        (p for p in root.iterdir() if leftover.match(p.name)),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for path in leftovers:
        match = leftover.match(path.name)
        assert match is not None
        final = root / match["name"]
        if match["kind"] == "old" and not final.exists():
            os.rename(path, final)
            actions.append(f"restored {final.name} from {path.name}")
        else:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            actions.append(f"removed {path.name}")
    if actions:
        fsync_dir(root)
        log.warning("%s: recovered from an interrupted publish: %s", what, "; ".join(actions))
    return actions


# --- modes from config ---------------------------------------------------------------------


def apply_permissions(path: Path, file_mode: int, dir_mode: int, group: str | None) -> None:
    """Give ``path`` (a file, or a folder and everything in it) ``file_mode`` /
    ``dir_mode`` and, when ``group`` is set, that group (``[permissions]`` in crm.toml).
    Symbolic links are left alone (their mode means nothing)."""
    gid = -1
    if group:
        import grp

        gid = grp.getgrnam(group).gr_gid
    paths = [Path(path)]
    if Path(path).is_dir() and not Path(path).is_symlink():
        paths += sorted(Path(path).rglob("*"))
    for p in paths:
        if p.is_symlink():
            continue
        os.chmod(p, dir_mode if p.is_dir() else file_mode)
        if gid != -1:
            os.chown(p, -1, gid)


def make_dirs(path: Path, dir_mode: int, group: str | None = None) -> list[Path]:
    """Create ``path`` and its missing parents; only the folders created here get
    ``dir_mode`` (and ``group``): a folder that existed (a user's project folder) keeps
    its mode. Returns the folders created."""
    missing = []
    p = Path(path)
    while not p.exists():
        missing.append(p)
        p = p.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, dir_mode)
        os.chmod(folder, dir_mode)
        if group:
            shutil.chown(folder, group=group)
    return missing
