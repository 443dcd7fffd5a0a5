"""The objects handed to Python code: events, hook requests, results and completions."""

import base64
import dataclasses
import json
import logging
import math
import queue
import time

from ._lib import lib
from .errors import RefreshFailed, action_code, check

_log = logging.getLogger("keyturn")


class Event:
    """One engine event. `type`, `credential` and `time` are always there; every other
    field of the JSON object (see keyturn.h) is an attribute too, and all are in `data`."""

    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data

    @property
    def type(self):
        return self.data.get("type")

    @property
    def credential(self):
        return self.data.get("credential")

    @property
    def time(self):
        return self.data.get("time")

    def __getattr__(self, name):
        try:
            return self.data[name]
        except KeyError:
            raise AttributeError(f"{self.type!r} event has no field {name!r}") from None

    def get(self, name, default=None):
        return self.data.get(name, default)

    def __repr__(self):
        return f"Event({self.data!r})"


@dataclasses.dataclass
class RefreshRequest:
    """A hook request. `value` is the current value and `refresh` the refresh material:
    str, bytes when not UTF-8, or None. Neither shows in repr()."""

    credential: str
    reason: str
    attempt: int
    value: "str | bytes | None" = dataclasses.field(default=None, repr=False)
    version: "int | None" = None
    issued_at: "float | None" = None
    expires_at: "float | None" = None
    refresh: "str | bytes | None" = dataclasses.field(default=None, repr=False)
    metadata: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_json(cls, text):
        data = json.loads(text)
        current = data.get("current") or {}
        value = current.get("value")
        if value is None and current.get("value_base64") is not None:
            value = base64.b64decode(current["value_base64"])
        refresh = data.get("refresh")
        if refresh is None and data.get("refresh_base64") is not None:
            refresh = base64.b64decode(data["refresh_base64"])
        return cls(
            credential=data.get("credential"),
            reason=data.get("reason"),
            attempt=data.get("attempt"),
            value=value,
            version=current.get("version"),
            issued_at=current.get("issued_at"),
            expires_at=current.get("expires_at"),
            refresh=refresh,
            metadata=data.get("metadata") or {},
        )


@dataclasses.dataclass
class Token:
    """A hook's successful result. Give `expires_in` (seconds from now) or `expires_at`
    (unix seconds); `refresh` None keeps the old refresh material."""

    value: "str | bytes" = dataclasses.field(repr=False)
    expires_in: "float | None" = None
    expires_at: "float | None" = None
    refresh: "str | bytes | None" = dataclasses.field(default=None, repr=False)
    metadata: "dict | None" = None
    renewable: "bool | None" = None
    max_lifetime: "float | None" = None

    def to_result(self):
        result = {"value": self.value}
        for name in ("expires_in", "expires_at", "refresh", "metadata", "renewable",
                     "max_lifetime"):
            field = getattr(self, name)
            if field is not None:
                result[name] = field
        return result


def encode_result(result):
    """The JSON bytes of a hook result: a dict as in keyturn.h or a Token. A bytes value
    or refresh travels as "value_base64" / "refresh_base64"."""
    if isinstance(result, Token):
        result = result.to_result()
    if not isinstance(result, dict):
        raise TypeError(f"hook returned {type(result).__name__}, expected a dict or a Token")
    result = dict(result)
    for key in ("value", "refresh"):
        field = result.get(key)
        if isinstance(field, (bytes, bytearray, memoryview)):
            del result[key]
            result[key + "_base64"] = base64.b64encode(bytes(field)).decode("ascii")
    return json.dumps(result, allow_nan=False).encode("utf-8")


class Completion:
    """The answer slot of one hook request (a keyturn_completion). Answer exactly once,
    from any thread; a late or second answer raises StaleCompletionError."""

    __slots__ = ("id", "credential", "used")

    def __init__(self, completion_id, credential):
        self.id = completion_id
        self.credential = credential
        self.used = False

    def complete(self, result):
        """Answers with a result dict (success or {"error": ...}) or a Token."""
        data = encode_result(result)
        self.used = True
        check(lib.keyturn_complete(self.id, data, len(data)))

    def succeed(self, value, expires_in=None, *, expires_at=None, refresh=None, metadata=None,
                renewable=None, max_lifetime=None):
        """Answers with a new value; without extras this copies the bytes, no JSON."""
        extras = (expires_at, refresh, metadata, renewable, max_lifetime)
        if expires_in is not None and all(x is None for x in extras) and math.isfinite(
                expires_in):
            data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            self.used = True
            check(lib.keyturn_complete_value(self.id, data, len(data), float(expires_in)))
            return
        self.complete(Token(value, expires_in, expires_at, refresh, metadata, renewable,
                            max_lifetime))

    def fail(self, message="", action="retry", retry_after=0.0):
        """Answers with a failure; `action` is "retry", "login" or "give_up"."""
        code = action_code(action)
        retry_after = float(retry_after or 0.0)
        if message is not None and "\0" in str(message):
            # A C string would end at the NUL, and keyturn could then miss a secret that
            # the message quotes (it replaces whole secrets only); JSON keeps it whole.
            names = {v: k for k, v in RefreshFailed._ACTIONS.items()}
            self.complete({"error": str(message), "action": names[code],
                           "retry_after": retry_after})
            return
        text = None if message is None else str(message).encode("utf-8", "replace")
        self.used = True
        check(lib.keyturn_complete_error(self.id, code, text, retry_after))

    def __repr__(self):
        return f"Completion({self.id}, credential={self.credential!r}, used={self.used})"


class EventQueue:
    """Events of one engine, queued for the consumer's thread; iterate, or get() with a
    timeout. close() (or leaving a `with` block) ends the subscription."""

    def __init__(self, engine, maxsize=0):
        self._queue = queue.Queue(maxsize)
        self._engine = engine
        self._id = engine.subscribe(self._put)

    def _put(self, event):
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            _log.warning("keyturn event queue full; dropped a %r event", event.type)

    def get(self, timeout=None):
        """The next event; raises queue.Empty after `timeout` seconds."""
        return self._queue.get(timeout=timeout)

    def wait_for(self, predicate, timeout):
        """Returns the first event for which predicate(event) is true, dropping the
        others; raises TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching event within {timeout} s")
            try:
                event = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if predicate(event):
                return event

    def __iter__(self):
        while True:
            yield self._queue.get()

    def close(self):
        """Ends the subscription; does nothing once the engine is closed."""
        if self._id is not None:
            sub, self._id = self._id, None
            if not self._engine.closed:
                self._engine.unsubscribe(sub)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
