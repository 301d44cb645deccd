"""Each architecture's view lives in its module; the CLI, the report and the drawings
render neutral blocks and know no architecture."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from graphswarm import view
from graphswarm.registry import ARCHITECTURES

PACKAGE = Path(view.__file__).parent
STATE_KEYS = ["agent_stats", "assignee"]
"""Keys of one architecture's state that the renderers once guessed the architecture from."""


OUTSIDE = sorted(
    str(path.relative_to(PACKAGE))
    for path in PACKAGE.rglob("*.py")
    if path.parent.name != "architectures" and path.name not in ("registry.py", "__init__.py")
)
"""Every module but the architectures themselves, the registry's list of them, and the
public API's re-exports."""


def test_an_architecture_is_one_module_ending_with_its_description():
    for name, arch in ARCHITECTURES.items():
        assert arch.name == name and arch.build.__module__ == f"graphswarm.architectures.{name}"


@pytest.mark.parametrize("module", OUTSIDE)
def test_no_module_outside_the_architectures_names_one(module):
    words = [*ARCHITECTURES, *STATE_KEYS]
    pattern = re.compile("|".join(re.escape(w) for w in words))
    text = (PACKAGE / module).read_text(encoding="utf-8")
    found = [f"{n}: {line.strip()}" for n, line in enumerate(text.splitlines(), start=1) if pattern.search(line)]
    assert not found, f"{module} names an architecture:\n" + "\n".join(found)


def run_of(architecture: str, state: dict, spec: dict | None = None) -> SimpleNamespace:
    record = SimpleNamespace(architecture=architecture, spec={"architecture": architecture} if spec is None else spec)
    return SimpleNamespace(record=record, state=state, pending={})


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_architecture_has_a_view_in_its_own_module(name):
    arch = ARCHITECTURES[name]
    found = arch.view
    assert (
        found.update.__module__ == found.run.__module__ == arch.build.__module__ == f"graphswarm.architectures.{name}"
    )
    assert view.view_of(name) == found
    # Nothing to say yet: no progress line, no blocks (a run that failed before any node finished).
    assert found.update("any", {}) == ""
    assert found.run(run_of(name, {"objective": "x"})) == []
    assert found.run(run_of(name, {"objective": "x"}), brief=True) == []


def test_a_run_without_a_spec_shows_its_state_key_by_key():
    state = {"objective": "x[i]", "notes": ["see [docs](https://x)"], "calls": [{"agent": "a"}], "final_answer": "y"}
    for spec_less in (run_of("custom", state, spec={}), run_of(next(iter(ARCHITECTURES)), state, spec={})):
        (brief,) = view.run_blocks(spec_less, brief=True)
        (full,) = view.run_blocks(spec_less)
        assert brief.title == "state" and brief.rows == [["objective", "x[i]"], ["notes", '["see [docs](https://x)"]']]
        assert full.title == "State" and full.rows[1] == ["notes", view.Text('["see [docs](https://x)"]')]
    assert view.view_of("custom") is view.GENERIC and view.GENERIC.update("node", {"stop_reason": "done"}) == ""


def test_the_terminal_prints_blocks_as_written(capsys, monkeypatch):
    from rich.console import Console

    from graphswarm import cli

    monkeypatch.setattr(cli, "out", Console(highlight=False, markup=False, emoji=False, width=200))
    cli._print_blocks([
        view.Heading("[bold]x[/bold]"),
        view.Table(["answer", "votes"], [[view.Text("see [docs](https://x)"), "2"]], title="vote", caption="winner: :x:"),
        view.Text("round 1: x[i]"),
        view.agreement_chart([{"agreement": 0.5}, {"agreement": 1.0}], threshold=1.0),
    ])  # fmt: skip
    printed = capsys.readouterr().out
    for text in (
        "[bold]x[/bold]",
        "│ see [docs](https://x) │ 2 ",
        "winner: :x:",
        "round 1: x[i]",
        "Agreement per round",
    ):
        assert text in printed
    assert re.search(r"│ 2\s+│ 1\s+│", printed)  # the chart's points, as a table: round 2, agreement 1


def test_a_vote_shows_the_votes_behind_its_agreement_and_margin():
    from graphswarm.aggregation import count_votes, make_ballot

    split = count_votes([make_ballot(f"a{i}", f"Final answer: answer number {i}") for i in range(40)])
    assert view.vote_progress(split).startswith("agreement 2% (1 of 40 votes), leading: answer number 0")
    unanimous = count_votes([make_ballot(f"a{i}", "Final answer: 42") for i in range(3)])
    assert view.vote_table(unanimous, brief=True).caption == "winner: 42 · margin 3 · agreement 100% (3 of 3 votes)"
