"""Objectives too long for a prompt: saved with the run, chunked into memory, retrieved per task."""

from __future__ import annotations

from graphswarm import Agent, Runner, SwarmSpec
from graphswarm.cli import main
from graphswarm.objectives import count_tokens
from graphswarm.testing import KeywordEmbeddings, ScriptedChatModel

TOPICS = {
    "payments": "invoices refunds currency card settlement ledger",
    "weather": "rainfall forecast humidity storms temperature sunshine",
    "customs": "tariffs border declarations import duties clearance",
}


def long_objective() -> str:
    sections = []
    for name, words in TOPICS.items():
        body = " ".join(f"The {name} rule {i} covers {words} in detail." for i in range(110))
        sections.append(f"{name.title()} section.\n{body}")
    return "Specification of the shop.\n\n" + "\n\n".join(sections)


def objective_part(prompt: str) -> str:
    """The retrieved objective chunks in a prompt (not the team's notes after them)."""
    assert "Relevant parts of the objective:" in prompt
    return prompt.split("Relevant parts of the objective:", 1)[1].split("Notes from your team:", 1)[0]


async def test_a_long_objective_is_chunked_and_the_right_chunk_reaches_the_right_agent(tmp_path):
    text = long_objective()
    assert count_tokens(text) > 5000
    model = ScriptedChatModel(
        {
            "leader": [
                {
                    "tasks": [
                        {"title": "weather storms forecast", "worker": "w1"},
                        {"title": "customs tariffs border", "worker": "w2"},
                    ]
                },
                {"answer": "done", "approved": True, "feedback": ""},
            ],
            "w1": ["ok"],
            "w2": ["ok"],
        }
    )
    spec = SwarmSpec(architecture="hierarchical", agents=[Agent(name="w1"), Agent(name="w2")], model=model)
    db = str(tmp_path / "runs.sqlite")
    async with Runner(db, memory="memory", embeddings=KeywordEmbeddings()) as runner:
        result = await runner.start(spec, text, run_id="long-1")
    assert (tmp_path / "objectives" / "long-1" / "objective.txt").read_text() == text
    assert result.record.objective == text
    for call in model.calls:
        assert count_tokens(call.prompt) < 2500, "the whole objective was pasted into a prompt"
    w1 = objective_part(model.calls_for("w1")[0].prompt)
    w2 = objective_part(model.calls_for("w2")[0].prompt)
    assert "rainfall" in w1 and "tariffs" not in w1
    assert "tariffs" in w2 and "rainfall" not in w2


def test_a_bad_chunk_size_exits_2_with_one_line(capsys, tmp_path):
    code = main(
        [
            "run",
            "hierarchical",
            "x",
            "--chunk-tokens",
            "10",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--db",
            str(tmp_path / "r.sqlite"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "chunk size must be at least 50 tokens" in lines[0]


def test_memory_input_errors_exit_2_with_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("graphswarm.embeddings.minilm_available", lambda: False)
    db = ["--db", str(tmp_path / "r.sqlite")]
    cases = [
        (["--memory", "http://127.0.0.1:9", "--embeddings", "minilm"], "cannot reach Chroma at http://127.0.0.1:9"),
        (["--memory", "embedded", "--embeddings", "openai"], "OPENAI_API_KEY"),
        (["--memory", "embedded"], "no embeddings available"),
    ]
    for extra, message in cases:
        code = main(["run", "collaborative", "q", "--agents", "2", "--model", "local", *extra, *db])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip() and not line.startswith("note:")]
        assert code == 2 and len(lines) == 1 and message in lines[0], err
