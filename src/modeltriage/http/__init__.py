"""The HTTP service: ``create_app(intents_dir)`` returns a FastAPI app that loads the
router in its lifespan."""

from modeltriage.http.app import create_app

__all__ = ["create_app"]
