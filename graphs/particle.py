"""The particle swarm, for `langgraph dev` (see langgraph.json and graphs/hierarchical.py)."""

from graphswarm.serving import served_graph

graph = served_graph("particle")
