"""Run reports and offline graph pictures: self-contained, escaped, highlighted, secret-free."""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET

import pytest

from graphswarm import (
    Agent,
    ConfigError,
    JoinPolicy,
    RunFailedError,
    Runner,
    SwarmSpec,
    UsageError,
)
from graphswarm.report import build_report, export_report
from graphswarm.testing import KeywordEmbeddings, ScriptedChatModel
from graphswarm.viz import (
    CURRENT_STROKE,
    VISITED_FILL,
    graph_svg,
    line_chart_svg,
    show_graph,
    visited_nodes,
)

WORKERS = [Agent(name="researcher", strengths=["research"]), Agent(name="writer", strengths=["copy"])]


def plan(*tasks: tuple[str, str]) -> dict:
    return {"tasks": [{"title": title, "worker": worker} for title, worker in tasks]}


def review(answer: str, approved: bool = True, feedback: str = "") -> dict:
    return {"answer": answer, "approved": approved, "feedback": feedback}


def scores(*values: float) -> dict:
    return {"scores": [{"candidate": i, "score": v, "rationale": f"reason {i}"} for i, v in enumerate(values, start=1)]}


def hierarchical() -> SwarmSpec:
    model = ScriptedChatModel(
        {
            "leader": [
                plan(("market research", "researcher"), ("home page copy", "writer")),
                review("the launch plan"),
            ],
            "researcher": ["three competitors"],
            "writer": ["<script>alert('owned')</script> Fresh bread & more"],
        }
    )
    return SwarmSpec(architecture="hierarchical", agents=WORKERS, model=model)


async def report_of(spec: SwarmSpec, fmt: str = "html", objective: str = "Plan a bakery launch") -> tuple[str, object]:
    async with Runner("memory") as runner:  # one in-memory database per process: fresh run ids
        result = await runner.start(spec, objective)
        return await build_report(runner, result.run_id, format=fmt), result


def node_group(html: str, name: str) -> str:
    """The class of a node's group in the graph picture, and its shape's tag."""
    match = re.search(rf'<g class="([^"]*)"><title>{re.escape(name)}</title>(<rect [^>]*>)', html)
    assert match, f"node {name} not drawn"
    return match.group(1) + " " + match.group(2)


def assert_self_contained(html: str) -> None:
    assert html.startswith("<!DOCTYPE html>")
    assert "<script" not in html.lower()
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and "@import" not in html and "<img" not in html
    assert not re.search(r"url\((?!#)", html)  # only references to the page's own SVG markers


async def test_html_report_of_a_hierarchical_run_is_self_contained_and_complete():
    html, _ = await report_of(hierarchical())
    assert_self_contained(html)
    assert "<title>graphswarm run " in html and " · hierarchical</title>" in html
    assert "Plan a bakery launch" in html and "the launch plan" in html
    # the timeline: nodes that ran next, and who made which call
    assert "work ×2" in html and "leader@plan" in html and "researcher@work" in html and "leader@consolidate" in html
    # who said what: tasks, assignments, results, the review
    assert "market research" in html and "three competitors" in html and "Leader&#x27;s reviews" in html
    # model text is escaped, never markup
    assert "&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt; Fresh bread &amp; more" in html
    # accounting per agent
    assert re.search(r"<tr><td>researcher</td><td>1</td>", html)


async def test_the_graph_picture_fills_the_nodes_the_run_went_through():
    html, _ = await report_of(hierarchical())
    for name in ("__start__", "plan", "work", "consolidate", "__end__"):
        group = node_group(html, name)
        assert group.startswith("node visited ") and f'fill="{VISITED_FILL}"' in group


async def test_nodes_a_vote_never_reached_are_not_filled():
    model = ScriptedChatModel({f"v{i}": ["Final answer: 42"] for i in (1, 2, 3)})
    spec = SwarmSpec(architecture="collaborative", agents=[Agent(name=f"v{i}") for i in (1, 2, 3)], model=model)
    html, _ = await report_of(spec)
    assert "visited" in node_group(html, "tally")
    assert "visited" not in node_group(html, "judge") and VISITED_FILL not in node_group(html, "judge")


async def test_collaborative_report_holds_each_rounds_answers_and_vote_table():
    model = ScriptedChatModel(
        {
            "v1": ["Final answer: 42", "Final answer: 42"],
            "v2": ["Final answer: 41", "Final answer: 42"],
            "v3": ["I'm sorry, but I can't help with that.", "Final answer: 42"],
        }
    )
    spec = SwarmSpec(
        architecture="collaborative",
        agents=[Agent(name=f"v{i}") for i in (1, 2, 3)],
        model=model,
        options={"rounds": 1},
    )
    html, _ = await report_of(spec, objective="What is 17 + 25?")
    assert "<h3>Round 1</h3>" in html and "<h3>Round 2</h3>" in html
    assert "plurality vote · winner: 42 · margin 0 · agreement 50% (1 of 2 votes) · tie" in html
    assert "plurality vote · winner: 42 · margin 3 · agreement 100% (3 of 3 votes)" in html
    assert "<td>(abstained)</td><td>0</td><td>v3</td>" in html
    assert 'class="graphswarm-chart"' in html  # agreement over the two rounds


async def test_debate_report_holds_the_transcript_and_the_agreement_per_round():
    model = ScriptedChatModel(
        {
            "ann": ["Final answer: 42", "Final answer: 42"],
            "ben": ["Final answer: 41", "Ann is right. Final answer: 42"],
            "cat": ["Final answer: 40", "Final answer: 42"],
        }
    )
    spec = SwarmSpec(architecture="debate", agents=[Agent(name=n) for n in ("ann", "ben", "cat")], model=model)
    html, result = await report_of(spec, objective="What is 17 + 25?")
    assert result.stop_reason == "consensus"
    assert "Ann is right. Final answer: 42" in html
    assert "<td>1</td><td>33%</td>" in html and "<td>2</td><td>100%</td>" in html
    chart = re.search(r'<svg class="graphswarm-chart"[^>]*aria-label="Agreement per round".*?</svg>', html)
    assert chart and "<polyline" in chart.group(0) and "threshold 1" in chart.group(0)
    assert "visited" not in node_group(html, "moderate")


async def test_competitive_report_holds_the_ranking():
    model = ScriptedChatModel(
        {
            "r1": ["Final answer: 41"],
            "r2": ["Final answer: 42"],
            "r3": ["Final answer: 40"],
            "judge": [scores(3, 10, 1)],
        }
    )
    spec = SwarmSpec(architecture="competitive", agents=[Agent(name=f"r{i}") for i in (1, 2, 3)], model=model)
    html, _ = await report_of(spec)
    assert '<tr class="strong"><td>1</td><td>r2</td><td>10</td>' in html
    assert "winner: r2" in html and "judge@select" in html


async def test_particle_report_plots_fitness_and_diversity():
    model = ScriptedChatModel(
        {
            "p1": ["Final answer: fresh bread daily", "Final answer: warm bread every morning"],
            "p2": ["Final answer: cakes for every party", "Final answer: warm bread every morning"],
            "p3": ["Final answer: the best croissants in town", "Final answer: warm bread every morning"],
            "judge": [scores(6, 4, 5), scores(8, 8, 8)],
        }
    )
    spec = SwarmSpec(
        architecture="particle",
        agents=[Agent(name=f"p{i}") for i in (1, 2, 3)],
        model=model,
        options={"embeddings": KeywordEmbeddings(), "iterations": 4},
    )
    html, _ = await report_of(spec)
    assert 'aria-label="Fitness per iteration"' in html and 'aria-label="Diversity per iteration"' in html
    assert html.count("<polyline") == 3  # best and mean fitness, diversity
    assert "swarm&#x27;s best: p1 in iteration 2 (8)" in html
    assert "<td>2</td><td>8</td><td>8.00</td><td>0.000</td>" in html


async def test_task_loop_report_holds_the_task_list_and_the_tool_calls(tmp_path):
    from langchain_core.messages import AIMessage

    model = ScriptedChatModel(
        {
            "planner": [
                {"tasks": [{"title": "Add up", "description": "", "assignee": ""}]},
                {"objective_met": True, "new_tasks": [], "priorities": []},
                "It is 42.",
            ],
            "doer": [
                AIMessage("", tool_calls=[{"name": "calculator", "args": {"expression": "17+25"}, "id": "c1"}]),
                "42",
            ],
        }
    )
    spec = SwarmSpec(
        architecture="task_loop",
        agents=[Agent(name="doer")],
        leader=Agent(name="planner"),
        model=model,
        options={"workspace": str(tmp_path)},
    )
    markdown, _ = await report_of(spec, "md")
    assert "### Task list" in markdown and "| 1 | done | 1 | doer | Add up | 42 |" in markdown
    assert '| 1 | doer | calculator | {"expression": "17+25"} | ok | 42 |' in markdown


async def test_orchestrator_report_holds_tasks_and_agents():
    model = ScriptedChatModel(
        {
            "boss": [{"tasks": [{"title": "x"}, {"title": "y"}]}, {"answer": "ok", "follow_up_tasks": []}],
            "w1": ["r1"],
            "w2": ["r2"],
        }
    )
    spec = SwarmSpec(
        architecture="orchestrator", agents=[Agent(name="w1"), Agent(name="w2")], leader=Agent(name="boss"), model=model
    )
    markdown, _ = await report_of(spec, "md")
    assert "### Tasks" in markdown and "| t1 | 1 | done | w1 | 1 |  | x | r1 |" in markdown
    assert "| w2 | up | 1 | 1 | 0 |" in markdown


async def test_markdown_report_has_a_mermaid_graph_and_tables():
    md, result = await report_of(hierarchical(), fmt="md")
    assert md.startswith(f"# Run `{result.run_id}`\n\nhierarchical swarm · done · approved\n")
    assert "```mermaid\n" in md and "graph TD;" in md
    assert "\tclass __end__,__start__,consolidate,plan,work visited\n" in md
    assert "| agent | calls | input tokens | output tokens | latency s | cost $ |" in md
    assert "| researcher | 1 |" in md
    assert "leader@plan" in md
    assert "&lt;script&gt;" in md and "<script>" not in md


async def test_markdown_report_mermaid_has_no_html():
    md, _ = await report_of(hierarchical(), fmt="md")
    graph = md.split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert "consolidate(consolidate)" in graph and "__start__([start]):::first" in graph
    assert "%% consolidate: waits for all its inputs (defer=True)" in graph
    assert "<" not in graph and "&nbsp" not in graph, graph


async def test_a_failed_run_shows_where_it_stopped_and_counts_each_call_once():
    model = ScriptedChatModel(
        {
            "leader": [plan(("copy", "writer"), ("facts", "researcher")), review("done")],
            "writer": [ValueError("writer broke"), "fixed copy"],
            "researcher": ["facts"],
        }
    )
    spec = SwarmSpec(architecture="hierarchical", agents=WORKERS, model=model, options={"join": JoinPolicy.FAIL_FAST})
    run_id = f"ff-{uuid.uuid4().hex[:8]}"
    async with Runner("memory") as runner:
        with pytest.raises(RunFailedError):
            await runner.start(spec, "objective", run_id=run_id)
        failed = await build_report(runner, run_id)
        await runner.resume(run_id, graph=spec.build())
        done = await build_report(runner, run_id)
    assert '<span class="badge failed">failed</span>' in failed and "ValueError: writer broke" in failed
    # the step that failed: the researcher's task finished in it, the writer's did not
    work = node_group(failed, "work")
    assert work.startswith("node visited current") and f'stroke="{CURRENT_STROKE}"' in work
    assert "visited" not in node_group(failed, "consolidate")
    assert re.search(r"<tr><td>researcher</td><td>1</td>", failed)  # the finished call of the failed step, once
    assert '<span class="badge done">done</span>' in done and "visited" in node_group(done, "consolidate")
    assert len(model.calls_for("researcher")) == 1


async def test_runs_from_a_graph_you_built_are_reported_and_drawn_when_given_that_graph():
    model = ScriptedChatModel({"r1": ["Final answer: 1"], "r2": ["Final answer: 2"], "judge": [scores(1, 2)]})
    graph = SwarmSpec(architecture="competitive", agents=[Agent(name="r1"), Agent(name="r2")], model=model).build()
    async with Runner("memory") as runner:
        result = await runner.start(graph, "objective")
        drawn = await build_report(runner, result.run_id, graph=graph)
        undrawn = await build_report(runner, result.run_id)
    for html in (drawn, undrawn):
        assert f"<title>graphswarm run {result.run_id} · custom</title>" in html
        assert "<td>r1</td>" in html and "<td>r2</td>" in html  # who said what, and the accounting
        # No spec, so no architecture's view: who said what is the state, key by key.
        assert "<h3>State</h3>" in html and "<td>ranking</td>" in html and "<h3>Ranking</h3>" not in html
    assert node_group(drawn, "select").startswith("node visited")
    assert "<svg" not in undrawn.split("<h2>Graph</h2>")[1].split("<h2>")[0]
    assert "started from a graph built in Python: pass it as graph= to draw it" in undrawn


async def test_unknown_format_is_a_config_error():
    async with Runner("memory") as runner:
        with pytest.raises(ConfigError, match="pdf"):
            await build_report(runner, "any", format="pdf")


def test_export_report_writes_the_format_its_suffix_names(tmp_path):
    db = str(tmp_path / "runs.sqlite")
    spec = SwarmSpec(
        architecture="collaborative",
        agents=[Agent(name="a"), Agent(name="b")],
        model=ScriptedChatModel({"a": ["Final answer: yes"], "b": ["Final answer: yes"]}),
    )
    from graphswarm import run_swarm

    run_swarm(spec, "Is it?", db=db, run_id="x1")
    html = export_report("x1", tmp_path / "x1.html", db=db).read_text(encoding="utf-8")
    md = export_report("x1", tmp_path / "x1.md", db=db).read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "```mermaid" in md
    with pytest.raises(ConfigError, match="x1.pdf"):
        export_report("x1", tmp_path / "x1.pdf", db=db)


async def test_export_report_inside_an_event_loop_says_to_await_build_report(tmp_path):
    with pytest.raises(UsageError, match="await build_report"):
        export_report("x1", tmp_path / "x1.html")


async def test_no_secret_reaches_the_report(monkeypatch):
    from langchain_openai import ChatOpenAI

    marker, password = "sk-MARKER-not-a-real-key-123", "PASSWORD-MARKER-456"
    monkeypatch.setenv("OPENAI_API_KEY", marker)
    judge = Agent(name="judge", model=ChatOpenAI(api_key=marker, base_url=f"http://user:{password}@127.0.0.1:9/v1"))
    spec = SwarmSpec(
        architecture="collaborative",
        agents=[Agent(name="a"), Agent(name="b")],
        judge=judge,
        model=ScriptedChatModel({"a": ["Final answer: yes"], "b": ["Final answer: yes"]}),
        base_url=f"http://user:{password}@127.0.0.1:9/v1",
    )
    async with Runner("memory") as runner:
        result = await runner.start(spec, "Is it?")
        reports = [await build_report(runner, result.run_id, format=fmt) for fmt in ("html", "md")]
    for text in reports:
        assert marker not in text and password not in text
        assert "judge" in text and "ChatOpenAI" in text  # the judge's model is named, without its key


# -- the pictures on their own ---------------------------------------------------------


def debate_graph():
    return SwarmSpec(
        architecture="debate", agents=[Agent(name="a"), Agent(name="b")], model=ScriptedChatModel([])
    ).build()


def test_graph_svg_works_without_graphviz(monkeypatch):
    monkeypatch.setenv("PATH", "")
    svg = graph_svg(debate_graph(), highlight={"argue"}, engine="auto")
    ET.fromstring(svg)  # a well-formed standalone document
    assert 'class="graphswarm-graph"' in svg and "visited" in node_group(svg, "argue")
    with pytest.raises(ConfigError, match="apt-get install graphviz"):
        graph_svg(debate_graph(), engine="dot")


@pytest.mark.parametrize(
    "engine",
    [
        "python",
        pytest.param(
            "dot", marks=pytest.mark.skipif(not __import__("shutil").which("dot"), reason="Graphviz is not installed")
        ),
    ],
)
def test_both_renderers_mark_visited_and_current_nodes_alike(engine):
    svg = graph_svg(debate_graph().compile(), highlight={"__start__", "argue"}, current={"assess"}, engine=engine)
    root = ET.fromstring(svg)
    ns = {"s": "http://www.w3.org/2000/svg"}
    classes = {
        g.find("s:title", ns).text: g.get("class")
        for g in root.iter("{http://www.w3.org/2000/svg}g")
        if (g.get("class") or "").startswith("node")
    }
    assert classes["argue"] == "node visited" and classes["__start__"] == "node visited"
    assert classes["assess"] == "node current" and classes["verdict"] == "node"
    assert VISITED_FILL in svg and "<?xml" not in svg and "<!--" not in svg


async def test_show_graph_of_a_run_infers_the_nodes_that_made_no_calls():
    model = ScriptedChatModel({"a": ["Final answer: 1"], "b": ["Final answer: 1"]})
    spec = SwarmSpec(architecture="collaborative", agents=[Agent(name="a"), Agent(name="b")], model=model)
    async with Runner("memory") as runner:
        result = await runner.start(spec, "objective")
        steps = await runner.history(result.run_id)
    assert visited_nodes(steps) == {"__start__", "answer", "tally", "__end__"}
    assert visited_nodes(result, graph=spec.build()) == visited_nodes(steps)
    picture = show_graph(result)
    assert "visited" in node_group(picture.data, "tally") and "visited" not in node_group(picture.data, "judge")


def test_line_chart_is_well_formed_and_escapes_its_labels():
    svg = line_chart_svg({"<best>": [1, 3, 2], "mean": [(1, 0.5), (2, 1.5)]}, title="A & B", reference={"goal": 2.5})
    ET.fromstring(svg)
    assert svg.count("<polyline") == 2 and "&lt;best&gt;" in svg and "A &amp; B" in svg and "goal 2.5" in svg
    ET.fromstring(line_chart_svg({"one": [4.0]}))  # a single point is drawn too


def test_cli_exports_a_report_and_rejects_bad_input(fake, sqlite_db, tmp_path, capsys):
    from graphswarm.cli import main

    assert (
        main(
            ["run", "debate", "q", "--agents", "2", "--base-url", fake.url, "--run-id", "rep", "-q", "--db", sqlite_db]
        )
        == 0
    )
    out = tmp_path / "rep.html"
    assert main(["report", "rep", "--output", str(out), "--db", sqlite_db]) == 0
    html = out.read_text()
    assert "rep" in html and "argue" in html and "<svg" in html
    capsys.readouterr()
    assert main(["report", "rep", "--output", str(tmp_path / "rep.pdf"), "--db", sqlite_db]) == 2
    assert main(["report", "nope", "--output", str(out), "--db", sqlite_db]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len([line for line in err.splitlines() if line.strip()]) == 2
