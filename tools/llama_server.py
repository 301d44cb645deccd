"""llama-cpp-python's OpenAI-compatible server, loading models the way graphswarm does.

    python -m tools.llama_server --model MODEL.gguf --model_alias smollm2 --host 127.0.0.1 --port 8000

Takes exactly the arguments of ``python -m llama_cpp.server`` (see its ``--help``).
The only difference: the server runs inside `graphswarm.local.cpu_safe_loading()`, so
every model it loads does so without llama.cpp's extra CPU buffer types, which
segfault on CPUs with AMX (see that function). The real-server tests
(tests/test_real_server.py) start the bundled model with it.
"""

from __future__ import annotations


def main() -> None:
    # llama_cpp.server's main reads sys.argv itself and serves until stopped.
    from llama_cpp.server.__main__ import main as serve

    from graphswarm.local import cpu_safe_loading

    with cpu_safe_loading():
        serve()


if __name__ == "__main__":
    main()
