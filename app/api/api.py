"""The REST API: /api/..., its OpenAPI document at /api/openapi.json and docs at /api/docs."""

from ninja import NinjaAPI

from app.api import commands, errors, live, queries, readmodels, subscriptions
from app.api.auth import BearerToken

api = NinjaAPI(
    title="Eventfold",
    version="1",
    description="Commands append events; queries read the log and the read models. See docs/api.md in the repository.",
    auth=BearerToken(),
    urls_namespace="api",
    openapi_url="/openapi.json",
    docs_url="/docs",
)
errors.install(api)
api.add_router("/", commands.router)
api.add_router("/", queries.router)
api.add_router("/", readmodels.router)
api.add_router("/", live.router)
api.add_router("/", subscriptions.router)
