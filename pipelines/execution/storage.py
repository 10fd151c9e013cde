"""Where bucket files live: a local (or mounted, shared) folder, or an fsspec URL such as
``s3://bucket/crm`` (``[execution] storage``).

A location is a plain string: a local path, or ``<protocol>://...``. Local locations are
read and written in place. For a URL, DuckDB reads and writes local files only, so

- the flow process writes the core bucket files in a local staging folder and uploads it
  (:func:`upload_folder`);
- a bucket task downloads its bucket's files to a temporary folder of its worker
  (:func:`fetch_bucket`), and writes its output locally, then uploads that one file
  (:func:`upload_file`): an object store makes an object visible only when its upload is
  complete, so a re-run task replaces the object whole, as the rename does for folders;
- the flow process downloads the bucket outputs it pools (:func:`fetch_files`).

The filesystem comes from fsspec (s3fs for ``s3://``, gcsfs for ``gs://``, adlfs for
``az://``; ``pip install ".[s3]"`` for S3), with its usual configuration: for S3 the AWS
environment variables or config files, ``AWS_ENDPOINT_URL`` for MinIO and other S3-compatible
stores.
"""

from __future__ import annotations

import shutil
from functools import lru_cache
from pathlib import Path

from pipelines.errors import ConfigError

# fsspec's package per protocol, for the message when it is missing
PACKAGES = {"s3": "s3fs (pip install '.[s3]')", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs"}


def is_remote(location: str | Path) -> bool:
    """Whether ``location`` is a URL other than ``file://`` (a folder of this host)."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def join(location: str | Path, *parts: str) -> str:
    """``location / part / ...`` for a local path or a URL."""
    if not is_remote(location):
        return str(Path(str(location).removeprefix("file://"), *parts))
    return "/".join([str(location).rstrip("/"), *parts])


@lru_cache(maxsize=8)
def filesystem(location: str):
    """The fsspec filesystem of URL ``location``; a ConfigError naming the package to
    install when its protocol has no implementation here."""
    import fsspec

    protocol = location.split("://", 1)[0]
    try:
        return fsspec.filesystem(protocol)
    except (ImportError, ValueError) as exc:
        package = PACKAGES.get(protocol, f"the fsspec implementation of {protocol}://")
        raise ConfigError(
            f"execution.storage {location!r}: {protocol}:// needs {package}, which is not "
            f"installed here ({exc}). Install it on the flow host and every worker, or give "
            "a folder every worker reaches (a shared mount)."
        ) from exc


def exists(location: str) -> bool:
    """Whether a file or folder is at ``location``."""
    if is_remote(location):
        return filesystem(location).exists(location)
    return Path(location).exists()


def is_folder(location: str) -> bool:
    """Whether ``location`` is a folder (for a URL: a prefix with objects under it)."""
    if is_remote(location):
        return filesystem(location).isdir(location)
    return Path(location).is_dir()


def remove(location: str) -> None:
    """Remove the file or folder at ``location``, if any."""
    if is_remote(location):
        fs = filesystem(location)
        if fs.exists(location):
            fs.rm(location, recursive=True)
        return
    path = Path(location)
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def folders(location: str) -> list[str]:
    """The locations of the folders directly under ``location`` (none when it is absent)."""
    if is_remote(location):
        fs = filesystem(location)
        if not fs.exists(location):
            return []
        protocol = location.split("://", 1)[0]
        return [
            f"{protocol}://{entry['name']}" if "://" not in entry["name"] else entry["name"]
            for entry in fs.ls(location, detail=True)
            if entry["type"] == "directory"
        ]
    path = Path(location)
    return [str(p) for p in path.iterdir() if p.is_dir()] if path.is_dir() else []


def upload_folder(local: Path, location: str) -> None:
    """Copy the local folder ``local`` (recursively) to the URL ``location``."""
    fs = filesystem(location)
    fs.put(str(local).rstrip("/") + "/", location.rstrip("/") + "/", recursive=True)


def upload_file(local: Path, location: str) -> None:
    """Copy the local file ``local`` to the URL ``location`` (one object, visible whole)."""
    filesystem(location).put_file(str(local), location)


def fetch_files(locations: list[str], into: Path) -> list[str]:
    """Download the files at URLs ``locations`` into the local folder ``into``; returns
    their local paths, in the same order."""
    into.mkdir(parents=True, exist_ok=True)
    local = []
    for i, location in enumerate(locations):
        target = into / f"{i:05d}-{location.rsplit('/', 1)[-1]}"
        filesystem(location).get_file(location, str(target))
        local.append(str(target))
    return local


def fetch_bucket(folder: str, bucket: int, into: Path) -> str:
    """Download bucket ``bucket`` of the table at URL ``folder`` (a core table's
    ``bucket=<k>/`` folder, a stage's ``bucket=<k>.parquet``, else its ``_empty.parquet``)
    into the local folder ``into``; returns the local Parquet file or glob to read."""
    fs = filesystem(folder)
    into.mkdir(parents=True, exist_ok=True)
    part = join(folder, f"bucket={bucket}")
    if fs.isdir(part):
        files = sorted(f for f in fs.ls(part, detail=False) if f.endswith(".parquet"))
        for i, name in enumerate(files):
            fs.get_file(name, str(into / f"part-{i:05d}.parquet"))
        return str(into / "*.parquet")
    output = join(folder, f"bucket={bucket}.parquet")
    source = output if fs.exists(output) else join(folder, "_empty.parquet")
    target = into / "bucket.parquet"
    fs.get_file(source, str(target))
    return str(target)
