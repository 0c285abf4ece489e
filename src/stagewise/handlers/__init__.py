"""File-format handlers: the protocol, the registry, and atomic writes.

Importing this package imports no format library; each handler imports its own when used.
"""

from stagewise.handlers.atomic import (
    is_temp_name,
    remove_orphan_temps,
    temp_path_for,
    temp_pid,
    write_atomic,
)
from stagewise.handlers.base import (
    Handler,
    as_handler,
    handler_extensions,
    handler_extra,
    handler_fingerprint,
    handler_modules,
    handler_returns,
    qualified_name,
    returns_match,
)
from stagewise.handlers.registry import (
    ENTRY_POINT_GROUP,
    HandlerRow,
    describe_handlers,
    get_handler,
    handler_for_path,
    handler_names,
    missing_library,
    register_handler,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Handler",
    "HandlerRow",
    "as_handler",
    "describe_handlers",
    "get_handler",
    "handler_extensions",
    "handler_extra",
    "handler_fingerprint",
    "handler_for_path",
    "handler_modules",
    "handler_names",
    "handler_returns",
    "is_temp_name",
    "missing_library",
    "qualified_name",
    "register_handler",
    "remove_orphan_temps",
    "returns_match",
    "temp_path_for",
    "temp_pid",
    "write_atomic",
]
