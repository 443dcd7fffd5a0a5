"""Small helpers the Python tests share: private files, polling, captured log lines."""

import logging
import os
import time


def write_private(path, text):
    """Writes `text` and a newline to `path`, readable by its owner only (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def wait_for(predicate, timeout, step=0.02):
    """Polls until `predicate()` is true or `timeout` seconds pass; returns the last value."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= end:
            return value
        time.sleep(step)


def captured_logger(name):
    """A logger of its own for one test, at DEBUG, that keeps its lines and passes
    nothing up: returns (logger, lines); the messages are in lines.lines."""
    lines = Lines()
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(lines)
    return logger, lines


class Lines(logging.Handler):
    """Keeps every message logged through it, for checks that no secret shows."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):  # called with the handler's own lock held
        self.lines.append(record.getMessage())
