"""The hierarchical swarm, for `langgraph dev` (see langgraph.json).

Configured from the environment: GRAPHSWARM_MODEL (a model string, default: the
default model), GRAPHSWARM_BASE_URL (an OpenAI-compatible server), GRAPHSWARM_AGENTS
(number of workers, default 3), and GRAPHSWARM_OPTION_<NAME> for any of its options
(`graphswarm options hierarchical`; e.g. GRAPHSWARM_OPTION_MAX_ROUNDS=3). The server brings
its own checkpointer.
"""

from graphswarm.serving import served_graph

graph = served_graph("hierarchical")
