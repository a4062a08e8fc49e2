"""Run model-written Python in isolation, with what Linux already offers, and tell a pass from a trick.

Isolation levels (`isolation()` says which one this machine gets; every results row records it):

* ``"namespaces"`` (as root, util-linux ``unshare``): the program runs in new PID, network, mount,
  IPC and UTS namespaces. PID namespace: when the sandbox's init exits or is killed, every process
  the program started dies with it. Network: only a loopback that is down. Mount: every mount is
  re-mounted read-only except the program's own temporary directory; when the interpreter lives
  under a directory the unprivileged user cannot enter (``/root``, say), a small tmpfs hides that
  directory and re-exposes the interpreter's installation alone, read-only. The program then runs
  as an unprivileged user (``nobody``) with no capabilities (``setpriv --no-new-privs``).
* ``"user-namespaces"`` (not root, unprivileged user namespaces allowed): the same namespaces inside
  a user namespace; the program keeps the caller's identity outside it.
* ``"rlimits"`` (fallback): only what the process can do to itself: its own session, Python's
  process-starting functions disabled, no ``ctypes``. Not isolation: `isolation()` logs a warning
  once saying what is missing.

On every level: memory, CPU time, file size and process count are capped (`SandboxLimits`), the
environment holds only PATH and LANG, the wall clock is enforced by killing the sandbox, and the
temporary directory is deleted afterwards.

A pass is the program's own success marker *and* a clean exit. The marker is a random token that
the parent writes to a pipe; the bootstrap reads it, closes the pipe, runs the program, and prints
the token only when the program (solution, tests and ``check(...)``) ran to its end without an
exception. So ``os._exit(0)`` or ``sys.exit(0)`` before the tests, or an ``atexit`` handler that
exits 0 after a failed assertion, never pass. (The token stays in the bootstrap's memory while the
program runs: code that searched the interpreter's own objects for it could still print it. So HumanEval's
verdicts do not rest on it where the problem's tests parse: the program returns the test calls' values as
plain data (`SandboxResult.output`) and the grader judges them, `benchmarks/verdicts.py`.)
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SandboxLimits:
    """What a sandboxed program may use (human-eval's and evalplus's harnesses use similar caps).

    `max_processes` is RLIMIT_NPROC, which counts every process and thread of the user the program
    runs as, so a small cap means it can hardly fork; the PID namespace kills whatever it started.
    `cpu_s` stops runaway computation whatever the machine's load; `wall_s` only catches a program that
    sleeps or blocks, so it is generous: at 10 s, HumanEval rows graded on a saturated 2-core machine
    (a benchmark beside the tests) failed correct answers by the clock, 8 of 868 rows.
    """

    wall_s: float = 60.0
    cpu_s: int = 10
    memory_bytes: int = 2 * 1024**3
    file_bytes: int = 16 * 1024**2
    max_processes: int = 8
    unprivileged_uid: int = 65534  # "nobody"


@dataclass(frozen=True)
class SandboxResult:
    """How a sandboxed program ended."""

    returncode: int  # negative: killed by that signal
    timed_out: bool
    marker_seen: bool  # the program ran to its end and printed the run's success marker
    stderr: str  # its tail
    isolation: str  # the isolation level it ran under
    output: str = ""  # what the program printed before the success marker (the last `OUTPUT_BYTES` of it)

    @property
    def passed(self) -> bool:
        """True only when the program ran to its end (its marker) and exited cleanly in time."""
        return self.marker_seen and self.returncode == 0 and not self.timed_out


_BOOTSTRAP = """\
import os, resource, sys
limits = dict(arg.split("=") for arg in sys.argv[1:])
with os.fdopen(int(limits["MARKER_FD"]), "rb") as pipe:
    marker = pipe.read().decode()
source = open("program.py").read()
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
for name in ("AS", "CPU", "FSIZE", "NPROC"):
    value = int(limits[name])
    resource.setrlimit(getattr(resource, "RLIMIT_" + name), (value, value))
if limits["GUARD"] == "1":
    def refuse(*args, **kwargs):
        raise PermissionError("the sandbox does not allow starting processes")
    import posix, _posixsubprocess
    for name in ("fork", "forkpty", "system", "posix_spawn", "posix_spawnp", "execv", "execve"):
        setattr(os, name, refuse)
        setattr(posix, name, refuse)
    _posixsubprocess.fork_exec = refuse
    sys.modules["ctypes"] = sys.modules["_ctypes"] = None

def run(source, marker):
    exec(compile(source, "program.py", "exec"), {"__name__": "__main__"})
    sys.stdout.write("\\n" + marker + "\\n")
    sys.stdout.flush()

del limits
run(source, marker)
"""

# Runs as root inside the new namespaces: the mounts, then the program as the unprivileged user.
# $1 workdir, $2 interpreter home, $3 directory to hide ("" for none), $4 interpreter, $5 uid, then
# the interpreter's arguments. sh stays PID 1 (the program is not init, so it gets every signal).
_NAMESPACE_SCRIPT = """\
set -eu
work=$1; home=$2; hidden=$3; python=$4; uid=$5; shift 5
mount --make-rprivate /
if [ -n "$hidden" ]; then
  mkdir "$work/.python"
  mount --bind "$home" "$work/.python"
  mount -t tmpfs -o mode=755,size=1m ecmh-sandbox "$hidden"
  mkdir -p "$home"
  mount --move "$work/.python" "$home"
  rmdir "$work/.python"
fi
for target in $(awk '{print $5}' /proc/self/mountinfo | sort -u); do
  mount -o remount,bind,ro "$target" 2>/dev/null || [ "$target" != / ] || exit 97
done
mount --bind "$work" "$work"
mount -o remount,bind,rw "$work"
cd "$work"
status=0
setpriv --reuid="$uid" --regid="$uid" --clear-groups --no-new-privs \
  env -i PATH="$PATH" LANG="$LANG" "$python" "$@" || status=$?
exit $status
"""

_NAMESPACES = ["--pid", "--fork", "--kill-child", "--mount-proc", "--net", "--mount", "--ipc", "--uts"]
_STDERR_TAIL_CHARS = 4000
_TAIL_BYTES = 4096
OUTPUT_BYTES = 1 << 20


def _interpreter() -> tuple[str, str]:
    """The real interpreter binary and its installation (the stdlib is all a sandboxed program gets)."""
    return os.path.realpath(sys.executable), os.path.realpath(sys.base_prefix)


def _hidden_ancestor(path: str, uid: int) -> str:
    """The outermost directory above `path` that `uid` cannot enter ("" if none)."""
    for ancestor in reversed(Path(path).parents):
        info = os.stat(ancestor)
        if info.st_uid != uid and not info.st_mode & stat.S_IXOTH:
            return str(ancestor)
    return ""


def _command(level: str, workdir: str, limits: SandboxLimits, arguments: list[str]) -> list[str]:
    python, home = _interpreter()
    interpreter_args = ["-I", "-B", "-c", _BOOTSTRAP, *arguments]
    if level == "rlimits":
        return [python, *interpreter_args]
    namespaces = _NAMESPACES if level == "namespaces" else ["--user", "--map-root-user", *_NAMESPACES]
    uid = limits.unprivileged_uid if level == "namespaces" else 0
    hidden = _hidden_ancestor(home, limits.unprivileged_uid) if level == "namespaces" else ""
    return ["unshare", *namespaces, "sh", "-c", _NAMESPACE_SCRIPT, "sh", workdir, home, hidden, python, str(uid),
            *interpreter_args]


def _execute(level: str, program: str, limits: SandboxLimits) -> SandboxResult:
    workdir = tempfile.mkdtemp(prefix="ecmh-sandbox-")
    read_end, write_end = os.pipe()
    try:
        Path(workdir, "program.py").write_text(program)
        if level == "namespaces" or (level == "rlimits" and os.geteuid() == 0):
            os.chown(workdir, limits.unprivileged_uid, limits.unprivileged_uid)
        marker = secrets.token_hex(16)
        os.write(write_end, marker.encode())
        os.close(write_end)
        write_end = None
        arguments = [f"AS={limits.memory_bytes}", f"CPU={limits.cpu_s}", f"FSIZE={limits.file_bytes}",
                     f"NPROC={limits.max_processes}", f"MARKER_FD={read_end}", f"GUARD={int(level == 'rlimits')}"]
        with open(Path(workdir, "stdout.txt"), "w+b") as stdout, open(Path(workdir, "stderr.txt"), "w+b") as stderr:
            process = subprocess.Popen(
                _command(level, workdir, limits, arguments), cwd=workdir,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, start_new_session=True,
                close_fds=True, pass_fds=(read_end,))
            os.close(read_end)
            read_end = None
            try:
                process.wait(timeout=limits.wall_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            _kill_group(process.pid)
            process.wait()
            output, _, last = _tail(stdout, OUTPUT_BYTES).rstrip(b"\n").rpartition(b"\n")
            marker_seen = last == marker.encode()
            stderr_tail = _tail(stderr, _STDERR_TAIL_CHARS).decode("utf-8", "replace")
        return SandboxResult(process.returncode, timed_out, marker_seen, stderr_tail, level,
                             output.decode("utf-8", "replace") if marker_seen else "")
    finally:
        for fd in (read_end, write_end):
            if fd is not None:
                os.close(fd)
        shutil.rmtree(workdir, ignore_errors=True)


def _tail(file, size: int = _TAIL_BYTES) -> bytes:
    file.seek(max(0, os.fstat(file.fileno()).st_size - size))
    return file.read()


def _kill_group(pid: int) -> None:
    """SIGKILL the sandbox's process group (unshare, and through --kill-child its namespace; or the program)."""
    try:
        os.killpg(pid, 9)
    except (ProcessLookupError, PermissionError):
        pass


@functools.lru_cache(maxsize=None)
def isolation(limits: SandboxLimits = SandboxLimits()) -> str:
    """The strongest isolation level that works here, found once by running a trivial program."""
    candidates = []
    if sys.platform.startswith("linux") and shutil.which("unshare") and shutil.which("setpriv"):
        candidates = ["namespaces"] if os.geteuid() == 0 else ["user-namespaces"]
    failures = []
    for level in candidates:
        result = _execute(level, "pass\n", limits)
        if result.passed:
            return level
        failures.append(f"{level}: exit {result.returncode}, {result.stderr.strip()[-300:] or 'no output'}")
    missing = "; ".join(failures) or "util-linux unshare/setpriv on Linux"
    log.warning("HumanEval sandbox: no namespace isolation here (%s). Falling back to resource limits only: the "
                "program runs as this user, can read and write what this user can and reach the network. Results "
                "rows record isolation='rlimits'.", missing)
    return "rlimits"


def run_sandboxed(program: str, limits: SandboxLimits = SandboxLimits()) -> SandboxResult:
    """Run Python source in the strongest isolation available (module docstring) and report how it ended."""
    return _execute(isolation(limits), program, limits)
