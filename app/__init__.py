import sys

from app import startup
from app.celery import app as celery_app

sys.excepthook = startup.excepthook  # a missing production setting: one sentence, no traceback

__all__ = ["celery_app"]
