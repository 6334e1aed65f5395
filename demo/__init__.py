"""The live demo: simulated model servers (and, as issues land, pipelines and sinks)."""
