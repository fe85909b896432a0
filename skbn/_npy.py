"""Out-of-core ``.npy`` files: read and write windows of rows.

``np.load(path, mmap_mode="r")`` maps the whole file at once, which counts
against the process' address space (``RLIMIT_AS``, a container's virtual
memory cap) however little of it is touched.  These helpers map one window of
rows at a time instead, so streaming a file needs the memory of one batch,
whatever the file's size: the header is read with ``np.lib.format``, and each
window is an ``np.memmap`` at the right offset, unmapped when dropped.

The output is written to a temporary file in the target's directory and
renamed onto the target only when complete, so a failed or interrupted run
never leaves a half-written file under the requested name.
"""

import errno
import os
import tempfile
import tokenize
from math import prod

import numpy as np

# Bytes of input per batch when the caller does not choose: large enough that
# the per-call overhead vanishes, small enough for any machine.
BATCH_BYTES = 16 << 20

# What np.lib.format raises on a malformed header: besides ValueError, the
# tokenizer and parser it runs on the header text raise their own errors
# (tokenize.TokenError on an unclosed bracket, found by adversarial tests).
HEADER_ERRORS = (
    ValueError,
    SyntaxError,
    TypeError,
    tokenize.TokenError,
    RecursionError,
)


class UnsupportedVersionError(ValueError):
    """A ``.npy`` header of a format version skbn does not read."""


def read_header(f, version):
    """Read the header of a ``.npy`` file of format ``version``.

    Parameters
    ----------
    f : binary file
        Positioned just after the magic string (``np.lib.format.read_magic``
        returned ``version``).
    version : tuple of int

    Returns
    -------
    shape : tuple of int
    fortran_order : bool
    dtype : numpy.dtype

    Raises
    ------
    UnsupportedVersionError
        For a version other than 1.0 and 2.0: version 3 (UTF-8 field names)
        only matters for structured dtypes, which skbn rejects anyway.
    ValueError, SyntaxError, TypeError, tokenize.TokenError, RecursionError
        For a malformed header (:data:`HEADER_ERRORS`).
    """
    readers = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }
    if version not in readers:
        raise UnsupportedVersionError(f"unsupported .npy format version {version}")
    return readers[version](f)


# Temporary files being written, so that a signal handler (see skbn.cli) can
# remove them before the process exits: the interrupted output never appears.
_LIVE: set[str] = set()


def _umask():
    """The process' umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_output(path, suffix=None):
    """Refuse an output ``path`` that cannot be written as asked.

    Checked before any work, so that ``-o some_dir`` or ``-o missing/out.npy``
    fails at once and with the name the user gave, not the temporary file's.

    Parameters
    ----------
    path : str or os.PathLike
    suffix : str, optional
        The extension of the file's format (``".npy"``): a name with another
        extension is refused rather than writing, say, ``.npy`` data under a
        ``.csv`` name (a name without an extension is taken as it is).

    Raises
    ------
    IsADirectoryError
        ``path`` is a directory.
    FileNotFoundError
        Its folder does not exist.
    ValueError
        It has an extension other than ``suffix``.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    folder = os.path.dirname(path)
    if folder and not os.path.isdir(folder):
        raise FileNotFoundError(
            errno.ENOENT,
            f"{os.strerror(errno.ENOENT)}: the folder {folder} does not exist "
            "(create it first)",
            path,
        )
    ext = os.path.splitext(path)[1]
    if suffix is not None and ext and ext.lower() != suffix:
        raise ValueError(
            f"{path}: the output is a NumPy {suffix} file, not {ext}; give it "
            f"a name that ends in {suffix}."
        )


def create_temp(path, suffix):
    """Create and open an empty temporary file next to ``path``.

    Its mode is what ``open(path, "w")`` would give (``0o666`` less the
    umask), not ``mkstemp``'s private ``0o600``: the output is renamed onto
    ``path`` and must be as readable as any file the user writes.

    Returns
    -------
    fd : int
        Open for writing.
    tmp : str
        Its path; pass it to :func:`publish` or :func:`discard`.
    """
    path = os.fspath(path)
    check_output(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{os.path.basename(path)}.", suffix=suffix, dir=directory
        )
    except OSError as exc:
        # The error names the user's path, not the temporary name.
        raise OSError(exc.errno, exc.strerror, path) from None
    _LIVE.add(tmp)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
    except BaseException:
        os.close(fd)
        discard(tmp)
        raise
    return fd, tmp


def publish(tmp, path):
    """Rename the complete ``tmp`` onto ``path``; on failure remove ``tmp``
    and raise ``OSError`` naming ``path``."""
    path = os.fspath(path)
    try:
        os.replace(tmp, path)
    except OSError as exc:
        discard(tmp)
        raise OSError(exc.errno, exc.strerror, path) from None
    _LIVE.discard(tmp)


def discard(tmp):
    """Remove the temporary file ``tmp`` if it is still there."""
    _LIVE.discard(tmp)
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def discard_all():
    """Remove every temporary file still being written (signal handlers)."""
    for tmp in list(_LIVE):
        discard(tmp)


# The first bytes of every .npy file (the format's magic string).
_NPY_MAGIC = b"\x93NUMPY"


def _not_npy(path, start):
    """What to say of a file that is not a ``.npy`` file: what it seems to
    be, and how to make a ``.npy`` file of it."""
    src = repr(path)
    if start.startswith(b"PAR1"):
        kind, how = "it is a Parquet file", f"pandas.read_parquet({src}).to_numpy()"
    elif start.startswith(b"PK"):
        kind, how = "it is a zip archive (.npz?)", f"numpy.load({src})['NAME']"
    elif _looks_like_text(start):
        kind, how = "it is text (CSV?)", f"pandas.read_csv({src}).to_numpy()"
    else:
        kind, how = "it does not start as one", "ARRAY"
    return (
        f"{path} is not a readable .npy file: {kind}. skbn fit and transform "
        f"read NumPy .npy files; convert it once with numpy.save('data.npy', "
        f"{how}) and pass data.npy."
    )


def _looks_like_text(start):
    try:
        text = start.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\r\n\t" for c in text)


class NpyReader:
    """Windows of rows (entries along axis 0) of a C-ordered ``.npy`` file.

    Parameters
    ----------
    path : str or os.PathLike

    Attributes
    ----------
    shape : tuple of int
    dtype : numpy.dtype

    Raises
    ------
    ValueError
        If the file is not a ``.npy`` file, holds no numbers, or is truncated.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        with open(self.path, "rb") as f:
            start = f.read(len(_NPY_MAGIC))
            if start != _NPY_MAGIC:
                raise ValueError(_not_npy(self.path, start))
            f.seek(0)
            try:
                version = np.lib.format.read_magic(f)
                self.shape, fortran_order, self.dtype = read_header(f, version)
            except HEADER_ERRORS as exc:
                raise ValueError(
                    f"{self.path} is not a readable .npy file: {exc}"
                ) from None
            if any(n < 0 for n in self.shape):
                raise ValueError(
                    f"{self.path} is not a readable .npy file: its header's "
                    f"shape {self.shape} has a negative dimension."
                )
            self.offset = f.tell()
            size = f.seek(0, os.SEEK_END)
        if self.dtype.hasobject or self.dtype.kind not in "biuf":
            raise ValueError(
                f"{self.path} holds {self.dtype} values; skbn needs a numeric "
                "(integer or floating-point) array."
            )
        self._full = None
        if fortran_order:
            # Rows of a Fortran-ordered array are not contiguous in the file:
            # map it whole (np.load checks it), then slice.
            self._full = np.load(self.path, mmap_mode="r", allow_pickle=False)
        self.row_bytes = prod(self.shape[1:]) * self.dtype.itemsize
        expected = self.offset + self.row_bytes * (self.shape[0] if self.shape else 1)
        if size < expected:
            raise ValueError(
                f"{self.path} is truncated: its header announces {expected} bytes, "
                f"the file has {size}."
            )

    def batch_rows(self, batch_size=None):
        """Rows per batch: ``batch_size``, or about :data:`BATCH_BYTES`."""
        if batch_size is not None:
            return batch_size
        return max(1, BATCH_BYTES // max(1, self.row_bytes))

    def windows(self, batch_size=None):
        """``(start, stop)`` of each batch of rows, in order."""
        n, step = self.shape[0], self.batch_rows(batch_size)
        return [(i, min(i + step, n)) for i in range(0, n, step)]

    def rows(self, start, stop):
        """Rows ``[start, stop)`` as a read-only ndarray over the file."""
        if self._full is not None:
            return np.asarray(self._full[start:stop])
        window = np.memmap(
            self.path,
            dtype=self.dtype,
            mode="r",
            offset=self.offset + start * self.row_bytes,
            shape=(stop - start, *self.shape[1:]),
        )
        # A plain ndarray view: skbn's fast path takes exact ndarrays only.
        return np.asarray(window)


class NpyWriter:
    """Write a ``.npy`` file window by window, renamed into place at the end.

    Use as a context manager: on a clean exit the file is moved onto
    ``path``; on an exception the temporary file is deleted and ``path`` is
    left as it was.

    Parameters
    ----------
    path : str or os.PathLike
    shape : tuple of int
    dtype : numpy.dtype
    """

    def __init__(self, path, shape, dtype):
        self.path = os.fspath(path)
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        fd, self.tmp = create_temp(self.path, ".part")
        try:
            with os.fdopen(fd, "wb") as f:
                header = {
                    "descr": np.lib.format.dtype_to_descr(self.dtype),
                    "fortran_order": False,
                    "shape": self.shape,
                }
                np.lib.format.write_array_header_1_0(f, header)
                self.offset = f.tell()
                # Sized up front (sparse where the file system allows) so that
                # each window maps onto existing bytes.
                f.truncate(self.offset + prod(self.shape) * self.dtype.itemsize)
        except BaseException:
            discard(self.tmp)
            raise
        self.row_bytes = prod(self.shape[1:]) * self.dtype.itemsize

    def write(self, start, block):
        """Write ``block`` as rows ``start, start + len(block)``."""
        window = np.memmap(
            self.tmp,
            dtype=self.dtype,
            mode="r+",
            offset=self.offset + start * self.row_bytes,
            shape=block.shape,
        )
        window[...] = block
        window.flush()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            publish(self.tmp, self.path)
        else:
            discard(self.tmp)
        return False
