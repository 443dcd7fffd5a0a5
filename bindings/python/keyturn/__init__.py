"""keyturn keeps expiring credentials fresh: Python binding over libkeyturn (ctypes).

The C header, capi/keyturn.h, is the manual: configuration, credential specs, hook
requests and results, events and status codes are described there.

    import keyturn

    engine = keyturn.Engine({"engine": {"threads": 1}})

    @engine.hook("issuer")
    def issue(request):
        return {"value": mint(), "expires_in": 300}

    engine.add({"id": "api", "provider": {"type": "hook", "name": "issuer"}})
    with engine:
        token = engine.read_text("api")
"""

from . import _lib
from ._lib import (
    ACTION_GIVE_UP,
    ACTION_LOGIN,
    ACTION_RETRY,
    ABI_VERSION,
    READ_STALE,
    LibraryNotFoundError,
)
from .engine import Engine
from .errors import (
    BufferTooSmallError,
    ConfigError,
    ExistsError,
    ExpiredError,
    InternalError,
    InvalidArgumentError,
    KeyturnError,
    NoMemoryError,
    NotFoundError,
    NotReadyError,
    RefreshFailed,
    RemovedError,
    StaleCompletionError,
    StateError,
    StoreError,
    status_name,
)
from .events import Completion, Event, EventQueue, RefreshRequest, Token
from .rotation import SecretVersion, StepCompletion, StepFailed, StepRequest

library_path = _lib.path


def version():
    """The version of the loaded library, such as "0.1.0"."""
    return _lib.lib.keyturn_version_string().decode("ascii")


def version_number():
    """MAJOR * 10000 + MINOR * 100 + PATCH of the loaded library."""
    return _lib.lib.keyturn_version_number()


__all__ = [
    "ABI_VERSION",
    "ACTION_GIVE_UP",
    "ACTION_LOGIN",
    "ACTION_RETRY",
    "READ_STALE",
    "BufferTooSmallError",
    "Completion",
    "ConfigError",
    "Engine",
    "Event",
    "EventQueue",
    "ExistsError",
    "ExpiredError",
    "InternalError",
    "InvalidArgumentError",
    "KeyturnError",
    "LibraryNotFoundError",
    "NoMemoryError",
    "NotFoundError",
    "NotReadyError",
    "RefreshFailed",
    "RefreshRequest",
    "RemovedError",
    "SecretVersion",
    "StaleCompletionError",
    "StepCompletion",
    "StepFailed",
    "StepRequest",
    "StateError",
    "StoreError",
    "Token",
    "library_path",
    "status_name",
    "version",
    "version_number",
]
