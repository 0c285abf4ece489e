"""Handlers for NumPy's own formats: npy (one array) and npz (a dict of arrays).

NumPy is imported inside the methods, so that ``import stagewise`` stays fast.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from stagewise.errors import AssetIOError

__all__ = ["NpyHandler", "NpzHandler"]

# Members carry a fixed date so that the same arrays always give the same bytes (early cutoff
# compares bytes). It is also zipfile's default, pinned here rather than relied upon.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class NpyHandler:
    """One NumPy array in ``.npy`` format, without pickles (object arrays are refused)."""

    extensions: ClassVar[tuple[str, ...]] = (".npy",)
    _stagewise_str_paths: ClassVar[bool] = True  # read/write take a str too (base.STR_PATHS)
    returns: ClassVar[tuple[str, ...]] = ("numpy.ndarray",)
    extra: ClassVar[str | None] = "numpy"
    modules: ClassVar[tuple[str, ...]] = ("numpy",)

    def read(self, path: str | Path) -> Any:
        """Return the array stored at ``path``."""
        import numpy as np

        return np.load(path, allow_pickle=False)

    def write(self, path: str | Path, data: Any) -> None:
        """Save ``data`` (anything ``np.asarray`` accepts) as ``.npy``."""
        import numpy as np

        # An open file, not a path: np.save appends ".npy" to a path lacking it, which would
        # write beside the temporary file when the handler is named for another extension.
        with open(path, "wb") as stream:
            np.save(stream, data, allow_pickle=False)


class NpzHandler:
    """A dict of NumPy arrays in ``.npz`` format (uncompressed, like ``np.savez``).

    Reading loads every array and closes the file, returning a plain ``dict`` in the order
    written. Bytes are reproducible: the same arrays always give the same file.
    """

    extensions: ClassVar[tuple[str, ...]] = (".npz",)
    _stagewise_str_paths: ClassVar[bool] = True  # read/write take a str too (base.STR_PATHS)
    returns: ClassVar[tuple[str, ...]] = ("builtins.dict",)
    extra: ClassVar[str | None] = "numpy"
    modules: ClassVar[tuple[str, ...]] = ("numpy",)

    def read(self, path: str | Path) -> dict[str, Any]:
        """Return ``{name: array}`` for every array in the file."""
        import numpy as np

        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}

    def write(self, path: str | Path, data: Any) -> None:
        """Save the dict ``data`` of arrays, one member per key.

        Raises:
            AssetIOError: ``data`` is not a mapping with string keys.
        """
        import numpy as np

        if not isinstance(data, Mapping):
            raise AssetIOError(
                f"the npz handler writes a dict of arrays, got {type(data).__qualname__}",
                path=str(path),
                hint="return {'name': array, ...}, or use the npy handler for one array",
            )
        bad = [repr(key) for key in data if not isinstance(key, str)]
        if bad:
            raise AssetIOError(f"npz keys must be str, got {', '.join(bad)}", path=str(path))
        # The layout of np.savez (member "<key>.npy", stored, zip64), written here because
        # np.savez(file, **data) breaks on keys named "file" or "allow_pickle" and would
        # accept object arrays (pickles) that the reader then refuses.
        with zipfile.ZipFile(path, mode="w", compression=zipfile.ZIP_STORED) as archive:
            for key, value in data.items():
                info = zipfile.ZipInfo(key + ".npy", date_time=_ZIP_EPOCH)
                with archive.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
