"""HTTP service for a Segmenter: FastAPI app, request batching, upload limits, the page.

``create_app(segmenter, ServeSettings(...))`` builds the ASGI app; ``scripts/serve.py`` runs it
with uvicorn (:mod:`segnet.tasks.serve`).
"""

from segnet.serve.app import create_app
from segnet.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
