"""HTTP routers: parse, depend, call one service, return."""

from fastapi import APIRouter, Depends

from app.api import (
    auth,
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
# every router but the health checks needs a principal (app/api/auth.py: roles, membership)
api_router.include_router(health.router)
authenticated = APIRouter(dependencies=[Depends(auth.authenticate)])
for module in (
    projects, pools, labels, review, queries, jobs, schedules, mining, indexing, dashboard,
    pseudo_labels, webhooks, auth,
):
    authenticated.include_router(module.router)
api_router.include_router(authenticated)
