"""Built-in tools of the task loop, and the workspace its file tools are confined to.

Every tool is a LangChain tool, so an agent calls it like any other. A refused request
raises `ToolRefusedError`; the task loop shows its message to the model, which may try
again. Nothing here runs code or commands unless the shell is enabled explicitly.
"""

from __future__ import annotations

import ast
import math
import operator
import os
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool

from graphswarm.errors import ConfigError, ToolRefusedError

__all__ = ["BUILTIN_TOOLS", "Workspace", "builtin_tools", "calculate", "check_tool_names"]

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
MAX_SHELL_OUTPUT = 4_000
SHELL_TIMEOUT_S = 30
MAX_EXPRESSION = 500
MAX_EXPONENT = 1_000


class Workspace:
    """A directory that file tools may not leave.

    Made (with its parents) and probed for writing when created, so a workspace that
    cannot be used is reported before a run starts, not in the middle of a task.
    """

    def __init__(self, root: str | Path) -> None:
        path = Path(root).expanduser()
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
                pass
        except OSError as exc:
            raise ConfigError(f"workspace {str(root)!r} is not writable: {exc.strerror or exc}") from None
        self._root = path.resolve()

    @property
    def root(self) -> Path:
        return self._root

    def resolve(self, path: str) -> Path:
        """The real path of `path` inside the workspace; anything leading out is refused."""
        if not isinstance(path, str) or not path.strip():
            raise ToolRefusedError("give a path relative to the workspace, e.g. notes/plan.md")
        if os.path.isabs(path) or path.startswith("~"):
            raise ToolRefusedError(f"{path!r} is an absolute path: use a path relative to the workspace")
        # resolve() follows symlinks, so a link pointing out of the workspace lands outside too.
        real = (self._root / path).resolve()
        if not real.is_relative_to(self._root):
            raise ToolRefusedError(f"{path!r} is outside the workspace: use a path inside it")
        return real

    def read(self, path: str, max_chars: int = MAX_READ_CHARS) -> str:
        real = self.resolve(path)
        if not real.is_file():
            raise ToolRefusedError(f"no file {path!r} in the workspace (list_files shows what is there)")
        text = real.read_text(encoding="utf-8", errors="replace")
        if len(text) > max_chars:
            return text[:max_chars] + f"\n[... {len(text) - max_chars} more characters not shown]"
        return text

    def write(self, path: str, content: str) -> str:
        real = self.resolve(path)
        if real == self._root or real.is_dir():
            raise ToolRefusedError(f"{path!r} is a directory: give a file name")
        real.parent.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: a symlink swapped in after the check above is refused, not followed.
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(real, flags, 0o644)
        except OSError as exc:
            raise ToolRefusedError(f"cannot write {path!r}: {exc.strerror}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(content)
        return f"wrote {len(content)} characters to {real.relative_to(self._root)}"

    def list(self, path: str = ".") -> str:
        base = self.resolve(path)
        if not base.is_dir():
            raise ToolRefusedError(f"no directory {path!r} in the workspace")
        entries = []
        for item in sorted(base.rglob("*")):
            if item.name.startswith(".probe-"):
                continue
            relative = item.relative_to(self._root).as_posix()
            entries.append(relative + "/" if item.is_dir() else relative)
        return "\n".join(entries) or "(the workspace is empty)"


# -- calculator: arithmetic by walking the syntax tree, never eval ------------------

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "log": math.log, "log10": math.log10, "exp": math.exp, "sin": math.sin,
    "cos": math.cos, "tan": math.tan, "floor": math.floor, "ceil": math.ceil, "abs": abs,
    "round": round, "min": min, "max": max,
}  # fmt: skip
_CONSTANTS = {"pi": math.pi, "e": math.e}


def calculate(expression: str) -> str:
    """Evaluate arithmetic (+ - * / // % **, parentheses, sqrt, log, sin, pi, ...)."""
    if len(expression) > MAX_EXPRESSION:
        raise ToolRefusedError(f"the expression is longer than {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ToolRefusedError(f"{expression!r} is not an arithmetic expression") from None
    try:
        value = _evaluate(tree.body)
    except ZeroDivisionError:
        raise ToolRefusedError("division by zero") from None
    except (OverflowError, ValueError) as exc:
        raise ToolRefusedError(f"cannot compute {expression!r}: {exc}") from None
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return str(value)


def _evaluate(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ToolRefusedError(f"exponents above {MAX_EXPONENT} are refused")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        return _FUNCTIONS[node.func.id](*(_evaluate(arg) for arg in node.args))
    raise ToolRefusedError(
        f"only arithmetic is allowed ({', '.join(sorted(_FUNCTIONS))}, pi, e); "
        f"{ast.unparse(node)!r} is not"
    )


# -- the tools ------------------------------------------------------------------------


def check_tool_names(names: Sequence[str], *, allow_shell: bool) -> list[str]:
    """The built-in tool names, checked: unknown ones and a shell not enabled are refused."""
    for name in names:
        if name not in BUILTIN_TOOLS:
            raise ConfigError(f"unknown tool {name!r} (built-in tools: {', '.join(BUILTIN_TOOLS)})")
    if "shell" in names and not allow_shell:
        raise ConfigError("the shell tool runs commands on this machine: enable it explicitly with allow_shell=True")
    return list(dict.fromkeys(names))


def builtin_tools(
    names: Sequence[str],
    *,
    workspace: Workspace,
    memory: Any = None,
    agent: str = "",
    allow_shell: bool = False,
) -> list[BaseTool]:
    """LangChain tools for `names`, bound to one run's workspace and memory.

    `ask_human` pauses the graph with a LangGraph interrupt, so it works inside a
    LangGraph node only (the task loop answers it itself, before other tools run).
    """
    names = check_tool_names(names, allow_shell=allow_shell)

    async def memory_search(query: str) -> str:
        """Search the team's shared memory (notes, task results) for what is closest in meaning to `query`."""
        if memory is None:
            return "The run has no shared memory."
        notes = await memory.aquery(query, k=5)
        return "\n".join(f"- ({n['agent']}, {n['kind']}) {n['text']}" for n in notes) or "Nothing found."

    def calculator(expression: str) -> str:
        """Compute an arithmetic expression exactly, e.g. '(17 + 25) * 3' or 'sqrt(2) * pi'."""
        return calculate(expression)

    def read_file(path: str) -> str:
        """Read a text file from the workspace (a path relative to it)."""
        return workspace.read(path)

    def write_file(path: str, content: str) -> str:
        """Write `content` to a file in the workspace (a path relative to it), replacing what was there."""
        return workspace.write(path, content)

    def list_files(path: str = ".") -> str:
        """List the files in the workspace, or in one of its directories."""
        return workspace.list(path)

    def ask_human(question: str) -> str:
        """Ask the person running the swarm a question and wait for the answer."""
        from langgraph.config import get_config
        from langgraph.types import interrupt

        node = get_config().get("metadata", {}).get("langgraph_node", "act")
        answer = interrupt(
            {"stop_reason": "human", "detail": question, "agent": agent, "node": node, "question": question}
        )
        if isinstance(answer, dict):
            return str(answer.get("text") or answer.get("answer") or "")
        return str(answer)

    def shell(command: str) -> str:
        """Run a shell command in the workspace directory and return its exit code and output."""
        try:
            done = subprocess.run(
                command, shell=True, cwd=workspace.root, capture_output=True, text=True, timeout=SHELL_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            raise ToolRefusedError(f"the command ran longer than {SHELL_TIMEOUT_S}s and was stopped") from None
        output = (done.stdout + done.stderr)[-MAX_SHELL_OUTPUT:]
        return f"exit code {done.returncode}\n{output}".rstrip()

    functions: dict[str, Callable[..., Any]] = {
        "memory_search": memory_search,
        "calculator": calculator,
        "read_file": read_file,
        "write_file": write_file,
        "list_files": list_files,
        "ask_human": ask_human,
        "shell": shell,
    }
    tools = []
    for name in names:
        function = functions[name]
        if name == "memory_search":
            tools.append(StructuredTool.from_function(coroutine=function, name=name))
        else:
            tools.append(StructuredTool.from_function(function, name=name))
    return tools
