"""Graders: decide whether a model's answer to a benchmark problem is right.

Each grader has the same two methods, both taking the problem dict a task yields and the
model's completion (the text it generated):

* ``grade(problem, completion) -> bool``: is the answer right?
* ``extract(problem, completion) -> str | None``: the final answer that was graded (the
  boxed expression, the choice letter, or the program that was run), for reports.

``MathGrader`` (MATH500, AIME, GSM8K) compares with math-verify; ``ChoiceGrader`` (GPQA)
compares a letter; ``CodeGrader`` (HumanEval) runs the program and its tests in a separate,
resource-limited process. All three are safe to call from several threads at once.
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------
# Boxed answers
# ---------------------------------------------------------------------------------------

_BOXED = re.compile(r"\\(?:boxed|fbox)\b")


def last_boxed(text: str) -> str | None:
    r"""The content of the last complete ``\boxed{...}`` in `text` (nested braces kept), or None.

    ``\boxed 5`` (no braces) gives ``5``; an unclosed last box (a truncated answer) is skipped
    in favour of the previous complete one.
    """
    found = None
    for match in _BOXED.finditer(text):
        rest = text[match.end():]
        stripped = rest.lstrip()
        if stripped.startswith("{"):
            content = _braced(stripped)
        elif rest[:1] == " " and stripped:
            content = re.match(r"[^\s$]+", stripped).group(0)
        else:
            content = None
        if content is not None:
            found = content
    return found


def _braced(text: str) -> str | None:
    """The content of the brace group that `text` starts with, or None if it never closes."""
    depth = 0
    for i, char in enumerate(text):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[1:i]
    return None


# ---------------------------------------------------------------------------------------
# Math: math-verify
# ---------------------------------------------------------------------------------------

def _math_answer_text(completion: str) -> str:
    """What math-verify parses from a completion: its last box alone, else the whole text."""
    boxed = last_boxed(completion)
    return completion if boxed is None else "\\boxed{" + boxed + "}"


def _gold_text(gold: str) -> str:
    r"""A gold answer in the form math-verify parses: ``42`` and ``\frac{1}{2}`` become ``$...$``."""
    gold = str(gold).strip()
    if "\\boxed" in gold or gold.startswith("$"):
        return gold
    return f"${gold}$"


def verify_math(gold: str, completion: str) -> bool:
    """math-verify's verdict on `completion` against `gold`, with math-verify's own timeouts.

    Must run on the main thread (the timeouts use ``signal.alarm``); `MathGrader` sees to that.
    """
    from math_verify import parse, verify

    gold_parsed = parse(_gold_text(gold))
    answer_parsed = parse(_math_answer_text(completion))
    if not gold_parsed or not answer_parsed:
        return False
    return bool(verify(gold_parsed, answer_parsed))


def extract_math(completion: str) -> str | None:
    """The last boxed expression, else the answer math-verify finds in the text, else None.

    Must run on the main thread when it falls back to math-verify (see `verify_math`).
    """
    boxed = last_boxed(completion)
    if boxed is not None:
        return boxed
    from math_verify import parse

    parsed = parse(completion)
    return str(parsed[-1]) if parsed else None


class _MathWorker:
    """A long-lived ``python -I`` child process that runs math-verify on its main thread.

    Used when grading happens off the main thread, where math-verify's ``signal.alarm``
    timeouts cannot work. Requests go one at a time (a lock) as JSON lines; a request that
    outlives `limit_s` seconds kills the child, which is restarted on the next request.
    """

    def __init__(self, limit_s: float):
        self.limit_s = limit_s
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None

    def call(self, function: str, *args: str):
        """``function(*args)`` (a name in this module) in the child; None on timeout or crash."""
        with self._lock:
            process = self._running_process()
            try:
                process.stdin.write(json.dumps([function, *args]) + "\n")
                process.stdin.flush()
                ready, _, _ = select.select([process.stdout], [], [], self.limit_s)
                line = process.stdout.readline() if ready else ""
            except OSError:
                line = ""
            if not line:
                log.warning("math-verify took over %.0f s (or crashed) on %s%r; counted as wrong",
                            self.limit_s, function, tuple(a[:80] for a in args))
                self._stop()
                return None
            return json.loads(line)

    def _running_process(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            package_root = str(Path(__file__).resolve().parents[1])
            bootstrap = (f"import sys; sys.path.insert(0, {package_root!r}); "
                         "from benchmarks.graders import serve_math_requests; serve_math_requests()")
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-c", bootstrap], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        return self._process

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


def serve_math_requests() -> None:
    """The `_MathWorker` child's loop: read ``[function, *args]`` lines, answer JSON lines."""
    replies = sys.stdout
    sys.stdout = sys.stderr  # anything math-verify prints must not corrupt the replies
    functions = {"verify_math": verify_math, "extract_math": extract_math}
    for line in sys.stdin:
        name, *args = json.loads(line)
        try:
            result = functions[name](*args)
        except Exception:  # a crash on one answer is a wrong answer, not a dead worker
            result = None
        replies.write(json.dumps(result) + "\n")
        replies.flush()


class MathGrader:
    r"""Grades MATH500 / AIME / GSM8K answers with math-verify against ``problem["answer"]``.

    The graded answer is the last ``\boxed{}`` of the completion, or, when there is none,
    what math-verify finds in the text. Equivalent forms count (``0.5`` = ``\frac{1}{2}``,
    ``10\%`` = ``10``, ``(3, \pi/2)`` = ``\left( 3, \frac{\pi}{2} \right)``).

    On the main thread math-verify runs in-process with its own 5 s timeouts. Off the main
    thread it runs in a shared worker process (`_MathWorker`) with a wall-clock limit of
    `worker_limit_s` seconds; an answer that hits a limit counts as wrong.
    """

    def __init__(self, worker_limit_s: float = 30.0):
        self._worker = _MathWorker(worker_limit_s)

    def grade(self, problem: dict, completion: str) -> bool:
        """True if the completion's final answer equals ``problem["answer"]`` mathematically."""
        if _on_main_thread():
            return verify_math(problem["answer"], completion)
        return bool(self._worker.call("verify_math", str(problem["answer"]), completion))

    def extract(self, problem: dict, completion: str) -> str | None:
        """The final answer that `grade` compares (the last boxed expression), or None."""
        if _on_main_thread() or last_boxed(completion) is not None:  # a box needs no math-verify
            return extract_math(completion)
        return self._worker.call("extract_math", completion)


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


# ---------------------------------------------------------------------------------------
# Multiple choice: GPQA
# ---------------------------------------------------------------------------------------

_LETTER = re.compile(r"(?<![A-Za-z])([A-D])(?![A-Za-z])")
_STATED_ANSWER = re.compile(r"(?i:answer)(?:\s+is)?\s*[:：]?\s*[*(\[]*\s*([A-D])(?![A-Za-z])")


class ChoiceGrader:
    r"""Grades GPQA answers: the choice letter in the last ``\boxed{}`` equals ``problem["answer"]``.

    A box holding the text of a choice instead of its letter counts as that choice (when the
    problem lists its ``choices``). Without a box, the last "answer is (C)" / "Answer: C" counts.
    """

    def grade(self, problem: dict, completion: str) -> bool:
        """True if the chosen letter is the gold letter."""
        return self.extract(problem, completion) == problem["answer"]

    def extract(self, problem: dict, completion: str) -> str | None:
        """The chosen letter A-D, or None if the completion names none."""
        boxed = last_boxed(completion)
        if boxed is not None:
            letter = _LETTER.search(boxed)
            if letter:
                return letter.group(1)
            return self._letter_of_choice(problem, boxed)
        stated = _STATED_ANSWER.findall(completion)
        return stated[-1] if stated else None

    @staticmethod
    def _letter_of_choice(problem: dict, text: str) -> str | None:
        wanted = " ".join(text.split()).lower()
        for letter, choice in zip("ABCD", problem.get("choices", [])):
            if " ".join(str(choice).split()).lower() == wanted:
                return letter
        return None


# ---------------------------------------------------------------------------------------
# Code: HumanEval in a sandboxed process
# ---------------------------------------------------------------------------------------

_FENCED = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_TOP_LEVEL_CODE = ("def ", "async def ", "class ", "@", "import ", "from ", "#")


def build_program(problem: dict, completion: str) -> str:
    """The solution program for a HumanEval problem: function prompt + what the model wrote.

    * A chat answer whose fenced ```python block defines the entry point: the prompt (its
      imports and helper functions; its stub is redefined) followed by that block.
    * Otherwise the completion continues the prompt's function body. It is cut at the first
      line at column 0 that is not a def/class/decorator/import/comment (e.g. ``print(...)``,
      ``if __name__ ...``, closing prose), so a base model's chatter after the function
      does not break it; helper functions it defines after the body are kept.

    Either way, when the token limit cut the answer inside code the model added after the
    solution (a test function, say), those trailing top-level statements are dropped until the
    program parses; a program that never parses is returned whole, to fail with its own error.
    """
    prompt, entry_point = problem["prompt"], problem["entry_point"]
    defines_entry = re.compile(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", re.MULTILINE)
    blocks = [block for block in _FENCED.findall(completion) if defines_entry.search(block)]
    if blocks:
        return _parsing_prefix(prompt.rstrip() + "\n\n\n", blocks[-1].strip().split("\n"))
    kept = []
    for line in completion.split("\n"):
        if line.strip() and not line[0].isspace() and not line.startswith(_TOP_LEVEL_CODE):
            break
        kept.append(line)
    return _parsing_prefix(prompt, kept)


def _parsing_prefix(head: str, lines: list[str]) -> str:
    """`head` + `lines`, less as few trailing top-level statements as make it parse (see `build_program`)."""
    statement_starts = [i for i, line in enumerate(lines) if i and line.strip() and not line[0].isspace()]
    programs = [head + "\n".join(lines[:end]).rstrip() + "\n" for end in [len(lines), *reversed(statement_starts)]]
    return next((program for program in programs if _parses(program)), programs[0])


def _parses(program: str) -> bool:
    try:
        compile(program, "<solution>", "exec")  # parses and compiles only: nothing of the model's code runs here
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def build_test_program(problem: dict, completion: str) -> str:
    """`build_program` followed by the problem's tests and ``check(entry_point)``."""
    return (build_program(problem, completion) + "\n\n" + problem["test"]
            + f"\n\ncheck({problem['entry_point']})\n")


@dataclass(frozen=True)
class SandboxLimits:
    """What a sandboxed program may use.

    `max_processes` is RLIMIT_NPROC, which counts every process and thread of the user the
    program runs as, so a small cap means it cannot fork at all. RLIMIT_NPROC does not bind
    root: a grader running as root runs the program as `unprivileged_uid` when the Python
    installation is readable by that user (not when it lives under /root, say).
    """

    wall_s: float = 10.0
    cpu_s: int = 10
    memory_bytes: int = 2 * 1024**3
    file_bytes: int = 16 * 1024**2
    max_processes: int = 8
    unprivileged_uid: int = 65534  # "nobody"


@dataclass(frozen=True)
class SandboxResult:
    """How a sandboxed program ended: exit code (negative: killed by that signal), timeout, stderr tail."""

    returncode: int
    timed_out: bool
    stderr: str

    @property
    def passed(self) -> bool:
        """True only for a clean exit (code 0) within the time limit."""
        return self.returncode == 0 and not self.timed_out


_SANDBOX_BOOTSTRAP = """\
import os, resource, sys
limits = dict(arg.split("=") for arg in sys.argv[1:])
source = open("program.py").read()
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
for name in ("AS", "CPU", "FSIZE", "NPROC"):
    value = int(limits[name])
    resource.setrlimit(getattr(resource, "RLIMIT_" + name), (value, value))

def runs_as(uid):
    # can this interpreter still read its standard library as `uid`? (tried, then undone)
    os.setegid(uid)
    os.seteuid(uid)
    try:
        os.listdir(os.path.dirname(os.__file__))
        return True
    except OSError:
        return False
    finally:
        os.seteuid(0)
        os.setegid(0)

uid = int(limits["UID"])
if os.geteuid() == 0 and runs_as(uid):
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)

def refuse(*args, **kwargs):
    raise PermissionError("the sandbox does not allow starting processes")

import posix
for name in ("fork", "forkpty", "system", "posix_spawn", "posix_spawnp", "execv", "execve"):
    setattr(os, name, refuse)
    setattr(posix, name, refuse)
import _posixsubprocess
_posixsubprocess.fork_exec = refuse
sys.modules["ctypes"] = sys.modules["_ctypes"] = None
exec(compile(source, "program.py", "exec"), {"__name__": "__main__"})
"""

_STDERR_TAIL_CHARS = 4000


def run_sandboxed(program: str, limits: SandboxLimits = SandboxLimits()) -> SandboxResult:
    """Run Python source in a separate, resource-limited process and report how it ended.

    The program runs under a fresh ``python -I`` in its own session (process group) and a
    fresh temporary directory that is deleted afterwards, with an environment holding only
    PATH and LANG, and with memory, CPU time, file size and process count capped (see
    `SandboxLimits`). Python's ways to start processes (``os.fork``, ``os.system``,
    ``subprocess``, ``os.exec*``, ``ctypes``) raise PermissionError in it, which also stops
    fork bombs where RLIMIT_NPROC cannot (as root). After `limits.wall_s` seconds the whole
    process group is killed. Nothing of the program runs in this process. Not a security
    boundary against a determined attacker (no network or filesystem isolation beyond file
    permissions), but enough for model-written code.
    """
    workdir = tempfile.mkdtemp(prefix="ecmh-sandbox-")
    try:
        Path(workdir, "program.py").write_text(program)
        if os.geteuid() == 0:
            os.chown(workdir, limits.unprivileged_uid, limits.unprivileged_uid)
        limit_args = [f"AS={limits.memory_bytes}", f"CPU={limits.cpu_s}", f"FSIZE={limits.file_bytes}",
                      f"NPROC={limits.max_processes}", f"UID={limits.unprivileged_uid}"]
        with open(Path(workdir, "stderr.txt"), "w+b") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-I", "-B", "-c", _SANDBOX_BOOTSTRAP, *limit_args],
                cwd=workdir, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                start_new_session=True, close_fds=True)
            try:
                process.wait(timeout=limits.wall_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            _kill_group(process.pid)
            process.wait()
            stderr.seek(max(0, os.fstat(stderr.fileno()).st_size - _STDERR_TAIL_CHARS))
            stderr_tail = stderr.read().decode("utf-8", "replace")
        return SandboxResult(process.returncode, timed_out, stderr_tail)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _kill_group(pid: int) -> None:
    """SIGKILL every process left in the sandbox's process group (it may already be gone)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class CodeGrader:
    """Grades HumanEval completions by running the problem's tests in `run_sandboxed`.

    A grade takes about 0.1 s for an ordinary program (a fresh interpreter) and at most
    `limits.wall_s` seconds. Each call has its own process and directory, so threads may
    grade in parallel.
    """

    def __init__(self, limits: SandboxLimits = SandboxLimits()):
        self.limits = limits

    def grade(self, problem: dict, completion: str) -> bool:
        """True only if the program and its tests exit with code 0 in time."""
        return self.run(problem, completion).passed

    def run(self, problem: dict, completion: str) -> SandboxResult:
        """The full sandbox result (exit code, timeout, stderr tail) of the problem's tests."""
        return run_sandboxed(build_test_program(problem, completion), self.limits)

    def extract(self, problem: dict, completion: str) -> str | None:
        """The solution program that `grade` runs (without the tests), or None for an empty completion."""
        if not completion.strip():
            return None
        return build_program(problem, completion)
