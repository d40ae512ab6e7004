"""The few file operations the reader needs, on local disks and on any file system TensorFlow can open.

A MURA root may sit on a local disk, a PVC, or object storage (gs://, s3://, hdfs://) when the pipeline runs on
Dataflow or Kubeflow; the reader is written once against this seam.
"""

from __future__ import annotations

import os
import posixpath
from typing import BinaryIO, Protocol


class FileSystem(Protocol):
    errors: tuple[type[Exception], ...]  # what reading a file may raise: the reader turns these into rejections

    def isdir(self, path: str) -> bool: ...
    def isfile(self, path: str) -> bool: ...
    def open(self, path: str) -> BinaryIO: ...
    def resolve(self, path: str) -> str:
        """The path with symbolic links followed, to tell whether it stays inside the data root."""
        ...


class LocalFileSystem:
    errors = (OSError,)

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def isfile(self, path: str) -> bool:
        return os.path.isfile(path)

    def open(self, path: str) -> BinaryIO:
        return open(path, "rb")

    def resolve(self, path: str) -> str:
        return os.path.realpath(path)


class TensorFlowFileSystem:
    """gs://, s3://, hdfs:// and the rest through tf.io.gfile; object stores have no symbolic links."""

    def __init__(self) -> None:
        import tensorflow as tf

        self._gfile = tf.io.gfile
        self.errors = (OSError, tf.errors.OpError)

    def isdir(self, path: str) -> bool:
        return self._gfile.isdir(path)

    def isfile(self, path: str) -> bool:
        return self._gfile.exists(path) and not self._gfile.isdir(path)

    def open(self, path: str) -> BinaryIO:
        return self._gfile.GFile(path, "rb")

    def resolve(self, path: str) -> str:
        scheme, rest = path.split("://", 1)
        return f"{scheme}://{posixpath.normpath(rest)}"


def is_uri(path: str) -> bool:
    return "://" in path


def filesystem_for(path: str) -> FileSystem:
    return TensorFlowFileSystem() if is_uri(path) else LocalFileSystem()


def absolute(path: str) -> str:
    """A local path made absolute (runs change directory; subprocesses inherit none); URIs and "" unchanged."""
    return path if not path or is_uri(path) else os.path.abspath(path)


def is_within(root: str, path: str) -> bool:
    root = root.rstrip("/")
    return path == root or path.startswith(root + "/")
