"""The archive as declared: where closed days of raw data go as Parquet files.

``archive: {url: file:///var/lib/modelwatch/archive}`` or ``archive: {url:
s3://bucket/prefix, endpoint: http://127.0.0.1:8333}``. S3 credentials come from
the environment as every AWS client reads them (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_DEFAULT_REGION``), never
from the config file. With an archive configured, retention writes each day of a
version's events (joined with their labels) and usage samples to the archive
before it deletes them from the hot store, and reads of an archived period come
from the archive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    import pyarrow.fs as pafs

__all__ = ["ARCHIVE_SCHEMES", "ArchiveSpec", "open_filesystem"]

ARCHIVE_SCHEMES = ("file", "s3")


class ArchiveSpec(BaseModel):
    """The ``archive:`` section."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="file:///path or s3://bucket/prefix")
    endpoint: str | None = Field(
        None, description="S3 endpoint of an S3-compatible server, e.g. http://127.0.0.1:8333"
    )
    region: str | None = Field(None, description="S3 region (default: from the environment)")

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ARCHIVE_SCHEMES:
            raise ValueError(f"{url!r}: the archive is a file:// or s3:// URL")
        if parts.scheme == "s3" and not parts.netloc:
            raise ValueError(f"{url!r}: an s3:// URL names its bucket (s3://bucket/prefix)")
        if parts.scheme == "file" and not parts.path.startswith("/"):
            raise ValueError(f"{url!r}: a file:// URL has an absolute path (file:///path)")
        return url.rstrip("/")

    @field_validator("endpoint")
    @classmethod
    def _endpoint_url(cls, endpoint: str | None) -> str | None:
        if endpoint is not None and urlsplit(endpoint).scheme not in ("http", "https"):
            raise ValueError(f"{endpoint!r}: the endpoint is an http:// or https:// URL")
        return endpoint


def open_filesystem(spec: ArchiveSpec) -> tuple[pafs.FileSystem, str]:
    """The file system of ``spec.url`` (pyarrow's, which reads S3 credentials from the
    environment) and the base path in it."""
    import pyarrow.fs as pafs  # only where files are read or written

    parts = urlsplit(spec.url)
    if parts.scheme == "file":
        return pafs.LocalFileSystem(), unquote(parts.path).rstrip("/")
    options: dict[str, Any] = {}
    if spec.endpoint is not None:
        endpoint = urlsplit(spec.endpoint)
        options |= {"endpoint_override": endpoint.netloc, "scheme": endpoint.scheme}
    if spec.region is not None:
        options["region"] = spec.region
    base = f"{parts.netloc}{unquote(parts.path)}".rstrip("/")
    return pafs.S3FileSystem(**options), base
