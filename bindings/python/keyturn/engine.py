"""Engine: a keyturn_engine, its hooks, subscriptions, logger and read handles.

How callbacks stay safe. keyturn calls Python through three module-level ctypes callbacks
(hooks, events, logs) and one release function; none is ever garbage collected. The
`user_data` they receive is a small integer key into `_registry`, which holds the Python
callable. keyturn calls the release function exactly once when it will not use a key
again, and only then is the entry dropped; so a user may drop every reference to a hook
or a subscriber without a dangling pointer anywhere.

Hooks are not run on the engine's thread: the C hook copies the request, hands it to the
engine's ThreadPoolExecutor and returns at once, and the worker answers through
keyturn_complete*(). A slow hook then never holds up other credentials.
"""

import atexit
import concurrent.futures
import ctypes
import itertools
import json
import logging
import sys
import threading

from . import _lib
from ._lib import lib
from .errors import (
    InvalidArgumentError,
    KeyturnError,
    RefreshFailed,
    RemovedError,
    StaleCompletionError,
    StateError,
    check,
    error_for,
    last_error,
)
from .events import Completion, Event, EventQueue, RefreshRequest
from .rotation import StepCompletion, StepFailed, StepRequest, dispatch_by_step

_log = logging.getLogger("keyturn")
_log.addHandler(logging.NullHandler())  # a library leaves output to the application

# ------------------------------------------------------------------------------------
# Callback registry and trampolines
# ------------------------------------------------------------------------------------

# key -> entry. Plain dict operations are atomic under the GIL, so no lock is taken: a
# lock here could be held by a thread that waits in keyturn_engine_free() for a worker
# blocked on that very lock.
_registry = {}
_keys = itertools.count(1)  # 0 would reach Python as None
_tls = threading.local()


class _HookEntry:
    __slots__ = ("fn", "manual", "core", "name", "rotation")

    def __init__(self, fn, manual, core, name, rotation=False):
        self.fn = fn
        self.manual = manual
        self.core = core
        self.rotation = rotation
        self.name = name


class _SubscriberEntry:
    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn


class _LoggerEntry:
    __slots__ = ("logger",)

    def __init__(self, logger):
        self.logger = logger


def _register(entry):
    key = next(_keys)
    _registry[key] = entry
    return key


def _in_callback():
    return getattr(_tls, "callback_depth", 0) > 0


class _CallbackScope:
    """Marks the current thread as running a keyturn callback."""

    __slots__ = ()

    def __enter__(self):
        _tls.callback_depth = getattr(_tls, "callback_depth", 0) + 1

    def __exit__(self, *exc):
        _tls.callback_depth -= 1


_callback_scope = _CallbackScope()


def _release_impl(user_data):
    try:
        _registry.pop(user_data, None)
    except BaseException:  # nothing may unwind into C
        pass


def _hook_impl(request, length, completion, user_data):
    with _callback_scope:
        try:
            entry = _registry.get(user_data)
            if entry is None:
                return -1
            # One copy, into a bytearray that the worker zeroes once it is parsed.
            raw = bytearray((ctypes.c_char * length).from_address(request) if length else b"")
            run = _run_step if entry.rotation else _run_hook
            entry.core.executor.submit(run, entry, raw, completion)
            return 0
        except BaseException:
            # Executor shut down (engine closing, interpreter exiting) or out of memory:
            # a non-zero return fails this refresh with a retry.
            return -1


def _event_impl(text, length, user_data):
    with _callback_scope:
        try:
            entry = _registry.get(user_data)
            if entry is None:
                return
            event = Event(json.loads(ctypes.string_at(text, length)))
            entry.fn(event)
        except BaseException:
            try:
                _log.exception("keyturn event subscriber failed")
            except BaseException:
                pass


def _python_level(level):
    if level >= _lib.LOG_ERROR:
        return logging.ERROR
    if level >= _lib.LOG_WARNING:
        return logging.WARNING
    if level >= _lib.LOG_INFO:
        return logging.INFO
    return logging.DEBUG


def _log_impl(level, message, user_data):
    with _callback_scope:
        try:
            entry = _registry.get(user_data)
            logger = entry.logger if entry is not None else _log
            text = message.decode("utf-8", "replace") if message else ""
            logger.log(_python_level(level), "%s", text)
        except BaseException:
            pass


# Module-level and never collected: keyturn may call them until the process exits.
_on_hook = _lib.HOOK_FN(_hook_impl)
_on_event = _lib.EVENT_FN(_event_impl)
_on_log = _lib.LOG_FN(_log_impl)
_on_release = _lib.RELEASE_FN(_release_impl)


def _answer_error(comp, action, message, retry_after):
    try:
        comp.fail(message, action, retry_after)
    except StaleCompletionError:
        _log.debug("credential %r: hook answered after its refresh ended (timed out, "
                   "answered already, or engine closed); ignored", comp.credential)
    except KeyturnError as exc:
        _log.warning("credential %r: could not fail the refresh: %s", comp.credential, exc)


def _run_hook(entry, raw, completion_id):
    """Runs on an executor worker: calls the user's hook and answers its completion."""
    try:
        request = RefreshRequest.from_json(raw)
    except BaseException as exc:
        comp = Completion(completion_id, None)
        _answer_error(comp, _lib.ACTION_RETRY,
                      f"python binding: unreadable hook request ({type(exc).__name__})", 0)
        return
    finally:
        raw[:] = bytes(len(raw))

    comp = Completion(completion_id, request.credential)
    try:
        if entry.manual:
            result = entry.fn(request, comp)
            if result is None or comp.used:
                return
        else:
            result = entry.fn(request)
        comp.complete(result)
    except RefreshFailed as exc:
        if comp.used:
            _log.warning("credential %r: hook %r raised RefreshFailed after answering",
                         request.credential, entry.name)
            return
        _answer_error(comp, exc.action, exc.message, exc.retry_after)
    except StaleCompletionError:
        _log.debug("credential %r: hook %r answered after its refresh ended (timed out, "
                   "answered already, or engine closed); ignored",
                   request.credential, entry.name)
    except KeyturnError as exc:
        # keyturn rejected the result (KEYTURN_E_CONFIG: the refresh fails and is retried)
        # or could not store it (KEYTURN_E_STORE). The message holds no secret.
        _log.warning("credential %r: hook %r result: %s", request.credential, entry.name, exc)
    except BaseException as exc:
        # The exception text goes to keyturn, which replaces secret values in it by their
        # fingerprints; it is not logged here, before that scrubbing.
        if comp.used:
            _log.warning("credential %r: hook %r raised %s after answering",
                         request.credential, entry.name, type(exc).__name__)
            return
        text = str(exc)
        message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        _answer_error(comp, _lib.ACTION_RETRY, message, 0)


def _scrub(text, values):
    """Replaces the values a step was given by a marker before the text leaves Python
    (keyturn scrubs too; this also covers values it no longer holds)."""
    for value in values:
        needle = value if isinstance(value, str) else value.decode("utf-8", "replace")
        if len(needle) >= 4:
            text = text.replace(needle, "[secret]")
    return text


def _run_step(entry, raw, completion_id):
    """Runs on an executor worker: calls a rotation hook and answers its completion."""
    try:
        request = StepRequest.from_json(raw)
    except BaseException as exc:
        comp = StepCompletion(completion_id, None, None)
        try:
            comp.fail(f"python binding: unreadable step request ({type(exc).__name__})")
        except KeyturnError:
            pass
        return
    finally:
        raw[:] = bytes(len(raw))

    comp = StepCompletion(completion_id, request.secret, request.step)
    try:
        if entry.manual:
            result = entry.fn(request, comp)
            if result is None or comp.used:
                return
        else:
            result = entry.fn(request)
        comp.succeed(result)
    except StepFailed as exc:
        if not comp.used:
            _answer_step_error(comp, _scrub(exc.message, request.values()), exc.retry_after)
    except StaleCompletionError:
        _log.debug("secret %r: hook %r answered step %s after it ended; ignored",
                   request.secret, entry.name, request.step)
    except KeyturnError as exc:
        _log.warning("secret %r: hook %r, step %s: %s", request.secret, entry.name,
                     request.step, exc)
    except BaseException as exc:
        if comp.used:
            _log.warning("secret %r: hook %r raised %s after answering step %s",
                         request.secret, entry.name, type(exc).__name__, request.step)
            return
        text = str(exc)
        message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        _answer_step_error(comp, _scrub(message, request.values()), 0)


def _answer_step_error(comp, message, retry_after):
    try:
        comp.fail(message, retry_after)
    except StaleCompletionError:
        _log.debug("secret %r: step %s ended before its failure was reported", comp.secret,
                   comp.step)
    except KeyturnError as exc:
        _log.warning("secret %r: could not fail step %s: %s", comp.secret, comp.step, exc)


# ------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------


class _ReadBuffer:
    """A per-thread buffer for keyturn_credential_read(); grows on demand."""

    __slots__ = ("data", "addr", "cap", "length", "flags", "length_ref", "flags_ref")

    def __init__(self, cap):
        self.data = ctypes.create_string_buffer(cap)
        self.addr = ctypes.addressof(self.data)
        self.cap = cap
        self.length = ctypes.c_size_t()
        self.flags = ctypes.c_uint()
        self.length_ref = ctypes.byref(self.length)
        self.flags_ref = ctypes.byref(self.flags)


def _read_buffer():
    buf = getattr(_tls, "read_buffer", None)
    if buf is None:
        buf = _tls.read_buffer = _ReadBuffer(4096)
    return buf


def _read_handle(ptr):
    """Returns (bytes, flags) or raises; the buffer is zeroed after the copy."""
    buf = _read_buffer()
    while True:
        rc = lib.keyturn_credential_read(ptr, buf.addr, buf.cap, buf.length_ref, buf.flags_ref)
        if rc == _lib.OK:
            n = buf.length.value
            value = ctypes.string_at(buf.addr, n)
            ctypes.memset(buf.addr, 0, n)
            return value, buf.flags.value
        if rc != _lib.E_BUFFER_TOO_SMALL:
            raise error_for(rc, last_error())
        # The value may grow again before the next call; loop until it fits.
        buf = _tls.read_buffer = _ReadBuffer(max(buf.length.value, buf.cap * 2))


class _Handle:
    """Owns one keyturn_credential*. Closed when the last reference goes, so a reader
    holding it never sees it closed under its feet."""

    __slots__ = ("ptr",)

    def __init__(self, ptr):
        self.ptr = ptr

    def __del__(self):
        try:
            lib.keyturn_credential_close(self.ptr)
        except BaseException:
            pass


# ------------------------------------------------------------------------------------
# Engine
# ------------------------------------------------------------------------------------


def _encode_id(value, what="identifier"):
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    else:
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    if b"\0" in data:
        raise InvalidArgumentError(_lib.E_INVALID_ARGUMENT, f"{what} contains a NUL byte")
    return data


def _encode_json(value, what):
    if value is None:
        return b"{}"
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, allow_nan=False).encode("utf-8")
    raise TypeError(f"{what} must be a dict or JSON text, not {type(value).__name__}")


def _take_string(out):
    """Decodes and frees a string keyturn returned through `char **out`."""
    try:
        return ctypes.string_at(out.value).decode("utf-8")
    finally:
        lib.keyturn_string_free(out)


_live = set()  # cores not yet closed; closed at exit


class _Core:
    """The state behind an Engine, without a reference back to it, so that dropping the
    Engine runs its __del__ even while keyturn holds registry entries that point here."""

    def __init__(self, handle, hook_workers, logger):
        self.handle = handle
        self.logger = logger
        self.cond = threading.Condition()
        self.users = 0  # calls in progress that use `handle`
        self.closed = False
        self.handles = {}  # credential id -> _Handle
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=hook_workers, thread_name_prefix="keyturn-hook"
        )
        _live.add(self)

    def call(self, fn, *args):
        """fn(handle, *args), with the engine kept from being freed meanwhile."""
        with self.cond:
            if self.closed:
                raise StateError(_lib.E_STATE, "the engine is closed")
            self.users += 1
        try:
            return fn(self.handle, *args)
        finally:
            with self.cond:
                self.users -= 1
                if not self.users:
                    self.cond.notify_all()

    def close(self, defer=False):
        with self.cond:
            if self.closed:
                return
            self.closed = True
        _live.discard(self)
        # keyturn_engine_free() does nothing on a keyturn callback thread; and __del__ may
        # run anywhere, holding who knows what. Free on a fresh thread then.
        if defer or _in_callback():
            try:
                threading.Thread(target=self._free, name="keyturn-close").start()
                return
            except RuntimeError:  # interpreter shutting down
                pass
        self._free()

    def _free(self):
        with self.cond:
            while self.users:
                self.cond.wait()
            handle, self.handle = self.handle, None
        lib.keyturn_engine_free(handle)
        self.handles.clear()
        # Not waiting: a hook may still be running user code; its late answer is stale.
        self.executor.shutdown(wait=False, cancel_futures=True)

    def open_handle(self, cred_id, encoded):
        out = _lib.CredentialPtr()

        def do(h):
            check(lib.keyturn_credential_open(ctypes.byref(out), h, encoded))

        self.call(do)
        return self.handles.setdefault(cred_id, _Handle(out))


@atexit.register
def _close_all():
    for core in list(_live):
        try:
            core.close()
        except BaseException:
            pass


class Engine:
    """A keyturn engine (see keyturn_engine_new in keyturn.h). `config` is a dict, JSON
    text or None. As a context manager it starts on entry and closes on exit.

    `hook_workers` threads run Python hooks; keyturn's log lines go to `logger`
    (default logging.getLogger("keyturn")) from its effective level up.
    """

    def __init__(self, config=None, *, hook_workers=4, logger=None):
        data = _encode_json(config, "config")
        out = _lib.EnginePtr()
        check(lib.keyturn_engine_new(ctypes.byref(out), data, len(data)))
        try:
            core = _Core(out, hook_workers, logger or _log)
        except BaseException:
            lib.keyturn_engine_free(out)
            raise
        self._core = core
        try:
            self.set_log_level()
        except BaseException:
            core.close()
            raise

    # -- lifecycle ---------------------------------------------------------------------

    def start(self):
        """Starts the worker threads; register hooks first."""
        self._core.call(lambda h: check(lib.keyturn_engine_start(h)))

    def stop(self, drain=None):
        """Stops; waits up to `drain` seconds (None: the configured drain_timeout) for
        hooks in flight. The engine may be started again."""
        drain_ms = -1 if drain is None else max(0, int(drain * 1000))
        self._core.call(lambda h: check(lib.keyturn_engine_stop(h, drain_ms)))

    def close(self):
        """Stops and frees the engine. Idempotent. From inside a subscriber or a logging
        handler the free happens on another thread, right after."""
        core = getattr(self, "_core", None)
        if core is not None:
            core.close()

    @property
    def closed(self):
        return self._core.closed

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            core = self.__dict__.get("_core")
            if core is not None and not core.closed:
                core.close(defer=not sys.is_finalizing())
        except BaseException:
            pass

    def __repr__(self):
        core = self.__dict__.get("_core")
        state = "closed" if core is None or core.closed else "open"
        return f"<keyturn.Engine {state}>"

    # -- hooks -------------------------------------------------------------------------

    def register_rotation_hook(self, name, fn, *, manual=False):
        """Registers fn as rotation hook `name`, for secrets whose spec names it.
        fn(request) is called for every step with a StepRequest; it returns the new
        value (str or bytes) for "create" and None for the other steps, or raises
        (StepFailed to choose retry_after). With manual=True, fn(request, completion)
        answers through the StepCompletion, now or later from any thread."""
        if not callable(fn):
            raise TypeError("hook must be callable")
        encoded = _encode_id(name, "hook name")
        key = _register(_HookEntry(fn, bool(manual), self._core, name, rotation=True))

        def do(h):
            check(lib.keyturn_hook_register(h, encoded, _on_hook, key, _on_release))

        try:
            self._core.call(do)
        except BaseException:
            _registry.pop(key, None)
            raise
        return fn

    def rotation_hook(self, name, *, manual=False):
        """Decorator form of register_rotation_hook(): one function for every step,
        which reads request.step."""

        def decorate(fn):
            return self.register_rotation_hook(name, fn, manual=manual)

        return decorate

    def rotation_steps(self, name, *, create, set, test, finish):  # noqa: A002
        """Registers rotation hook `name` from one function per step."""
        fn = dispatch_by_step({"create": create, "set": set, "test": test, "finish": finish})
        self.register_rotation_hook(name, fn)
        return fn

    # -- secrets -----------------------------------------------------------------------

    def add_secret(self, spec):
        """Adds a secret from a spec dict (or JSON text); keyturn.h lists its fields."""
        data = _encode_json(spec, "spec")
        self._core.call(lambda h: check(lib.keyturn_secret_add(h, data, len(data))))

    def remove_secret(self, secret_id):
        encoded = _encode_id(secret_id, "secret id")
        self._core.call(lambda h: check(lib.keyturn_secret_remove(h, encoded)))

    def rotate(self, secret_id):
        """Starts a rotation now (or joins the one in flight); returns its version id."""
        encoded = _encode_id(secret_id, "secret id")
        out = ctypes.c_void_p()
        self._core.call(lambda h: check(lib.keyturn_secret_rotate(ctypes.byref(out), h,
                                                                  encoded)))
        return _take_string(out)

    def seed_secret(self, secret_id, value):
        """Gives a secret without a value its first CURRENT value (str or bytes)."""
        encoded = _encode_id(secret_id, "secret id")
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        self._core.call(lambda h: check(lib.keyturn_secret_seed(h, encoded, data, len(data))))

    def read_secret(self, secret_id, label="CURRENT"):
        """The value labelled CURRENT, PREVIOUS or PENDING, as bytes."""
        encoded = _encode_id(secret_id, "secret id")
        which = str(label).encode("ascii", "replace")
        size = ctypes.c_size_t(0)
        while True:
            buf = ctypes.create_string_buffer(max(size.value, 64))
            cap = len(buf)

            def do(h):
                return lib.keyturn_secret_read(h, encoded, which, buf, cap, ctypes.byref(size))

            status = self._core.call(do)
            if status == _lib.E_BUFFER_TOO_SMALL:
                ctypes.memset(buf, 0, cap)
                continue
            check(status)
            try:
                return bytes(buf.raw[: size.value])
            finally:
                ctypes.memset(buf, 0, cap)

    def secret_status(self, secret_id=None):
        """One secret's status dict, or a list of all of them when secret_id is None."""
        encoded = None if secret_id is None else _encode_id(secret_id, "secret id")
        out = ctypes.c_void_p()
        self._core.call(lambda h: check(lib.keyturn_secret_status(ctypes.byref(out), h,
                                                                  encoded)))
        return json.loads(_take_string(out))

    def register_hook(self, name, fn, *, manual=False):
        """Registers fn as hook `name`. fn(request) returns a dict or a Token, or raises
        (RefreshFailed for a chosen action). With manual=True, fn(request, completion)
        answers through the Completion, now or later from any thread."""
        if not callable(fn):
            raise TypeError("hook must be callable")
        encoded = _encode_id(name, "hook name")
        key = _register(_HookEntry(fn, bool(manual), self._core, name))

        def do(h):
            check(lib.keyturn_hook_register(h, encoded, _on_hook, key, _on_release))

        try:
            self._core.call(do)
        except BaseException:
            _registry.pop(key, None)  # on failure keyturn keeps no reference
            raise
        return fn

    def hook(self, name, *, manual=False):
        """Decorator form of register_hook()."""

        def decorate(fn):
            return self.register_hook(name, fn, manual=manual)

        return decorate

    # -- credentials -------------------------------------------------------------------

    def add(self, spec):
        """Adds a credential from a spec dict (or JSON text)."""
        data = _encode_json(spec, "spec")
        self._core.call(lambda h: check(lib.keyturn_credential_add(h, data, len(data))))

    def remove(self, cred_id):
        encoded = _encode_id(cred_id, "credential id")
        self._core.call(lambda h: check(lib.keyturn_credential_remove(h, encoded)))
        self._core.handles.pop(cred_id, None)

    def refresh(self, cred_id):
        """Refreshes now (unless one is in flight); also revives a credential that gave
        up."""
        encoded = _encode_id(cred_id, "credential id")
        self._core.call(lambda h: check(lib.keyturn_credential_refresh(h, encoded)))

    def status(self, cred_id=None):
        """One credential's status dict, or a list of all of them when cred_id is None."""
        out = ctypes.c_void_p()
        if cred_id is None:

            def do(h):
                check(lib.keyturn_engine_status(ctypes.byref(out), h))

        else:
            encoded = _encode_id(cred_id, "credential id")

            def do(h):
                check(lib.keyturn_credential_status(ctypes.byref(out), h, encoded))

        self._core.call(do)
        return json.loads(_take_string(out))

    # -- reading -----------------------------------------------------------------------

    def read_ex(self, cred_id):
        """(value bytes, stale). stale is True only for a credential with serve_stale
        whose value has expired; otherwise an expired value raises ExpiredError."""
        core = self._core
        if core.closed:
            raise StateError(_lib.E_STATE, "the engine is closed")
        handle = core.handles.get(cred_id)
        if handle is None:
            handle = core.open_handle(cred_id, _encode_id(cred_id, "credential id"))
        try:
            value, flags = _read_handle(handle.ptr)
        except RemovedError:
            # Removed (and maybe added again): forget the handle and look the id up once
            # more, which raises NotFoundError if it is gone.
            if core.handles.get(cred_id) is handle:
                core.handles.pop(cred_id, None)
            if core.closed:
                raise StateError(_lib.E_STATE, "the engine is closed") from None
            handle = core.open_handle(cred_id, _encode_id(cred_id, "credential id"))
            value, flags = _read_handle(handle.ptr)
        return value, bool(flags & _lib.READ_STALE)

    def read(self, cred_id):
        """The current value as bytes (NUL bytes and all)."""
        return self.read_ex(cred_id)[0]

    def read_text(self, cred_id, encoding="utf-8"):
        return self.read_ex(cred_id)[0].decode(encoding)

    # -- events and logs ---------------------------------------------------------------

    def subscribe(self, fn):
        """Calls fn(Event) for every event, on an engine thread, in order; returns the
        subscription id. Keep fn quick: events() queues them for another thread."""
        if not callable(fn):
            raise TypeError("subscriber must be callable")
        key = _register(_SubscriberEntry(fn))
        out = ctypes.c_uint64()

        def do(h):
            check(lib.keyturn_subscribe(ctypes.byref(out), h, _on_event, key, _on_release))

        try:
            self._core.call(do)
        except BaseException:
            _registry.pop(key, None)
            raise
        return out.value

    def unsubscribe(self, subscription):
        self._core.call(lambda h: check(lib.keyturn_unsubscribe(h, subscription)))

    def events(self, maxsize=0):
        """An EventQueue subscribed to this engine: iterate it, or get(timeout=...)."""
        return EventQueue(self, maxsize)

    def set_log_level(self, level=None):
        """Forwards keyturn's log lines at `level` and above (default: the logger's
        effective level) to the logger given at creation, "keyturn" by default."""
        if level is None:
            level = self._core.logger.getEffectiveLevel()
        min_level = min(max(int(level), _lib.LOG_DEBUG), _lib.LOG_ERROR)
        key = _register(_LoggerEntry(self._core.logger))

        def do(h):
            check(lib.keyturn_set_logger(h, min_level, _on_log, key, _on_release))

        try:
            self._core.call(do)
        except BaseException:
            _registry.pop(key, None)
            raise
