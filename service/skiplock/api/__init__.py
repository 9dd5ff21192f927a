"""The HTTP API: a Starlette app served by uvicorn."""
