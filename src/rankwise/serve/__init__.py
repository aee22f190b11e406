"""Serving a measured pipeline: an HTTP API, MCP tools and a web page (``rankwise serve``, ``rankwise mcp``).

Needs the ``serve`` extra (``pip install 'rankwise[serve]'``: fastapi, uvicorn, mcp). Nothing here reads a config
except through :mod:`rankwise.config` and builds a component except through :mod:`rankwise.build`.

- :mod:`.parts`      an experiment config or ``rankwise ask``'s flags -> a built :class:`Pipeline` (``Served``);
- :mod:`.batching`   micro-batching with a bounded queue (503 + ``Retry-After`` when it is full);
- :mod:`.service`    search / rerank / ask / ask as a stream, one batcher per model stage, per-stage latency;
- :mod:`.streaming`  token streaming for a local generator, with stop strings held back;
- :mod:`.schemas`    the request bodies (unknown fields refused);
- :mod:`.app`        the FastAPI app: routes, ``{"error": ...}`` answers, bearer token, body limit, MCP mount;
- :mod:`.metrics`    counters and histograms in the Prometheus text format (``GET /metrics``);
- :mod:`.mcp_tools`  the ``search`` and ``ask`` MCP tools (official ``mcp`` SDK), for the mount and for stdio;
- ``page.html``      the page at ``/``: ask, read the answer, follow its ``[n]`` citations to the passages.
"""
