"""Built-in tools for agents, and the workspace its file tools are confined to.

Every tool is a LangChain tool, so an agent calls it like any other. A refused request
raises `ToolRefusedError`; the tool loop shows its message to the model, which may try
again. Nothing here runs code or commands unless the shell is enabled explicitly, and
then only in a sandbox where the graphswarm process is out of sight (`shell_sandbox`).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import math
import operator
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from langchain_core.tools import BaseTool, StructuredTool

from graphswarm.errors import ConfigError, ToolRefusedError

if TYPE_CHECKING:
    from graphswarm.memory import SharedMemory

__all__ = [
    "BUILTIN_TOOLS",
    "UNSANDBOXED",
    "AllowShell",
    "REDACTED",
    "Workspace",
    "builtin_tools",
    "calculate",
    "check_tool_names",
    "redact_secrets",
    "shell_sandbox",
]

UNSANDBOXED = "unsandboxed"
AllowShell = bool | Literal["unsandboxed"]
"""Whether agents may get the `shell` tool: False, True (in a sandbox, refused when the
machine has none) or "unsandboxed" (the user's explicit choice to run it without one)."""
REDACTED = "[redacted]"

BUILTIN_TOOLS: tuple[str, ...] = (
    "memory_search",
    "calculator",
    "read_file",
    "write_file",
    "list_files",
    "ask_human",
    "shell",
)
MAX_READ_CHARS = 20_000
MAX_LISTED = 1_000
MAX_SHELL_OUTPUT = 4_000
SHELL_TIMEOUT_S = 30
MAX_EXPRESSION = 500
MAX_EXPONENT = 1_000
MAX_INT_BITS = 10_000
"""Bigger integers are refused: a few powers more and they would fill the memory."""
MAX_DIGITS = MAX_INT_BITS * 3 // 10
NO_MEMORY = "The run has no shared memory."
NOTHING_FOUND = "Nothing found."
DESCRIPTIONS: dict[str, str] = {
    "memory_search": "Search the team's shared memory (notes and results the agents "
    "posted) for the 5 notes closest in meaning to `query`.",
    "calculator": "Compute an arithmetic expression exactly, e.g. '(17 + 25) * 3' or "
    "'sqrt(2) * pi'. Knows + - * / // % **, parentheses, sqrt, log, log10, exp, sin, "
    "cos, tan, floor, ceil, abs, round, min, max, pi and e.",
    "read_file": "Read a text file of the workspace; `path` is relative to the workspace, e.g. notes/plan.md.",
    "write_file": "Write `content` to a file of the workspace, replacing what was there "
    "and making its directories; `path` is relative to the workspace.",
    "list_files": "List the files below `path` (default: the whole workspace) as paths "
    "relative to the workspace; directories end with /.",
    "ask_human": "Ask the person running the swarm a question and wait for the answer: "
    "for what only they know or may decide.",
    "shell": "Run a shell command in the workspace directory and get its exit code and "
    f"output. Commands are stopped after {SHELL_TIMEOUT_S} seconds; API keys are not in "
    "their environment.",
}
"""What each tool is for, as the model reads it."""
NO_SANDBOX = (
    "the shell tool needs a sandbox that hides the graphswarm process (and its API keys): "
    "install bubblewrap (bwrap), or util-linux's unshare and setpriv with user namespaces "
    f"allowed; or accept the risk with allow_shell={UNSANDBOXED}"
)
SECRET_MIN_CHARS = 8
"""Shorter values are not redacted: they would match ordinary text."""


class Workspace:
    """A directory the file tools cannot leave.

    The directory is made (parents too) and probed for writing here, in `__init__`, so
    an unusable workspace is a `ConfigError` when a run is built, not a failure in the
    middle of a task. Paths are checked after following symlinks, so neither `..` nor a
    link (to a file or a directory) leads out of it.
    """

    def __init__(self, root: str | Path) -> None:
        path = Path(root).expanduser()
        try:
            path.mkdir(parents=True, exist_ok=True)
            # mkdir succeeds on an existing read-only directory: only a file proves it.
            with tempfile.NamedTemporaryFile(dir=path, prefix=".graphswarm-probe-"):
                pass
            self._root = path.resolve(strict=True)
        except OSError as exc:
            raise ConfigError(f"workspace {root} is not writable: {exc.strerror or exc}") from None

    def __repr__(self) -> str:
        return f"Workspace({str(self._root)!r})"

    @property
    def root(self) -> Path:
        """The workspace directory, as a resolved real path."""
        return self._root

    def resolve(self, path: str) -> Path:
        """The real path of `path`, relative to the workspace; a way out is refused."""
        if not isinstance(path, str) or not path.strip():
            raise ToolRefusedError("the path is empty: give a path relative to the workspace, e.g. notes/plan.md")
        if os.path.isabs(path) or path.startswith("~"):
            raise ToolRefusedError(f"{path!r} is not relative to the workspace: give a path like notes/plan.md")
        try:
            # resolve() follows symlinks: a link pointing out lands outside, and is refused.
            real = (self._root / path).resolve()
        except (OSError, ValueError, RuntimeError) as exc:  # a null byte, a link loop
            raise ToolRefusedError(f"{path!r} is not a usable path: {exc}") from None
        if not real.is_relative_to(self._root):
            raise ToolRefusedError(f"{path!r} leads outside the workspace: use a path inside it")
        return real

    def read(self, path: str, max_chars: int = MAX_READ_CHARS) -> str:
        """The text of a file, cut after `max_chars` characters with a note saying so."""
        real = self.resolve(path)
        if not real.is_file():
            raise ToolRefusedError(f"no file {path!r} in the workspace (list_files shows what is there)")
        try:
            with _open(real, os.O_RDONLY, "r") as file:
                text = file.read(max_chars + 1)  # never more: the file may be huge
                size = os.fstat(file.fileno()).st_size
        except OSError as exc:
            raise ToolRefusedError(f"cannot read {path!r}: {exc.strerror or exc}") from None
        if len(text) > max_chars:
            note = f"[... cut at {max_chars} characters; the file has {size} bytes]"
            return f"{text[:max_chars]}\n{note}"
        return text

    def write(self, path: str, content: str) -> str:
        """Write a text file (replacing it) and its directories; say what was written."""
        real = self.resolve(path)
        if real.is_dir():
            raise ToolRefusedError(f"{path!r} is a directory: give a file name")
        try:
            real.parent.mkdir(parents=True, exist_ok=True)
            with _open(real, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "w") as file:
                file.write(content)
        except (OSError, UnicodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise ToolRefusedError(f"cannot write {path!r}: {reason}") from None
        return f"wrote {len(content)} characters to {real.relative_to(self._root).as_posix()}"

    def list(self, path: str = ".") -> str:
        """Everything below `path`, a line each, relative to the root; dirs end in /."""
        base = self.resolve(path)
        if not base.is_dir():
            raise ToolRefusedError(f"no directory {path!r} in the workspace")
        # rglob does not descend into symlinked directories, so the listing stays inside.
        items = sorted(base.rglob("*"))
        lines = [item.relative_to(self._root).as_posix() + ("/" if item.is_dir() else "") for item in items]
        if len(lines) > MAX_LISTED:
            lines[MAX_LISTED:] = [f"[... {len(lines) - MAX_LISTED} more not shown]"]
        return "\n".join(lines) or f"(nothing in {path})"


def _open(real: Path, flags: int, mode: str) -> IO[str]:
    # O_NOFOLLOW: a symlink swapped in after `resolve` checked the path is refused.
    fd = os.open(real, flags | getattr(os, "O_NOFOLLOW", 0), 0o644)
    errors = "replace" if mode == "r" else "strict"
    return os.fdopen(fd, mode, encoding="utf-8", errors=errors, newline="")


# -- calculator: arithmetic by walking the syntax tree, never eval ------------------

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "log": math.log, "log10": math.log10, "exp": math.exp, "sin": math.sin,
    "cos": math.cos, "tan": math.tan, "floor": math.floor, "ceil": math.ceil, "abs": abs,
    "round": round, "min": min, "max": max,
}  # fmt: skip
_CONSTANTS = {"pi": math.pi, "e": math.e}
_ALLOWED = f"numbers, + - * / // % **, parentheses, {', '.join(_FUNCTIONS)}, pi, e"


def calculate(expression: str) -> str:
    """The value of an arithmetic expression, as text ("42", not "42.0").

    The expression is parsed and its syntax tree walked node by node, so only numbers,
    operators and the whitelisted math functions ever run; powers and integers are
    capped, so no expression can stall the machine.
    """
    text = expression.strip()
    if not text:
        raise ToolRefusedError(f"the expression is empty: give arithmetic such as (17 + 25) * 3 ({_ALLOWED})")
    if len(text) > MAX_EXPRESSION:
        raise ToolRefusedError(f"the expression is longer than {MAX_EXPRESSION} characters: split it up")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ToolRefusedError(f"{text!r} is not an arithmetic expression (allowed: {_ALLOWED})") from None
    try:
        value = _evaluate(tree.body)
    except ZeroDivisionError:
        raise ToolRefusedError("division by zero") from None
    except OverflowError:
        raise ToolRefusedError(f"the result of {text!r} is too large") from None
    except (ArithmeticError, ValueError, TypeError, RecursionError) as exc:
        raise ToolRefusedError(f"cannot compute {text!r}: {exc}") from None
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _evaluate(node: ast.AST) -> float:
    # True is an int to isinstance, yet neither it nor a string is arithmetic.
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _checked(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.Call) and not node.keywords and _function_name(node) in _FUNCTIONS:
        arguments = [_evaluate(arg) for arg in node.args]
        return _checked(_FUNCTIONS[_function_name(node)](*arguments))
    shown = ast.unparse(node)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    raise ToolRefusedError(f"{shown!r} is not arithmetic: only {_ALLOWED} are allowed")


def _function_name(node: ast.Call) -> str:
    return node.func.id if isinstance(node.func, ast.Name) else ""


def _check_power(base: float, exponent: float) -> None:
    if abs(exponent) > MAX_EXPONENT:
        raise ToolRefusedError(f"the exponent {exponent} is too large (at most {MAX_EXPONENT})")
    # Before computing: (10**900)**900 would take minutes and gigabytes to refuse after.
    bits = base.bit_length() * exponent if isinstance(base, int) else 0
    if isinstance(exponent, int) and bits > MAX_INT_BITS:
        raise ToolRefusedError(f"the result would have more than {MAX_DIGITS} digits")


def _checked(value: Any) -> float:
    if isinstance(value, complex):  # (-8) ** 0.5
        raise ToolRefusedError("the result is not a real number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolRefusedError("the result is too large for a floating-point number")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolRefusedError(f"the result has more than {MAX_DIGITS} digits")
    return value


# -- the tools ------------------------------------------------------------------------


def check_tool_names(names: Sequence[str], *, allow_shell: AllowShell) -> list[str]:
    """The names without repeats; unknown ones, a shell not enabled, and a sandboxed
    shell on a machine without a sandbox (`shell_sandbox`) are refused."""
    if isinstance(names, str):
        raise ConfigError(f"tools must be a list of names, not the string {names!r}")
    for name in names:
        if name not in BUILTIN_TOOLS:
            raise ConfigError(f"unknown tool {name!r} (built-in tools: {', '.join(BUILTIN_TOOLS)})")
    if "shell" in names and allow_shell is False:
        raise ConfigError("the shell tool runs commands on this machine: enable it explicitly with allow_shell=True")
    if "shell" in names and allow_shell not in (True, UNSANDBOXED):
        raise ConfigError(f"allow_shell is true, false or {UNSANDBOXED}, not {allow_shell!r}")
    if "shell" in names and allow_shell is True and shell_sandbox() is None:
        raise ConfigError(NO_SANDBOX)
    return list(dict.fromkeys(names))


def builtin_tools(
    names: Sequence[str],
    *,
    workspace: Workspace,
    memory: SharedMemory | None = None,
    agent: str = "",
    allow_shell: AllowShell = False,
) -> list[BaseTool]:
    """LangChain tools for `names`, bound to one run's workspace and memory, for `agent`.

    File tools are confined to `workspace`; the shell starts there and gets no API keys,
    and runs in a sandbox (`shell_sandbox`) in which the graphswarm process is out of
    sight, unless `allow_shell` is "unsandboxed". `ask_human` pauses the graph with a
    LangGraph interrupt, so it works inside a LangGraph node only. Blocking tools have no
    coroutine of their own: LangChain runs them in a thread when awaited.
    """

    def found(notes: list[Any]) -> str:
        lines = [f"- ({n['agent']}, {n['kind']}) {n['text']}" for n in notes]
        return "\n".join(lines) or NOTHING_FOUND

    def memory_search(query: str) -> str:
        return NO_MEMORY if memory is None else found(memory.query(query, k=5))

    async def amemory_search(query: str) -> str:
        return NO_MEMORY if memory is None else found(await memory.aquery(query, k=5))

    def calculator(expression: str) -> str:
        return calculate(expression)

    def read_file(path: str) -> str:
        return workspace.read(path)

    def write_file(path: str, content: str) -> str:
        return workspace.write(path, content)

    def list_files(path: str = ".") -> str:
        return workspace.list(path)

    def ask_human(question: str) -> str:
        from langgraph.config import get_config
        from langgraph.types import interrupt

        try:
            node = get_config().get("metadata", {}).get("langgraph_node") or "act"
            answer = interrupt(
                {
                    "stop_reason": "human",
                    "detail": question,
                    "agent": agent,
                    "node": node,
                    "question": question,
                }
            )
        except (RuntimeError, KeyError):  # no graph run around us to pause and resume
            raise ToolRefusedError("ask_human works only inside a LangGraph node") from None
        if isinstance(answer, dict):
            answer = answer.get("text") or answer.get("answer") or ""
        return str(answer)

    async def aask_human(question: str) -> str:
        # Not in a thread: interrupt() must run in the node's own context.
        return ask_human(question)

    def shell(command: str) -> str:
        sandbox = [] if allow_shell == UNSANDBOXED else shell_sandbox()
        if sandbox is None:  # a sandbox seen when the run was built has gone
            raise ToolRefusedError(NO_SANDBOX)
        return _run_shell(command, workspace.root, sandbox)

    functions: dict[str, tuple[Callable[..., str], Callable[..., Any] | None]] = {
        "memory_search": (memory_search, amemory_search),
        "calculator": (calculator, None),
        "read_file": (read_file, None),
        "write_file": (write_file, None),
        "list_files": (list_files, None),
        "ask_human": (ask_human, aask_human),
        "shell": (shell, None),
    }
    chosen = check_tool_names(names, allow_shell=allow_shell)
    return [
        StructuredTool.from_function(*functions[name], name=name, description=DESCRIPTIONS[name]) for name in chosen
    ]


def _run_shell(command: str, cwd: Path, sandbox: Sequence[str]) -> str:
    # A session of its own, so a timeout kills the whole process group: killing only the
    # shell would leave its children holding the pipes open, and the call would hang.
    with subprocess.Popen(
        [*sandbox, "/bin/sh", "-c", command],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
        env=_without_secrets(os.environ),
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=SHELL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            raise ToolRefusedError(f"the command ran longer than {SHELL_TIMEOUT_S}s and was stopped") from None
    parts = [f"exit code {process.returncode}"]
    for label, text in (("stdout", stdout.rstrip()), ("stderr", stderr.rstrip())):
        if text:
            parts.append(f"{label}:\n{_tail(text, MAX_SHELL_OUTPUT // 2)}")
    return "\n".join(parts)


def _without_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    # A command the model wrote must not read the swarm's API keys.
    return {k: v for k, v in environ.items() if not _SECRET_NAME.search(k)}


_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL|AUTH", re.IGNORECASE)
_REDACTED_NAME = re.compile(r"(^|_)(KEY|TOKEN|SECRET)$|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
"""Environment variables whose values `redact_secrets` hides: OPENAI_API_KEY,
GITHUB_TOKEN, AWS_SECRET_ACCESS_KEY, PGPASSWORD, ..."""


def redact_secrets(text: str, environ: Mapping[str, str] | None = None) -> str:
    """`text` with the value of every secret-looking environment variable (`*_KEY`,
    `*_TOKEN`, `*_SECRET`, `*PASSWORD*`, at least `SECRET_MIN_CHARS` long) replaced by
    `REDACTED`: every tool result passes through here before it is stored or shown."""
    environ = os.environ if environ is None else environ
    values = {v for k, v in environ.items() if len(v) >= SECRET_MIN_CHARS and _REDACTED_NAME.search(k)}
    for value in sorted(values, key=len, reverse=True):  # a key containing another goes first
        text = text.replace(value, REDACTED)
    return text


_SANDBOXES: tuple[tuple[str, ...], ...] = (
    # bubblewrap: the whole file system as it is, but a PID namespace of its own with its
    # own /proc, and (unprivileged, or with --cap-drop) no capabilities to undo it.
    ("bwrap", "--dev-bind", "/", "/", "--unshare-pid", "--proc", "/proc", "--die-with-parent", "--cap-drop", "ALL"),
    # util-linux: a PID namespace with its own /proc, then every capability dropped
    # (setpriv), so the command cannot unmount that /proc to see the real one.
    (
        "unshare",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "setpriv",
        "--no-new-privs",
        "--inh-caps=-all",
        "--bounding-set=-all",
    ),
)
_PROBE = 'test "$PPID" = 0 && ! test -e /proc/$PPID'
"""True inside a PID namespace: the shell's parent is outside it, out of sight."""


@functools.cache
def shell_sandbox() -> list[str] | None:
    """The command prefix that runs the shell where the graphswarm process cannot be
    seen (so not `/proc/$PPID/environ` either), or None when this machine has none.

    Tried in order, each once per process with a probe command: bubblewrap, then
    unshare + setpriv (as root directly, otherwise in a user namespace of its own).
    """
    for candidate in _SANDBOXES:
        prefix = list(candidate)
        if not all(shutil.which(tool) for tool in {prefix[0], *(["setpriv"] if "setpriv" in prefix else [])}):
            continue
        if prefix[0] == "unshare" and os.geteuid() != 0:
            prefix[1:1] = ["--user", "--map-root-user"]
        try:
            probe = subprocess.run(
                [*prefix, "/bin/sh", "-c", _PROBE], capture_output=True, timeout=10, env=_without_secrets(os.environ)
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    return None


def _tail(text: str, limit: int) -> str:
    # The end of the output, where errors and results usually are.
    cut = len(text) - limit
    return f"[... {cut} characters cut]\n{text[cut:]}" if cut > 0 else text
