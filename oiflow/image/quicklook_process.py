"""A child process that draws the quicklooks of ``oiflow image`` off the solver's critical path.

:meth:`QuicklookProcess.start` forks the command's process (``oiflow image``: at the first iteration
of the solver, ``deferred=True``): the child imports matplotlib and loads the font
(:func:`oiflow.image.plots.warm_up`) on the other core while the parent reads the data and runs the
solver, then waits for the result. Once the image is made the parent sends the payload
(:func:`oiflow.image.plots.quicklook_payload`, pickled through a pipe) and writes the product while
the child draws both PNGs and answers with the paths written and a message per figure that failed
(JSON through a second pipe); it draws the two figures at once, the residuals in a grandchild it
forks (:func:`_draw_both`). When the product cannot be written (an exception inside the ``with``
block after :meth:`submit`), :meth:`discard` stops the child and removes what it drew: no quicklook
without its product. :meth:`QuicklookProcess.join` waits for that answer (at most ``timeout``
seconds, then the child is killed) and reaps the child. Whatever happens to the child — an
exception, a crash, a kill, a hang — the parent only gets a message: a quicklook never costs the
product, nor the command's exit status.

Nothing is forked where ``os.fork`` is missing or the process runs other Python threads (a lock held
by one of them at the fork would stay held in the child): the quicklooks are then drawn in the
parent after the product, as the library does.

The child never returns into the parent's code: it leaves with ``os._exit`` (no ``atexit`` handlers,
no flushing of the parent's buffered output). The command forks; a library caller (a Dask worker, a
Prefect task) draws in-process: :func:`oiflow.image.files.reconstruct_files` draws there unless
given a started process.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import select
import signal
import threading
import time

log = logging.getLogger(__name__)

#: seconds the parent waits for the drawings after sending the result (then kills the child)
JOIN_TIMEOUT = 120.0


def _read_all(fd: int, deadline: float | None = None) -> bytes | None:
    """Everything until end of file on ``fd``; None when ``deadline`` (monotonic) passes first."""
    chunks = []
    while True:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _child(payload_fd: int, answer_fd: int) -> int:
    """The child's whole life: warm up, wait for the payload, draw, answer. Returns its exit status."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; EOF ends the child
    from . import plots

    try:
        plots.warm_up()
    except Exception:  # drawing will say what fails
        pass
    blob = _read_all(payload_fd)
    if not blob:  # the parent sent nothing (no product): nothing to draw
        return 0
    payload, product = pickle.loads(blob)
    paths, messages = _draw_both(payload, product)
    _write_all(answer_fd, json.dumps({"paths": paths, "messages": messages}).encode())
    return 0


def _draw_both(payload: dict, product: str) -> tuple[list[str], list[str]]:
    """Both quicklooks at once: a grandchild forked from the warm child draws the residuals while
    the child draws the image (the command waits for the slower of the two, not their sum); both
    in the child when the fork fails. The grandchild's answer comes through a pipe; when it dies
    without one, its figure is reported not written."""
    from . import plots

    try:
        answer_r, answer_w = os.pipe()
        pid = os.fork()
    except OSError:
        return plots.draw_quicklooks(payload, product)
    if pid == 0:  # the grandchild
        status = 1
        try:
            os.close(answer_r)
            paths, messages = plots.draw_quicklooks(payload, product, which=(1,))
            _write_all(answer_w, json.dumps({"paths": paths, "messages": messages}).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(answer_w)
    paths, messages = plots.draw_quicklooks(payload, product, which=(0,))
    answer = _read_all(answer_r, time.monotonic() + JOIN_TIMEOUT)
    os.close(answer_r)
    if answer is None:
        os.kill(pid, signal.SIGKILL)
    status = os.waitpid(pid, 0)[1]
    try:
        other = json.loads(answer) if answer else None
        paths, messages = paths + list(other["paths"]), messages + list(other["messages"])
    except (ValueError, KeyError, TypeError):
        other = None
    if other is None:
        name = plots.quicklook_paths(product)[1].name
        messages.append(f"quicklook {name} not written: the drawing process ended without drawing ({_describe(status)})")
    return paths, messages


class QuicklookProcess:
    """The quicklook child of one command (module docstring). Use as a context manager, or call
    :meth:`start`, then :meth:`submit` once and :meth:`join`; :meth:`close` reaps the child in
    any case."""

    def __init__(self, timeout: float = JOIN_TIMEOUT, deferred: bool = False):
        self.timeout = timeout
        self.deferred = deferred  # the context manager does not start it: the caller calls start()
        self.pid: int | None = None
        self._payload_fd: int | None = None
        self._answer_fd: int | None = None
        self._submitted = False
        self._failure: str | None = None
        self._product: str | None = None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self) -> "QuicklookProcess":
        """Fork the child (once); nothing where ``os.fork`` is missing or the process runs other
        Python threads (a lock one of them holds would stay held in the child): :meth:`submit`
        then returns False and the caller draws in-process."""
        if self.running or self._submitted or not hasattr(os, "fork") or threading.active_count() > 1:
            return self
        payload_r, payload_w = os.pipe()
        answer_r, answer_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            status = 1
            try:
                _own_group()
                os.close(payload_w)
                os.close(answer_r)
                status = _child(payload_r, answer_w)
            except BaseException:
                status = 1
            finally:
                os._exit(status)
        os.close(payload_r)
        os.close(answer_w)
        _own_group(pid)
        self.pid, self._payload_fd, self._answer_fd = pid, payload_w, answer_r
        return self

    def submit(self, payload: dict, product: str | os.PathLike) -> bool:
        """Send the payload of ``product``'s quicklooks to the child; False (and the reason kept
        for :meth:`join`) when the child is not there to draw them."""
        if not self.running or self._submitted:
            return False
        self._submitted = True
        self._product = str(product)
        try:
            _write_all(self._payload_fd, pickle.dumps((payload, str(product)), protocol=pickle.HIGHEST_PROTOCOL))
        except OSError as exc:  # the child is gone (BrokenPipeError)
            self._failure = f"the drawing process ended early ({type(exc).__name__})"
            return False
        finally:
            os.close(self._payload_fd)
            self._payload_fd = None
        return True

    def join(self) -> tuple[list[str], list[str]]:
        """(paths written, messages) of the submitted quicklooks; waits at most ``timeout`` s.
        Without a submission the child is simply ended."""
        if not self.running:
            return [], []
        if not self._submitted:
            self.close()
            return [], []
        answer = None if self._failure else _read_all(self._answer_fd, time.monotonic() + self.timeout)
        if answer is None and self._failure is None:
            self._failure = f"the drawing process took more than {self.timeout:g} s and was stopped"
            _kill_group(self.pid)
        status = self.close()
        if answer:
            try:
                out = json.loads(answer)
                return list(out["paths"]), list(out["messages"])
            except (ValueError, KeyError, TypeError) as exc:
                self._failure = f"unreadable answer from the drawing process ({exc})"
        if self._failure is None:
            self._failure = f"the drawing process ended without drawing ({_describe(status)})"
        return [], [f"quicklooks not written: {self._failure}"]

    def close(self) -> int | None:
        """Close the pipes (the child, if waiting, sees the end of its input and leaves) and reap
        it; its wait status, None when there was no child."""
        for name in ("_payload_fd", "_answer_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)
        if self.pid is None:
            return None
        pid, self.pid = self.pid, None
        return os.waitpid(pid, 0)[1]

    def __enter__(self) -> "QuicklookProcess":
        return self if self.deferred else self.start()

    def discard(self) -> None:
        """Stop the child and remove the quicklooks it may have written (the product they belong
        to was not written: an error after :meth:`submit`)."""
        if self.pid is not None:
            _kill_group(self.pid)
            self.close()
        if self._product is not None:
            from ..provenance import atomic_leftovers
            from .plots import quicklook_paths

            for path in quicklook_paths(self._product):
                for left in [path, *atomic_leftovers(path)]:  # a drawing stopped while saving leaves its temporary file
                    left.unlink(missing_ok=True)

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None and self._submitted:
            self.discard()
        elif self.pid is not None:
            if self._submitted:  # submitted but not joined: do not wait for the drawings
                _kill_group(self.pid)
            self.close()


def _own_group(pid: int = 0) -> None:
    """Make the child (``pid``; 0: this process) the leader of its own process group, so that
    stopping it stops the grandchild it forks to draw (:func:`_kill_group`). Called by both
    the parent and the child (whichever runs first); a failure leaves the group as it was."""
    try:
        os.setpgid(pid, pid if pid else 0)
    except OSError:
        pass


def _kill_group(pid: int) -> None:
    """SIGKILL the child and its grandchild (its process group), or the child alone when it has
    no group of its own."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
            return
    except OSError:
        pass
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _describe(status: int | None) -> str:
    if status is None:
        return "no process"
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
