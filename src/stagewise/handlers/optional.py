"""Handlers whose libraries are optional extras: fits, healpix, hdf5, parquet, png, torch.

Every library is imported inside the methods: the registry checks that it is installed (with
``importlib.util.find_spec``, without importing it) and names the extra to install when not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from stagewise.errors import AssetIOError

__all__ = [
    "FitsHandler",
    "Hdf5Handler",
    "HealpixHandler",
    "ParquetHandler",
    "PngHandler",
    "TorchHandler",
]

_CHUNK = 1 << 20


def _decompressed_digest(path: Path) -> str:
    """Return the SHA-256 of a file's content, gunzipped first when it is gzip.

    A gzip header stores the time it was written, so two writes of the same map differ byte
    for byte; hashing the decompressed stream keeps early cutoff working for ``.fits.gz``.
    """
    import gzip

    with open(path, "rb") as raw:
        is_gzip = raw.read(2) == b"\x1f\x8b"
    digest = hashlib.sha256()
    with gzip.open(path, "rb") if is_gzip else open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _native(array: Any) -> Any:
    """Return ``array`` in native byte order: FITS stores big-endian, most code expects native."""
    return array.astype(array.dtype.newbyteorder("="), copy=False)


class FitsHandler:
    """An image array in the primary HDU of a FITS file (astropy); ``.fits.gz`` is gzipped."""

    extensions: ClassVar[tuple[str, ...]] = (".fits", ".fits.gz", ".fit")
    returns: ClassVar[tuple[str, ...]] = ("numpy.ndarray",)
    extra: ClassVar[str | None] = "fits"
    modules: ClassVar[tuple[str, ...]] = ("astropy",)

    def read(self, path: Path) -> Any:
        """Return the primary HDU's data as an array in native byte order."""
        import numpy as np
        from astropy.io import fits

        with fits.open(path, memmap=False) as hdus:
            data = hdus[0].data
            if data is None:
                raise AssetIOError(
                    "the primary HDU of this FITS file holds no data",
                    path=str(path),
                    hint="for HEALPix maps name handler='healpix'; for tables write a handler",
                )
            return _native(np.array(data))

    def write(self, path: Path, data: Any) -> None:
        """Write ``data`` as the primary HDU (gzipped when the name ends in ``.gz``)."""
        import numpy as np
        from astropy.io import fits

        fits.PrimaryHDU(np.asarray(data)).writeto(str(path), overwrite=True)

    def fingerprint(self, path: Path) -> str:
        """Return a digest of the content, ignoring the gzip timestamp."""
        return _decompressed_digest(path)


class HealpixHandler:
    """HEALPix maps through healpy (RING ordering). Never chosen by extension.

    A 1-D array is one map; a 2-D array (or list of maps) is several, read back as a 2-D array.
    healpy's conventions apply: bad pixels read back as ``healpy.UNSEEN``.
    """

    extensions: ClassVar[tuple[str, ...]] = ()
    returns: ClassVar[tuple[str, ...]] = ("numpy.ndarray",)
    extra: ClassVar[str | None] = "healpix"
    modules: ClassVar[tuple[str, ...]] = ("healpy",)

    def read(self, path: Path) -> Any:
        """Return every map of the file, in the dtype stored."""
        import healpy

        maps = healpy.read_map(str(path), field=None, dtype=None)
        return _native(maps)

    def write(self, path: Path, data: Any) -> None:
        """Write one map or several, keeping their dtype."""
        import healpy

        healpy.write_map(str(path), data, overwrite=True, dtype=None)

    def fingerprint(self, path: Path) -> str:
        """Return a digest of the content, ignoring the gzip timestamp."""
        return _decompressed_digest(path)


_HDF5_KIND = "stagewise_kind"  # root attribute marking a file that holds one array


def _hdf5_write_group(group: Any, data: Mapping[str, Any]) -> None:
    import numpy as np

    for key, value in data.items():
        if isinstance(value, Mapping):
            _hdf5_write_group(group.create_group(str(key), track_order=True), value)
        else:
            # track_times=False: no timestamps in the bytes, so equal data gives equal files.
            group.create_dataset(str(key), data=np.asarray(value), track_times=False)


def _hdf5_read_group(group: Any) -> dict[str, Any]:
    # [...] rather than [()] so that a 0-d dataset comes back as a 0-d array, as written.
    return {
        key: _hdf5_read_group(item) if hasattr(item, "keys") else item[...] for key, item in group.items()
    }


class Hdf5Handler:
    """HDF5 through h5py: one array (dataset ``data``) or a dict of arrays (nested dicts → groups).

    Reads back what was written: an array, or a dict in insertion order. A file written by
    another tool reads as a dict of all its datasets.
    """

    extensions: ClassVar[tuple[str, ...]] = (".h5", ".hdf5")
    returns: ClassVar[tuple[str, ...]] = ("numpy.ndarray", "builtins.dict")
    extra: ClassVar[str | None] = "hdf5"
    modules: ClassVar[tuple[str, ...]] = ("h5py",)

    def read(self, path: Path) -> Any:
        """Return the array, or the dict of arrays, stored at ``path``."""
        import h5py

        with h5py.File(path, "r") as file:
            if file.attrs.get(_HDF5_KIND) in ("array", b"array"):
                return file["data"][...]
            return _hdf5_read_group(file)

    def write(self, path: Path, data: Any) -> None:
        """Write an array as dataset ``data``, or a dict as one dataset per key."""
        import h5py

        with h5py.File(path, "w", track_order=True) as file:
            if isinstance(data, Mapping):
                _hdf5_write_group(file, data)
            else:
                file.attrs[_HDF5_KIND] = "array"
                _hdf5_write_group(file, {"data": data})

    def fingerprint(self, path: Path) -> str:
        """Return a digest of names, attributes, dtypes, shapes and values only.

        HDF5 object headers may hold times and free-space layout that differ between two
        writes of the same data; this digest ignores them.
        """
        import h5py

        digest = hashlib.sha256()

        def visit(name: str, item: Any) -> None:
            digest.update(name.encode() + b"\0")
            for key in sorted(item.attrs):
                value = item.attrs[key]
                raw = value.tobytes() if hasattr(value, "tobytes") else repr(value).encode()
                digest.update(key.encode() + b"=" + raw + b"\0")
            if isinstance(item, h5py.Dataset):
                value = item[...]
                digest.update(f"{value.dtype.str}{value.shape}\0".encode())
                # Object arrays (variable-length strings) hold pointers: hash their values.
                objects = value.dtype.kind == "O"
                digest.update(repr(value.tolist()).encode() if objects else value.tobytes())

        with h5py.File(path, "r") as file:
            visit("/", file)
            file.visititems(visit)
        return digest.hexdigest()


class ParquetHandler:
    """A table in Parquet format (pyarrow): writes a ``pyarrow.Table``, a dict of columns or a
    pandas DataFrame; reads back a ``pyarrow.Table`` (``.to_pandas()`` converts it)."""

    extensions: ClassVar[tuple[str, ...]] = (".parquet", ".pq")
    returns: ClassVar[tuple[str, ...]] = ("pyarrow.lib.Table",)
    extra: ClassVar[str | None] = "parquet"
    modules: ClassVar[tuple[str, ...]] = ("pyarrow",)

    def read(self, path: Path) -> Any:
        """Return the table."""
        import pyarrow.parquet as pq

        return pq.read_table(str(path))

    def write(self, path: Path, data: Any) -> None:
        """Write ``data`` as one Parquet file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if isinstance(data, pa.Table):
            table = data
        elif isinstance(data, Mapping):
            table = pa.table(dict(data))
        elif type(data).__module__.startswith("pandas"):
            table = pa.Table.from_pandas(data)
        else:
            raise AssetIOError(
                "the parquet handler writes a pyarrow Table, a dict of columns or a DataFrame, "
                f"got {type(data).__qualname__}",
                path=str(path),
            )
        pq.write_table(table, str(path))


class PngHandler:
    """PNG images: writes a Pillow image, an array, or a matplotlib figure (``savefig``);
    reads back a NumPy array through Pillow."""

    extensions: ClassVar[tuple[str, ...]] = (".png",)
    returns: ClassVar[tuple[str, ...]] = ("numpy.ndarray",)
    extra: ClassVar[str | None] = "images"
    modules: ClassVar[tuple[str, ...]] = ("PIL",)

    def read(self, path: Path) -> Any:
        """Return the pixels as an array (height × width [× channels])."""
        import numpy as np
        from PIL import Image

        with Image.open(path) as image:
            return np.array(image)

    def write(self, path: Path, data: Any) -> None:
        """Write ``data`` as PNG."""
        if callable(getattr(data, "savefig", None)):  # a matplotlib Figure (or pyplot)
            data.savefig(path, format="png")
            return
        from PIL import Image

        if not isinstance(data, Image.Image):
            import numpy as np

            data = Image.fromarray(np.asarray(data))
        data.save(path, format="PNG")


class TorchHandler:
    """Anything ``torch.save`` writes; read back with ``torch.load(weights_only=True)``, which
    refuses arbitrary pickled objects (tensors, dicts, lists and numbers load)."""

    extensions: ClassVar[tuple[str, ...]] = (".pt", ".pth")
    returns: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str | None] = None
    modules: ClassVar[tuple[str, ...]] = ("torch",)

    def read(self, path: Path) -> Any:
        """Return the loaded object (tensors on the device they were saved from)."""
        import torch

        with open(path, "rb") as stream:
            return torch.load(stream, weights_only=True)

    def write(self, path: Path, data: Any) -> None:
        """Save ``data``."""
        import torch

        # An open file, not a path: torch names the archive's inner folder after the file,
        # and the temporary name holds a pid, so the bytes would differ on every write.
        with open(path, "wb") as stream:
            torch.save(data, stream)
