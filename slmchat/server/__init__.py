"""``slmchat serve``: the loaded model behind OpenAI- and Ollama-compatible HTTP APIs.

One request, in the order it is handled:

- ``app.py``: the Starlette app (routes, Host/Origin guard, auth, CORS, JSON error bodies);
- ``openai_api.py`` / ``ollama_api.py``: each protocol's routes, parsed into one neutral
  ``GenRequest`` and formatted back;
- ``requests.py``: the ``GenRequest``, typed readers for JSON fields, and ``plan`` (the
  prompt within the context budget, the reply's length);
- ``admission.py``: reading the body within its limits, ``admit`` (a turn at the gate,
  the disconnect watch, the ``Admitted`` request whose chunks a route formats) and
  Ollama's load-only ``ensure_model``;
- ``gate.py``: the queue gate (one generation or swap at a time, FIFO, 429 past the queue);
- ``worker.py``: the ``Worker`` thread that runs the engine for one request, its queue
  items (``Planned``, chunks, ``Failed``, ``Done``) and the error mapping;
- ``catalog.py``: model names, and ``Catalog.switch``, the one model-swap path;
- ``state.py``: ``ServerConfig`` (from the CLI's flags) and ``ServerState`` (what every
  route shares);
- ``convlog.py``: ``--log-conversations`` (the reply's provenance is the app's type);
- ``tools.py``: offered functions, checked; ``errors.py``: ``APIError`` and error bodies;
- ``http_server.py``: binds the socket, runs uvicorn, stops cleanly on a signal.

The server talks to the model only through ``slmchat.engine.session.EngineLike``; the
engine never imports this package.
"""
