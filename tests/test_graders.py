"""Graders: math-verify equivalences (also off the main thread), GPQA letters, the HumanEval sandbox."""

import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks import graders
from benchmarks.graders import ChoiceGrader, CodeGrader, MathGrader, build_program, last_boxed
from benchmarks.sandbox import SandboxLimits, isolation, run_sandboxed
from benchmarks.tasks import get_task

# Limits that a passing program never meets, however busy the machine (a pass must not depend on its speed), and
# tight ones for the programs that must be stopped by them.
FAST = SandboxLimits(wall_s=120.0, cpu_s=60, max_processes=4)
TIGHT = replace(FAST, wall_s=3.0, cpu_s=3)


def in_thread(function, *args):
    """`function(*args)` run in a fresh thread (not the main one); its result."""
    result = []
    thread = threading.Thread(target=lambda: result.append(function(*args)))
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    return result[0]


# --- boxed answers --------------------------------------------------------------------

def test_last_boxed_keeps_nested_braces_and_takes_the_last_complete_box():
    assert last_boxed(r"first \boxed{1}, then \boxed{\frac{a}{b^{2}}}.") == r"\frac{a}{b^{2}}"
    assert last_boxed(r"\boxed{7} and a truncated \boxed{\frac{1}{") == "7"
    assert last_boxed(r"so $\boxed 5$") == "5"
    assert last_boxed("no box here") is None


# --- math -----------------------------------------------------------------------------

MATH_CASES = [
    (r"\frac{1}{2}", r"So the answer is \boxed{0.5}.", True),
    (r"\left( 3, \frac{\pi}{2} \right)", r"Hence \boxed{(3, \pi/2)}", True),
    (r"10\%", r"\boxed{10}", True),
    ("10", r"\boxed{10\%}", True),
    (r"\frac{\sqrt{3}}{2}", r"\boxed{\dfrac{\sqrt3}{2}}", True),
    ("42", r"\boxed{41}", False),
    (r"\frac{1}{2}", r"\boxed{\frac{1}{2}} no, wait: \boxed{\frac{1}{3}}", False),
    ("42", "Adding them up, the answer is 42.", True),  # no box: an explicit final-answer phrase
    ("18", "#### 18", True),
    ("18", "Answer: **18**", True),
    ("42", "I do not know.", False),
    ("18", "First 9 * 2 = $", False),  # cut off by the token limit: no stated answer
    ("18", "It is 20 or 18", False),  # a hedge without a final answer
    ("18", "So far 18 apples and then", False),  # the question's number restated, unfinished
    ("18", "The answer is", False),
]


@pytest.mark.parametrize("gold, completion, correct", MATH_CASES)
def test_math_grader_accepts_equivalent_forms_and_rejects_wrong_answers(gold, completion, correct):
    assert MathGrader().grade({"answer": gold}, completion) is correct


def test_math_extract_is_the_last_box_or_a_final_answer_phrase_and_says_which():
    grader = MathGrader()
    assert grader.extract({}, r"\boxed{1} or rather \boxed{\left( 3, \frac{\pi}{2} \right)}") == \
        r"\left( 3, \frac{\pi}{2} \right)"
    assert grader.extract({}, "The answer is 42.") == "42"
    assert grader.extract({}, "the final answer is 3.5.") == "3.5"
    assert grader.extract({}, "no idea, maybe 42") is None
    assert grader.details({}, r"so \boxed{4}") == {"extraction": "boxed"}
    assert grader.details({}, "Answer: 4") == {"extraction": "phrase"}
    assert grader.details({}, "4") == {"extraction": "none"}


def test_math_verify_gets_limits_a_loaded_machine_does_not_exhaust(monkeypatch):
    """math-verify's 5 s defaults graded (3, pi/2) wrong on a loaded 2-core machine: the grader passes its own."""
    import math_verify

    seen = []
    parse, verify = math_verify.parse, math_verify.verify

    def spy_parse(text, **kwargs):
        seen.append(kwargs.get("parsing_timeout"))
        return parse(text, **kwargs)

    def spy_verify(gold, answer, **kwargs):
        seen.append(kwargs.get("timeout_seconds"))
        return verify(gold, answer, **kwargs)

    monkeypatch.setattr(math_verify, "parse", spy_parse)
    monkeypatch.setattr(math_verify, "verify", spy_verify)
    assert graders.verify_math(r"\left( 3, \frac{\pi}{2} \right)", r"Hence \boxed{(3, \pi/2)}")
    assert seen == [graders.MATH_VERIFY_TIMEOUT_S] * 3 and graders.MATH_VERIFY_TIMEOUT_S >= 30


def test_math_grading_works_off_the_main_thread():
    grader = MathGrader()
    verdicts = in_thread(lambda: [grader.grade({"answer": g}, c) for g, c, _ in MATH_CASES])
    assert verdicts == [correct for _, _, correct in MATH_CASES]
    assert in_thread(grader.extract, {}, "The answer is 42.") == "42"


def test_a_pathological_answer_off_the_main_thread_hits_the_wall_clock_limit():
    """The limit covers the request, not the worker's start (which waits for its "ready" line), so the test holds on
    a busy machine: the easy answers need milliseconds of their 5 s, the pathological one never finishes."""
    grader = MathGrader(worker_limit_s=5.0)
    assert in_thread(grader.grade, {"answer": "1"}, r"\boxed{1}")  # worker started
    start = time.monotonic()
    assert in_thread(grader.grade, {"answer": "1"}, r"\boxed{9^{9^{9^{9}}}}") is False
    assert 5.0 <= time.monotonic() - start < 60  # killed at the limit, not before
    assert in_thread(grader.grade, {"answer": "1"}, r"\boxed{1}")  # a fresh worker took over


# --- multiple choice ------------------------------------------------------------------

@pytest.mark.parametrize("completion, letter", [
    (r"Thus \boxed{C}", "C"),
    (r"\boxed{\text{(C)}}", "C"),
    (r"\boxed{B} hmm, no: \boxed{C) 10^-4 eV}", "C"),
    (r"\boxed{10^-4 eV}", "C"),  # the text of a choice
    ("The answer is (C).", "C"),
    ("Answer: **C**", "C"),
    ("the answer is c", "C"),
    (r"\boxed{c}", "C"),
    (r"\boxed{\textbf{C}}", "C"),
    ("Answer: C, because a photon ...", "C"),
    ("I cannot decide.", None),
    ("Answer: C and D", None),  # hedges name more than one letter: no answer
    ("the answer is (c) or (d)", None),
    (r"\boxed{A, B, C, D}", None),
    (r"\boxed{C/D}", None),
])
def test_choice_grader_reads_the_letter(completion, letter):
    problem = {"answer": "C", "choices": ["1 eV", "10^-9 eV", "10^-4 eV", "10^-8 eV"]}
    grader = ChoiceGrader()
    assert grader.extract(problem, completion) == letter
    assert grader.grade(problem, completion) is (letter == "C")


# --- code -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def humaneval():
    return {problem["id"]: problem for problem in get_task("humaneval").problems()}


def test_every_canonical_solution_passes_in_the_sandbox(humaneval):
    grader = CodeGrader(FAST)  # threads grade in parallel, as CodeGrader's docstring allows
    with ThreadPoolExecutor(4) as pool:
        passed = pool.map(lambda problem: grader.grade(problem, problem["canonical_solution"]), humaneval.values())
        failed = [task_id for task_id, ok in zip(humaneval, passed) if not ok]
    assert failed == []


def test_wrong_solutions_fail(humaneval):
    grader = CodeGrader(FAST)
    assert not grader.grade(humaneval["HumanEval/0"], "    return True\n")
    assert not grader.grade(humaneval["HumanEval/0"], "    return (\n")  # syntax error


FENCED_ANSWER = """Here is my solution:

```python
def has_close_elements(numbers, threshold):
    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])
```

It compares every pair."""


def test_chat_answers_and_base_model_chatter_are_graded(humaneval):
    problem, grader = humaneval["HumanEval/0"], CodeGrader(FAST)
    assert grader.grade(problem, FENCED_ANSWER)
    program = grader.extract(problem, FENCED_ANSWER)
    assert program.startswith("from typing import List") and "It compares" not in program
    chatter = problem["canonical_solution"] + "\n\nprint(has_close_elements([1.0], 0.5))\nThis works because...\n"
    assert grader.grade(problem, chatter)
    assert "This works" not in build_program(problem, chatter)
    assert grader.extract(problem, "  \n") is None


def test_an_answer_cut_off_after_the_solution_keeps_the_solution(humaneval):
    """At the token limit models are often inside a test function of their own: that part goes."""
    problem, grader = humaneval["HumanEval/0"], CodeGrader(FAST)
    cut_test = "\n\n# Check the function\ndef check_solution():\n    assert has_close_elements([1.0, 2.0], 0.5) =="
    assert grader.grade(problem, problem["canonical_solution"] + cut_test)
    assert "check_solution" not in build_program(problem, problem["canonical_solution"] + cut_test)
    assert grader.grade(problem, FENCED_ANSWER.split("```\n\nIt")[0] + cut_test)  # fence never closed
    cut_body = problem["canonical_solution"][:-25]
    assert not grader.grade(problem, cut_body)
    assert build_program(problem, cut_body) == problem["prompt"] + cut_body.rstrip() + "\n"  # whole, to fail


def test_graders_run_in_parallel_threads(humaneval):
    problem, grader = humaneval["HumanEval/0"], CodeGrader(FAST)
    verdicts = []
    threads = [threading.Thread(target=lambda: verdicts.append(grader.grade(problem, problem["canonical_solution"])))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert verdicts == [True] * 4


def sandbox_processes(limits: SandboxLimits, settle_s: float = 30.0) -> list[str]:
    """Processes (and their forks) started by `run_sandboxed` with these limits, by their argv, still alive after up
    to `settle_s` seconds: the kernel ends a killed sandbox's processes asynchronously, and on a busy machine that
    takes a moment; a process left running stays in the list."""
    marker = f"AS={limits.memory_bytes}".encode()
    deadline = time.monotonic() + settle_s
    while True:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                alive = Path("/proc", pid, "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
                if alive and marker in Path("/proc", pid, "cmdline").read_bytes().split(b"\0"):
                    found.append(pid)
            except (OSError, IndexError):  # gone meanwhile
                pass
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.mark.parametrize("name, program", [
    ("infinite loop", "while True:\n    pass\n"),
    ("fork bomb", "import os\nwhile True:\n    os.fork()\n"),
    ("fork bomb through subprocess", "import subprocess\nwhile True:\n    subprocess.Popen(['sleep', '60'])\n"),
    ("100 GB allocation", "block = bytearray(100 * 1024**3)\n"),
    ("shell command", "import os\nassert os.system('echo escaped > /tmp/ecmh-sandbox-escape') == 0\n"),
    ("huge file", "open('big.bin', 'wb').write(b'x' * (64 * 1024**2))\n"),
])
def test_hostile_programs_fail_within_seconds_without_harm(name, program):
    limits = replace(TIGHT, memory_bytes=TIGHT.memory_bytes + 4096 + os.getpid())  # marks this test's processes
    start = time.monotonic()
    result = run_sandboxed(program, limits)
    assert not result.passed, name
    assert time.monotonic() - start < limits.wall_s + 60, name  # stopped by a limit, not left to run
    assert sandbox_processes(limits) == [], name  # nothing left running
    assert not Path("/tmp/ecmh-sandbox-escape").exists()


def test_a_program_still_running_at_the_wall_clock_limit_is_killed():
    limits = replace(TIGHT, wall_s=5.0, memory_bytes=TIGHT.memory_bytes + 8192 + os.getpid())
    results = []
    grading = threading.Thread(target=lambda: results.append(run_sandboxed("import time\ntime.sleep(600)\n", limits)))
    grading.start()
    grading.join(timeout=120)
    assert results[0].timed_out and results[0].returncode == -9 and not results[0].passed  # the wall clock, not CPU
    assert sandbox_processes(limits) == []


SENTINEL = Path("/tmp/ecmh-sandbox-sentinel")
needs_namespaces = pytest.mark.skipif(isolation() == "rlimits", reason="no namespace isolation on this machine")
TRICKS = [  # a pass needs the run's marker and a clean exit, on every isolation level
    ("exit 0 before the tests", "import os\nos._exit(0)\nassert False\n"),
    ("sys.exit(0) before the tests", "import sys\nsys.exit(0)\nassert False\n"),
    ("atexit exits 0 after a failed assert", "import atexit, os\natexit.register(os._exit, 0)\nassert False\n"),
    ("prints a made-up marker", "print('0123456789abcdef0123456789abcdef')\nimport os\nos._exit(0)\n"),
]
ESCAPES = [  # each succeeds (and so passes) only where the program is not isolated
    ("deletes a root-owned file outside its directory", f"import os\nos.remove({str(SENTINEL)!r})\n"),
    ("writes to the shared temporary directory", "open('/tmp/ecmh-sandbox-escape', 'w').write('x')\n"),
    ("reads the shadow password file", "open('/etc/shadow').read()\n"),
    ("connects to a local socket", "import socket\nsocket.create_connection(('127.0.0.1', PORT), timeout=1)\n"),
    ("forks through libc and leaves its session",
     "import ctypes, time\nlibc = ctypes.CDLL(None)\nfor _ in range(3):\n    if libc.fork() == 0:\n"
     "        libc.setsid()\n        time.sleep(60)\nassert False\n"),
]


@pytest.mark.parametrize("name, program", TRICKS + [pytest.param(*escape, marks=needs_namespaces) for escape in ESCAPES])
def test_tricks_and_escapes_fail_leave_nothing_and_touch_nothing_outside(name, program):
    limits = replace(FAST, memory_bytes=FAST.memory_bytes + 16384 + os.getpid())
    SENTINEL.write_text("keep me")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.1)
    try:
        result = run_sandboxed(program.replace("PORT", str(listener.getsockname()[1])), limits)
        with pytest.raises(socket.timeout):
            listener.accept()  # nothing connected
    finally:
        listener.close()
    assert not result.passed, name
    assert sandbox_processes(limits) == [], name
    assert SENTINEL.read_text() == "keep me"
    assert not Path("/tmp/ecmh-sandbox-escape").exists()


@needs_namespaces
def test_the_program_runs_unprivileged_without_network_on_a_read_only_view():
    program = ("import os, socket\n"
               "assert os.getuid() != 0\n"
               "assert not os.access('/usr', os.W_OK) and os.access('.', os.W_OK)\n"
               "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=1)\nexcept OSError:\n    pass\n"
               "else:\n    raise AssertionError('network reachable')\n")
    result = run_sandboxed(program, FAST)
    assert result.passed, result.stderr
    assert result.isolation in ("namespaces", "user-namespaces")


def test_the_fallback_without_namespaces_still_needs_the_marker_and_warns(caplog, monkeypatch):
    from benchmarks import sandbox

    for program, passes in [("assert 1 + 1 == 2\n", True), ("import os\nos._exit(0)\n", False),
                            ("import os\nos.fork()\n", False)]:
        result = sandbox._execute("rlimits", program, FAST)
        assert result.passed is passes and result.isolation == "rlimits", program
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)  # no unshare on this "machine"
    fallback = replace(FAST, wall_s=FAST.wall_s + 0.5)  # not the cached level of FAST
    assert sandbox.isolation(fallback) == "rlimits"
    assert "no namespace isolation" in caplog.text and "rlimits" in caplog.text


def test_results_rows_record_the_isolation_level():
    task = get_task("humaneval")
    problem = next(task.problems())
    verdict = task.verdict(problem, problem["canonical_solution"])
    assert verdict["correct"] and verdict["isolation"] == isolation()


def test_the_program_sees_no_inherited_secrets(monkeypatch):
    monkeypatch.setenv("ECMH_TEST_SECRET", "hunter2")
    program = ("import os\n"
               "assert 'ECMH_TEST_SECRET' not in os.environ\n"
               "assert set(os.environ) <= {'PATH', 'LANG', 'LC_CTYPE'}, sorted(os.environ)\n")
    assert run_sandboxed(program, FAST).passed


def test_files_written_land_in_a_temporary_directory_that_is_removed():
    program = ("import os, sys\n"
               "open('note.txt', 'w').write('hello')\n"
               "sys.stderr.write(os.path.abspath('note.txt'))\n")
    result = run_sandboxed(program, FAST)
    assert result.passed
    written = Path(result.stderr.strip())
    assert written.name == "note.txt" and written.parent != Path.cwd()
    assert not written.parent.exists()


# --- verdicts taken outside the program (benchmarks/verdicts.py) --------------------------------------------

FRAME_WALKER = """    import os, sys
    frame = sys._getframe()
    while frame is not None:
        if "marker" in frame.f_locals:
            print("\\n" + frame.f_locals["marker"])
            sys.stdout.flush()
            os._exit(0)
        frame = frame.f_back
    return False
"""
ALWAYS_EQUAL = "    class Anything:\n        def __eq__(self, other):\n            return True\n    return Anything()\n"


def test_156_of_the_164_problems_parse_into_test_calls(humaneval):
    from benchmarks import verdicts

    unparsed = sorted(pid for pid, problem in humaneval.items() if verdicts.parse_check(problem["test"]) is None)
    assert len(humaneval) - len(unparsed) == 156, unparsed
    assert CodeGrader(FAST).details(humaneval["HumanEval/0"], "")["verdict"] == "outside"
    assert CodeGrader(FAST).details(humaneval[unparsed[0]], "")["verdict"] == "in-process"


@pytest.mark.parametrize("name, body", [("walks the frames to the success marker", FRAME_WALKER),
                                        ("returns an object equal to everything", ALWAYS_EQUAL),
                                        ("returns a string where a bool is expected", "    return 'True'\n"),
                                        ("returns a bool subclass", "    class B(int):\n        pass\n    return B(1)\n")])
def test_tricks_against_the_verdict_fail(humaneval, name, body):
    problem = humaneval["HumanEval/0"]
    assert CodeGrader(FAST).grade(problem, problem["canonical_solution"])
    assert not CodeGrader(FAST).grade(problem, body), name


def test_a_wrong_type_fails_where_a_list_is_expected(humaneval):
    problem = humaneval["HumanEval/25"]  # factorize: a list of ints
    assert CodeGrader(FAST).grade(problem, problem["canonical_solution"])
    assert not CodeGrader(FAST).grade(problem, "    return ' '.join(map(str, [2, 2, 2]))\n")  # "2 2 2", not [2, 2, 2]


def test_values_are_compared_by_type_as_the_tests_intend():
    from benchmarks import verdicts

    calls = verdicts.parse_check("def check(candidate):\n    assert candidate(1) == (1, 2)\n"
                                 "    assert abs(candidate(2) - 2.0 / 3.0) < 1e-6\n    assert candidate(3) is True\n")
    assert [c.kind for c in calls] == ["equal", "close", "is"] and calls[1].expected == (2 / 3, 1e-6)

    def run(*values):
        return verdicts.passes(calls, [{"value": v} for v in values])

    assert run({"tuple": [1, 2]}, {"float": repr(2 / 3)}, True)
    assert not run([1, 2], {"float": repr(2 / 3)}, True)  # a list is not the tuple the test wants
    assert not run({"tuple": [1, 2]}, {"float": "0.7"}, True)
    assert not run({"tuple": [1, 2]}, {"float": repr(2 / 3)}, 1)  # `is True` wants the bool
    assert not verdicts.passes(calls, [{"error": "ValueError"}] * 3) and not verdicts.passes(calls, None)
