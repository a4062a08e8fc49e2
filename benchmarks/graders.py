"""Graders: decide whether a model's answer to a benchmark problem is right.

Each grader has the same two methods, both taking the problem dict a task yields and the
model's completion (the text it generated):

* ``grade(problem, completion) -> bool``: is the answer right?
* ``extract(problem, completion) -> str | None``: the final answer that was graded (the
  boxed expression, the choice letter, or the program that was run), for reports.

``MathGrader`` (MATH500, AIME, GSM8K) compares with math-verify; ``ChoiceGrader`` (GPQA)
compares a letter; ``CodeGrader`` (HumanEval) runs the program and its tests in an isolated
process (`benchmarks/sandbox.py`). All three are safe to call from several threads at once.
"""

from __future__ import annotations

import json
import logging
import re
import select
import subprocess
import sys
import threading
from pathlib import Path

from . import verdicts
from .sandbox import SandboxLimits, SandboxResult, isolation, run_sandboxed

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

_FINAL_PHRASE = re.compile(r"(?i)(?:the\s+(?:final\s+)?answer\s+is|final\s+answer\s*:|answer\s*:|####)")


def final_answer(completion: str) -> tuple[str | None, str]:
    r"""The final answer a completion states, and how it was found: ``(text, kind)``.

    `kind` is ``"boxed"`` (the last complete ``\boxed{}``), ``"phrase"`` (the rest of the line after
    the last "the answer is", "final answer:", "Answer:" or "####", less a closing period and bold
    marks) or ``"none"``: unboxed text without such a phrase is not an answer, so a completion cut
    off by the token limit mid-calculation, or a hedge ("it is 20 or 18"), gets no credit.
    """
    boxed = last_boxed(completion)
    if boxed is not None:
        return boxed, "boxed"
    phrases = list(_FINAL_PHRASE.finditer(completion))
    if phrases:
        rest = completion[phrases[-1].end():].split("\n", 1)[0]
        rest = re.sub(r"[\s.*]+$", "", re.sub(r"^[\s*:]+", "", rest))
        if rest:
            return rest, "phrase"
    return None, "none"


def _answer_text(answer: str, kind: str) -> str:
    """What math-verify parses for a final answer."""
    return "\\boxed{" + answer + "}" if kind == "boxed" else answer


def _gold_text(gold: str) -> str:
    r"""A gold answer in the form math-verify parses: ``42`` and ``\frac{1}{2}`` become ``$...$``."""
    gold = str(gold).strip()
    if "\\boxed" in gold or gold.startswith("$"):
        return gold
    return f"${gold}$"


# math-verify's own limits (parsing and verifying, 5 s each by default) are CPU-time budgets measured in wall time:
# on a loaded machine they ran out on an easy equivalence ((3, pi/2) = \left( 3, \frac{\pi}{2} \right), graded
# wrong on a 2-core machine running two vLLM workers beside the tests), so a verdict depended on the load.
MATH_VERIFY_TIMEOUT_S = 30


def verify_math(gold: str, completion: str) -> bool:
    """math-verify's verdict on the completion's final answer (`final_answer`) against `gold`.

    Must run on the main thread (math-verify's timeouts use ``signal.alarm``); `MathGrader` sees to that.
    """
    from math_verify import parse, verify

    answer, kind = final_answer(completion)
    if answer is None:
        return False
    gold_parsed = parse(_gold_text(gold), parsing_timeout=MATH_VERIFY_TIMEOUT_S)
    answer_parsed = parse(_answer_text(answer, kind), parsing_timeout=MATH_VERIFY_TIMEOUT_S)
    if not gold_parsed or not answer_parsed:
        return False
    return bool(verify(gold_parsed, answer_parsed, timeout_seconds=MATH_VERIFY_TIMEOUT_S))


READY = "ready"  # the worker's first line: imports done, requests may be timed


class _MathWorker:
    """A long-lived ``python -I`` child process that runs math-verify on its main thread.

    Used when grading happens off the main thread, where math-verify's ``signal.alarm``
    timeouts cannot work. Requests go one at a time (a lock) as JSON lines; a request that
    outlives `limit_s` seconds kills the child, which is restarted on the next request. The limit
    covers the request only: a new child first imports math-verify and says it is ready (within
    `STARTUP_S`), so a slow start on a busy machine never counts against an answer.
    """

    STARTUP_S = 600.0

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
            ready, _, _ = select.select([self._process.stdout], [], [], self.STARTUP_S)
            if not ready or json.loads(self._process.stdout.readline() or "null") != READY:
                self._stop()
                raise RuntimeError(f"the math-verify worker did not start within {self.STARTUP_S:.0f} s")
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
    functions = {"verify_math": verify_math}
    verify_math("1", r"\boxed{1}")  # imports math-verify and its parsers before the first timed request
    replies.write(json.dumps(READY) + "\n")
    replies.flush()
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

    The graded answer is the completion's stated final answer (`final_answer`: the last ``\boxed{}``,
    else an explicit final-answer phrase); without one there is no answer. Equivalent forms count
    (``0.5`` = ``\frac{1}{2}``, ``10\%`` = ``10``, ``(3, \pi/2)`` = ``\left( 3, \frac{\pi}{2} \right)``).

    On the main thread math-verify runs in-process with `MATH_VERIFY_TIMEOUT_S` limits. Off the main
    thread it runs in a shared worker process (`_MathWorker`) with a wall-clock limit of
    `worker_limit_s` seconds; an answer that hits a limit counts as wrong.
    """

    def __init__(self, worker_limit_s: float = 30.0):
        self._worker = _MathWorker(worker_limit_s)

    def grade(self, problem: dict, completion: str) -> bool:
        """True if the completion's final answer equals ``problem["answer"]`` mathematically."""
        if final_answer(completion)[0] is None:
            return False
        if _on_main_thread():
            return verify_math(problem["answer"], completion)
        return bool(self._worker.call("verify_math", str(problem["answer"]), completion))

    def extract(self, problem: dict, completion: str) -> str | None:
        """The final answer that `grade` compares, or None."""
        return final_answer(completion)[0]

    def details(self, problem: dict, completion: str) -> dict:
        """How the answer was found, for the results row: ``{"extraction": "boxed" | "phrase" | "none"}``."""
        return {"extraction": final_answer(completion)[1]}


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


# ---------------------------------------------------------------------------------------
# Multiple choice: GPQA
# ---------------------------------------------------------------------------------------

_LETTER = re.compile(r"(?<![A-Za-z\\])([A-Da-d])(?![A-Za-z])")
_LATEX_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}")
_STATED_ANSWER = re.compile(r"(?i)answer(?:\s+is)?\s*[:：]?\s*")
_CHOICE = re.compile(r"[*(\[\s]*([A-Da-d])(?![A-Za-z0-9])")
_ANOTHER_CHOICE = re.compile(r"[)\]*\s]*(?:,|;|/|&|\band\b|\bor\b)\s*[*(\[\s]*([A-Da-d])(?![A-Za-z0-9])", re.IGNORECASE)


class ChoiceGrader:
    r"""Grades GPQA answers: the chosen letter equals ``problem["answer"]``.

    The choice is the last ``\boxed{}`` (its one letter, or the text of a choice when the problem
    lists its ``choices``), else the last explicit "the answer is (c)" / "Answer: C", in any case.
    A final answer naming more than one distinct letter (``\boxed{A, B}``, "Answer: C and D") is a
    hedge and counts as no answer.
    """

    def grade(self, problem: dict, completion: str) -> bool:
        """True if the chosen letter is the gold letter."""
        return self.extract(problem, completion) == problem["answer"]

    def extract(self, problem: dict, completion: str) -> str | None:
        """The chosen letter A-D, or None if the completion names none (or several)."""
        boxed = last_boxed(completion)
        if boxed is not None:
            text = _LATEX_WRAPPER.sub(r"\1", boxed)
            letters = {letter.upper() for letter in _LETTER.findall(text)}
            if len(letters) == 1 and len(text.strip(" ()[].:*")) == 1:
                return letters.pop()
            by_text = self._letter_of_choice(problem, boxed)
            if by_text is not None or len(letters) != 1:
                return by_text
            return letters.pop()
        stated = list(_STATED_ANSWER.finditer(completion))
        for phrase in reversed(stated):
            first = _CHOICE.match(completion, phrase.end())
            if first is None:
                continue
            if _ANOTHER_CHOICE.match(completion, first.end()):
                return None
            return first.group(1).upper()
        return None

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


class CodeGrader:
    """Grades HumanEval completions in `benchmarks.sandbox.run_sandboxed`, the verdict taken outside the program.

    Where the problem's tests parse into test calls (`benchmarks.verdicts`: 156 of the 164), the sandboxed program
    only makes the calls and prints their values as plain data, and the values are compared with the tests'
    literals here; elsewhere the program runs the tests itself and passes by its success marker and a clean exit.
    A grade takes about 0.1 s for an ordinary program (a fresh interpreter) and at most `limits.wall_s` seconds.
    Each call has its own process and directory, so threads may grade in parallel. `isolation` is the
    sandbox's isolation level on this machine.
    """

    def __init__(self, limits: SandboxLimits = SandboxLimits()):
        self.limits = limits

    @property
    def isolation(self) -> str:
        return isolation(self.limits)

    def grade(self, problem: dict, completion: str) -> bool:
        """True only if every test passes: each call's value, judged here (or, for the problems whose tests do not
        parse, the program's own run of its tests to the end, its success marker and a clean exit in time)."""
        calls = verdicts.parse_check(problem["test"])
        if calls is None:
            return self.run(problem, completion).passed
        result = run_sandboxed(verdicts.driver_program(build_program(problem, completion), problem["entry_point"], calls),
                               self.limits)
        return result.passed and verdicts.passes(calls, verdicts.results_from(result.output))

    def run(self, problem: dict, completion: str) -> SandboxResult:
        """The sandbox result (exit code, timeout, stderr tail) of the problem's own test program."""
        return run_sandboxed(build_test_program(problem, completion), self.limits)

    def details(self, problem: dict, completion: str) -> dict:
        """The sandbox's isolation level and where the verdict was taken, for the results row."""
        return {"isolation": self.isolation,
                "verdict": "in-process" if verdicts.parse_check(problem["test"]) is None else "outside"}

    def extract(self, problem: dict, completion: str) -> str | None:
        """The solution program that `grade` runs (without the tests), or None for an empty completion."""
        if not completion.strip():
            return None
        return build_program(problem, completion)
