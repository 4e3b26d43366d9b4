"""The GraphRouter REST service (FastAPI): settings, dependencies, routes and error mapping.

Run it with ``uvicorn api.main:create_app --factory`` (or ``graphrouter serve``). Importing this package is cheap:
torch, the checkpoint and the embedding model are loaded by the app's lifespan, not at import time.
"""
