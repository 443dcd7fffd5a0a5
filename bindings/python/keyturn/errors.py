"""Exceptions: one class per KEYTURN_E_* status, all under KeyturnError."""

from . import _lib
from ._lib import lib


class KeyturnError(Exception):
    """A keyturn call failed. `status` is the KEYTURN_E_* code, `name` its name, and
    `message` what keyturn_last_error() said on the failing thread."""

    status = None

    def __init__(self, status, message, name=None):
        self.status = status
        self.name = name if name is not None else status_name(status)
        self.message = message
        super().__init__(status, self.name, message)

    def __str__(self):
        return f"{self.name}: {self.message}" if self.message else self.name


class InvalidArgumentError(KeyturnError, ValueError):
    status = _lib.E_INVALID_ARGUMENT


class ConfigError(KeyturnError, ValueError):
    status = _lib.E_CONFIG


class NotFoundError(KeyturnError, LookupError):
    status = _lib.E_NOT_FOUND


class ExistsError(KeyturnError):
    status = _lib.E_EXISTS


class StateError(KeyturnError):
    status = _lib.E_STATE


class NotReadyError(KeyturnError):
    status = _lib.E_NOT_READY


class ExpiredError(KeyturnError):
    status = _lib.E_EXPIRED


class BufferTooSmallError(KeyturnError):
    status = _lib.E_BUFFER_TOO_SMALL


class StaleCompletionError(KeyturnError):
    status = _lib.E_STALE_COMPLETION


class StoreError(KeyturnError):
    status = _lib.E_STORE


class NoMemoryError(KeyturnError, MemoryError):
    status = _lib.E_NO_MEMORY


class RemovedError(KeyturnError):
    status = _lib.E_REMOVED


class InternalError(KeyturnError):
    status = _lib.E_INTERNAL


_BY_STATUS = {
    cls.status: cls
    for cls in (
        InvalidArgumentError,
        ConfigError,
        NotFoundError,
        ExistsError,
        StateError,
        NotReadyError,
        ExpiredError,
        BufferTooSmallError,
        StaleCompletionError,
        StoreError,
        NoMemoryError,
        RemovedError,
        InternalError,
    )
}


class RefreshFailed(Exception):
    """Raise from a hook to fail the refresh with an action: "retry", "login" or
    "give_up" (or a KEYTURN_ACTION_* number), no sooner than `retry_after` seconds."""

    _ACTIONS = {"retry": _lib.ACTION_RETRY, "login": _lib.ACTION_LOGIN,
                "give_up": _lib.ACTION_GIVE_UP}

    def __init__(self, message="", action="retry", retry_after=0.0):
        super().__init__(message)
        self.message = str(message)
        self.action = action_code(action)
        self.retry_after = float(retry_after or 0.0)


def action_code(action):
    """Maps "retry" / "login" / "give_up" (or the numbers) to KEYTURN_ACTION_*."""
    if isinstance(action, int) and action in RefreshFailed._ACTIONS.values():
        return action
    try:
        return RefreshFailed._ACTIONS[action]
    except (KeyError, TypeError):
        raise ValueError(f"unknown action {action!r}; expected retry, login or give_up")


def status_name(status):
    """keyturn_status_name(): "KEYTURN_E_EXPIRED" for -7."""
    return lib.keyturn_status_name(status).decode("utf-8", "replace")


def error_for(status, message):
    """The exception for `status`, with `message` (already read from the library)."""
    cls = _BY_STATUS.get(status, KeyturnError)
    return cls(status, message)


def last_error():
    """keyturn_last_error() of this thread, as str."""
    return lib.keyturn_last_error().decode("utf-8", "replace")


def check(status):
    """Raises the matching KeyturnError when `status` is not KEYTURN_OK. Call it right
    after the failing call, on the same thread, so the message is that call's."""
    if status != _lib.OK:
        raise error_for(status, last_error())
    return status
