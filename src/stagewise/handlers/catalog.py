"""The built-in handlers: where each class lives, and which extensions choose it.

Plain tables, so that the registry can name, list and choose handlers without importing any
handler module (see ``registry``). A test pins them to the classes' own attributes.
"""

from __future__ import annotations

__all__ = ["BUILTINS", "BUILTIN_EXTENSIONS"]

BUILTINS: dict[str, str] = {
    "npy": "stagewise.handlers.arrays:NpyHandler",
    "npz": "stagewise.handlers.arrays:NpzHandler",
    "json": "stagewise.handlers.stdlib:JsonHandler",
    "yaml": "stagewise.handlers.stdlib:YamlHandler",
    "txt": "stagewise.handlers.stdlib:TxtHandler",
    "csv": "stagewise.handlers.stdlib:CsvHandler",
    "pickle": "stagewise.handlers.stdlib:PickleHandler",
    "fits": "stagewise.handlers.optional:FitsHandler",
    "healpix": "stagewise.handlers.optional:HealpixHandler",
    "hdf5": "stagewise.handlers.optional:Hdf5Handler",
    "parquet": "stagewise.handlers.optional:ParquetHandler",
    "png": "stagewise.handlers.optional:PngHandler",
    "torch": "stagewise.handlers.optional:TorchHandler",
}

# pickle and healpix are absent on purpose: a .pkl is not trusted data, and a .fits file is
# not necessarily a HEALPix map. Longer extensions win (".fits.gz" before ".gz").
BUILTIN_EXTENSIONS: dict[str, str] = {
    ".npy": "npy",
    ".npz": "npz",
    ".json": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".txt": "txt",
    ".csv": "csv",
    ".fits": "fits",
    ".fits.gz": "fits",
    ".fit": "fits",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".png": "png",
    ".pt": "torch",
    ".pth": "torch",
}
