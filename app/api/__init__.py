"""HTTP routers: parse, depend, call one service, return."""

from fastapi import APIRouter

from app.api import health, indexing, jobs, labels, mining, pools, projects, queries

api_router = APIRouter()
for module in (projects, pools, labels, queries, jobs, mining, indexing, health):
    api_router.include_router(module.router)
