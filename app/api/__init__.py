"""HTTP routers: parse, depend, call one service, return."""

from fastapi import APIRouter

from app.api import (
    dashboard,
    health,
    indexing,
    jobs,
    labels,
    mining,
    pools,
    projects,
    pseudo_labels,
    queries,
    review,
    schedules,
    webhooks,
)

api_router = APIRouter()
for module in (
    projects, pools, labels, review, queries, jobs, schedules, mining, indexing, dashboard, health,
    pseudo_labels, webhooks,
):
    api_router.include_router(module.router)
