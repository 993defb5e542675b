"""``slmchat serve``: the loaded model behind OpenAI- and Ollama-compatible HTTP APIs.

Layout: ``app.py`` builds the Starlette app (routes, auth, body limit, error bodies);
``openai_api.py`` and ``ollama_api.py`` translate each protocol to one neutral
``GenRequest`` (``requests.py``) and back; ``slot.py`` runs one generation at a time in
a thread with a FIFO queue; ``catalog.py`` names and swaps models; ``convlog.py`` writes
requests to the conversation store when asked; ``run.py`` binds the socket and runs
uvicorn with a clean shutdown. The server talks to the model only through
``slmchat.engine.session.EngineLike``; the engine never imports this package.
"""
