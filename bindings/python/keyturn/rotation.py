"""Rotation hooks: the request a step receives, and how a Python hook answers.

A rotation hook is called once per step (create, set, test, finish) with a StepRequest.
`create` returns the new value (str or bytes); the other steps return None. Raising
StepFailed (or any exception) fails the step; keyturn retries it with backoff and, after
too many failures, abandons the version for a new one. Every step must be safe to run
again for the same version id: keyturn.h describes the contract.
"""

import base64
import dataclasses
import json

from ._lib import lib
from .errors import check

STEPS = ("create", "set", "test", "finish")


@dataclasses.dataclass
class SecretVersion:
    """One version of a secret: its id and its value (str, or bytes when not UTF-8).
    The value does not show in repr()."""

    version: str
    value: "str | bytes" = dataclasses.field(repr=False)

    @classmethod
    def from_json(cls, data):
        if not data:
            return None
        value = data.get("value")
        if value is None and data.get("value_base64") is not None:
            value = base64.b64decode(data["value_base64"])
        return cls(data.get("version"), value)


@dataclasses.dataclass
class StepRequest:
    """What one step of a rotation receives. current, previous and pending are
    SecretVersion or None; abandoned lists the values of abandoned rotations, newest
    first (a set step may have applied one before a later step failed)."""

    secret: str
    step: str
    version: str
    attempt: int
    current: "SecretVersion | None" = None
    previous: "SecretVersion | None" = None
    pending: "SecretVersion | None" = None
    abandoned: list = dataclasses.field(default_factory=list)
    metadata: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_json(cls, text):
        data = json.loads(text)
        return cls(
            secret=data.get("secret"),
            step=data.get("step"),
            version=data.get("version"),
            attempt=data.get("attempt"),
            current=SecretVersion.from_json(data.get("current")),
            previous=SecretVersion.from_json(data.get("previous")),
            pending=SecretVersion.from_json(data.get("pending")),
            abandoned=[SecretVersion.from_json(v) for v in data.get("abandoned") or []],
            metadata=data.get("metadata") or {},
        )

    def values(self):
        """Every value this request carries, for scrubbing them out of messages."""
        found = [self.current, self.previous, self.pending, *self.abandoned]
        return [v.value for v in found if v is not None and v.value]


class StepFailed(Exception):
    """Raise from a rotation hook to fail the step, no sooner than `retry_after`
    seconds before the next attempt."""

    def __init__(self, message="", retry_after=0.0):
        super().__init__(message)
        self.message = str(message)
        self.retry_after = float(retry_after or 0.0)


class StepCompletion:
    """The answer slot of one step request. Answer exactly once, from any thread."""

    __slots__ = ("id", "secret", "step", "used")

    def __init__(self, completion_id, secret, step):
        self.id = completion_id
        self.secret = secret
        self.step = step
        self.used = False

    def succeed(self, value=None):
        """Finishes the step: with the new value for create, with nothing otherwise."""
        if self.step == "create":
            if value is None:
                raise TypeError("the create step must produce a value (str or bytes)")
            data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            self.used = True
            check(lib.keyturn_complete_value(self.id, data, len(data), 0.0))
            return
        if value is not None:
            raise TypeError(f"step {self.step!r} produces no value; return None")
        self.used = True
        check(lib.keyturn_complete(self.id, b"{}", 2))

    def fail(self, message="", retry_after=0.0):
        """Fails the step; keyturn replaces any value it knows by its fingerprint."""
        text = json.dumps({"error": str(message or "the hook reported a failure"),
                           "retry_after": float(retry_after or 0.0)}).encode("utf-8")
        self.used = True
        check(lib.keyturn_complete(self.id, text, len(text)))

    def __repr__(self):
        return (f"StepCompletion({self.id}, secret={self.secret!r}, step={self.step!r}, "
                f"used={self.used})")


def dispatch_by_step(hooks):
    """One hook function from a dict of step name -> function."""
    unknown = set(hooks) - set(STEPS)
    if unknown:
        raise ValueError(f"unknown step(s) {sorted(unknown)}; expected {STEPS}")
    missing = [s for s in STEPS if s not in hooks]
    if missing:
        raise ValueError(f"missing step(s) {missing}")
    for name, fn in hooks.items():
        if not callable(fn):
            raise TypeError(f"the {name} hook must be callable")

    def run(request):
        return hooks[request.step](request)

    return run
