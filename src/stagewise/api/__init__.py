"""The Python API: ``Pipeline``, ``load`` and the session shared with the command line."""
