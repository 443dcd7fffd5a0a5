"""Loads libkeyturn and declares the C interface of capi/keyturn.h for ctypes.

Every function of the header is declared here with its argument and result types; the
rest of the package calls the library only through `lib`.
"""

import ctypes
import ctypes.util
import glob
import os

ABI_VERSION = 1

OK = 0
E_INVALID_ARGUMENT = -1
E_CONFIG = -2
E_NOT_FOUND = -3
E_EXISTS = -4
E_STATE = -5
E_NOT_READY = -6
E_EXPIRED = -7
E_BUFFER_TOO_SMALL = -8
E_STALE_COMPLETION = -9
E_STORE = -10
E_NO_MEMORY = -11
E_REMOVED = -12
E_INTERNAL = -13

ACTION_RETRY = 0
ACTION_LOGIN = 1
ACTION_GIVE_UP = 2

READ_STALE = 1

LOG_DEBUG = 10
LOG_INFO = 20
LOG_WARNING = 30
LOG_ERROR = 40


class LibraryNotFoundError(ImportError):
    """libkeyturn could not be found or loaded; the message lists every place tried."""


class EngineStruct(ctypes.Structure):
    """Opaque keyturn_engine."""


class CredentialStruct(ctypes.Structure):
    """Opaque keyturn_credential."""


EnginePtr = ctypes.POINTER(EngineStruct)
CredentialPtr = ctypes.POINTER(CredentialStruct)

# Callback types. Pointers to text that is not NUL-terminated or that holds secrets are
# taken as c_void_p so that the bytes are copied exactly once, with their length.
HOOK_FN = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint64, ctypes.c_void_p
)
RELEASE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
EVENT_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)

_c_int = ctypes.c_int
_c_size = ctypes.c_size_t
_c_char_p = ctypes.c_char_p
_c_void_p = ctypes.c_void_p
_c_double = ctypes.c_double
_c_uint64 = ctypes.c_uint64

# name: (restype, argtypes), in the order of keyturn.h.
_PROTOTYPES = {
    "keyturn_version_number": (_c_int, []),
    "keyturn_version_string": (_c_char_p, []),
    "keyturn_abi_version": (_c_int, []),
    "keyturn_last_error": (_c_char_p, []),
    "keyturn_status_name": (_c_char_p, [_c_int]),
    "keyturn_string_free": (None, [_c_void_p]),
    "keyturn_engine_new": (_c_int, [ctypes.POINTER(EnginePtr), _c_char_p, _c_size]),
    "keyturn_engine_start": (_c_int, [EnginePtr]),
    "keyturn_engine_stop": (_c_int, [EnginePtr, _c_int]),
    "keyturn_engine_free": (None, [EnginePtr]),
    "keyturn_hook_register": (_c_int, [EnginePtr, _c_char_p, HOOK_FN, _c_void_p, RELEASE_FN]),
    "keyturn_complete": (_c_int, [_c_uint64, _c_char_p, _c_size]),
    "keyturn_complete_value": (_c_int, [_c_uint64, _c_char_p, _c_size, _c_double]),
    "keyturn_complete_error": (_c_int, [_c_uint64, _c_int, _c_char_p, _c_double]),
    "keyturn_credential_add": (_c_int, [EnginePtr, _c_char_p, _c_size]),
    "keyturn_credential_remove": (_c_int, [EnginePtr, _c_char_p]),
    "keyturn_credential_refresh": (_c_int, [EnginePtr, _c_char_p]),
    "keyturn_credential_status": (_c_int, [ctypes.POINTER(_c_void_p), EnginePtr, _c_char_p]),
    "keyturn_engine_status": (_c_int, [ctypes.POINTER(_c_void_p), EnginePtr]),
    "keyturn_read": (
        _c_int,
        [
            EnginePtr,
            _c_char_p,
            _c_void_p,
            _c_size,
            ctypes.POINTER(_c_size),
            ctypes.POINTER(ctypes.c_uint),
        ],
    ),
    "keyturn_credential_open": (_c_int, [ctypes.POINTER(CredentialPtr), EnginePtr, _c_char_p]),
    "keyturn_credential_read": (
        _c_int,
        [
            CredentialPtr,
            _c_void_p,
            _c_size,
            ctypes.POINTER(_c_size),
            ctypes.POINTER(ctypes.c_uint),
        ],
    ),
    "keyturn_credential_close": (None, [CredentialPtr]),
    "keyturn_secret_add": (_c_int, [EnginePtr, _c_char_p, _c_size]),
    "keyturn_secret_remove": (_c_int, [EnginePtr, _c_char_p]),
    "keyturn_secret_rotate": (_c_int, [ctypes.POINTER(_c_void_p), EnginePtr, _c_char_p]),
    "keyturn_secret_seed": (_c_int, [EnginePtr, _c_char_p, _c_char_p, _c_size]),
    "keyturn_secret_read": (
        _c_int,
        [EnginePtr, _c_char_p, _c_char_p, _c_void_p, _c_size, ctypes.POINTER(_c_size)],
    ),
    "keyturn_secret_status": (_c_int, [ctypes.POINTER(_c_void_p), EnginePtr, _c_char_p]),
    "keyturn_subscribe": (
        _c_int,
        [ctypes.POINTER(_c_uint64), EnginePtr, EVENT_FN, _c_void_p, RELEASE_FN],
    ),
    "keyturn_unsubscribe": (_c_int, [EnginePtr, _c_uint64]),
    "keyturn_set_logger": (_c_int, [EnginePtr, _c_int, LOG_FN, _c_void_p, RELEASE_FN]),
}


def _repo_root():
    # <repo>/bindings/python/keyturn/_lib.py
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.dirname(os.path.dirname(os.path.dirname(here)))


def _candidates():
    """Yields (description, path-or-name) in the order the library is searched for."""
    env = os.environ.get("KEYTURN_LIBRARY")
    if env:
        # An explicit choice is never second-guessed by a fallback.
        yield ("KEYTURN_LIBRARY", env)
        return
    root = _repo_root()
    yield ("build tree", os.path.join(root, "build", "libkeyturn.so"))
    for path in sorted(glob.glob(os.path.join(root, "build-*", "libkeyturn.so"))):
        yield ("build tree", path)
    found = ctypes.util.find_library("keyturn")
    if found:
        yield ("find_library", found)
    yield ("dynamic loader", "libkeyturn.so.0")


def _load():
    tried = []
    for origin, path in _candidates():
        is_path = os.sep in path
        if is_path and not os.path.exists(path):
            tried.append(f"{path} ({origin}: no such file)")
            continue
        try:
            # CDLL, not PyDLL: the GIL is released during every call, which callbacks from
            # the engine's threads and blocking calls such as keyturn_engine_stop() need.
            return ctypes.CDLL(path), path
        except OSError as exc:
            tried.append(f"{path} ({origin}: {exc})")
    raise LibraryNotFoundError(
        "libkeyturn not found; set KEYTURN_LIBRARY to the path of libkeyturn.so, or build it "
        "with cmake into <repo>/build. Tried: " + "; ".join(tried),
        name="keyturn",
    )


def _declare(cdll):
    for name, (restype, argtypes) in _PROTOTYPES.items():
        try:
            fn = getattr(cdll, name)
        except AttributeError as exc:
            raise LibraryNotFoundError(
                f"{path}: missing symbol {name}; is this libkeyturn?", name="keyturn"
            ) from exc
        fn.restype = restype
        fn.argtypes = argtypes


lib, path = _load()
_declare(lib)

_abi = lib.keyturn_abi_version()
if _abi != ABI_VERSION:
    raise LibraryNotFoundError(
        f"{path}: ABI version {_abi}, this binding needs {ABI_VERSION}", name="keyturn"
    )
