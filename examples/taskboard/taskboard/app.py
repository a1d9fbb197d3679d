"""The taskboard backend: FastAPI, its own login, SQLite, and roomcast.

It uses roomcast in three ways, and never talks to Redis itself:
- membership (here, in the request, through `workers.api`): grant, wait until the
  grant is in force, then answer, so the page can join at once; revoke on
  removal; notify the user;
- domain changes (tasks, comments, chat): the request checks and enqueues a
  Dramatiq actor (taskboard.actors) and answers 202; the worker changes SQLite
  and publishes from inside the job. The page sees the result as an event;
- tokens: `/api/token` mints a short-lived roomcast JWT for the session (auth.py).

The endpoints are plain `def`: FastAPI runs them in threads, where sqlite3 and
the synchronous `workers.api` belong.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Cookie, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field

from taskboard import access, actors, auth, db
from taskboard.config import settings
from workers import api

STATIC = Path(__file__).parent / "static"


class Credentials(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=256)


class NewProject(BaseModel):
    name: str = Field(min_length=1, max_length=100)


class NewMember(BaseModel):
    username: str = Field(min_length=1, max_length=64)


class NewTask(BaseModel):
    title: str = Field(min_length=1, max_length=200)


class StatusChange(BaseModel):
    status: Literal["todo", "doing", "done"]


class NewComment(BaseModel):
    body: str = Field(min_length=1, max_length=2000)


class NewMessage(BaseModel):
    content: str = Field(min_length=1, max_length=2000)


def current_user(taskboard_session: Annotated[str | None, Cookie()] = None) -> db.Row:
    user = auth.session_user(taskboard_session)
    if user is None:
        raise HTTPException(401, "log in first (POST /api/login)")
    return user


User = Annotated[db.Row, Depends(current_user)]


def member_of(project_id: int, user: db.Row) -> db.Row:
    """The project, if the user is a member; 404 for both unknown and foreign projects."""
    with db.reading() as conn:
        if not db.is_member(conn, project_id, int(user["id"])):
            raise HTTPException(404, f"no project {project_id} of yours")
        return db.project(conn, project_id)


def owned(project_id: int, user: db.Row) -> db.Row:
    project = member_of(project_id, user)
    if project["owner_id"] != user["id"]:
        raise HTTPException(403, "only the project's owner changes its members")
    return project


def members_changed(project_id: int) -> None:
    with db.reading() as conn:
        members = db.members(conn, project_id)
    # a built-in event type, published from the request: queued, applied by the worker
    api.project_updated(access.project_room(project_id), project_id=project_id,
                        changes={"members": members})


def task_of(task_id: int, user: db.Row) -> db.Row:
    with db.reading() as conn:
        try:
            task = db.task(conn, task_id)
        except db.NotFound:
            raise HTTPException(404, f"no task {task_id}") from None
    member_of(int(task["project_id"]), user)
    return task


def queued(message: Any) -> dict[str, str]:
    return {"status": "queued", "job": str(message.message_id)}


def project_view(project: db.Row, user_id: int) -> dict[str, Any]:
    pid = int(project["id"])
    return {"id": pid, "name": project["name"], "owner_id": project["owner_id"],
            "is_owner": project["owner_id"] == user_id,
            "room": access.project_room(pid), "chat_room": access.channel_room(pid)}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    db.init()
    with db.reading() as conn:
        memberships = [(int(m["project_id"]), int(m["user_id"]))
                       for m in db.all_memberships(conn)]
        projects = db.all_project_ids(conn)
    access.sync_all(memberships, projects)  # a fresh Redis learns every membership again
    yield


def create_app() -> FastAPI:
    app = FastAPI(title="taskboard", lifespan=lifespan, docs_url="/api/docs", redoc_url=None)

    @app.exception_handler(auth.LoginError)
    async def _login_error(request: Request, exc: auth.LoginError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=401)

    @app.exception_handler(access.NotInForce)
    async def _not_in_force(request: Request, exc: access.NotInForce) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    # -- the page ------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        if name not in {"app.js", "style.css"}:
            raise HTTPException(404)
        return FileResponse(STATIC / name)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/config")
    def config() -> dict[str, Any]:
        """Where the page finds the gateways and the browser SDK they serve."""
        return {"gateways": settings().websocket_urls,
                "sdk": f"{settings().GATEWAYS[0]}/sdk/roomcast.js"}

    # -- login and tokens ----------------------------------------------------------------
    @app.post("/api/login")
    def login(credentials: Credentials, response: Response) -> dict[str, Any]:
        user, session_id = auth.login(credentials.username, credentials.password)
        response.set_cookie(auth.SESSION_COOKIE, session_id, httponly=True, samesite="strict")
        return {"user": user, "token": auth.roomcast_token(user),
                "token_ttl": settings().TOKEN_TTL}

    @app.post("/api/logout", status_code=204)
    def logout(user: User, response: Response,
               taskboard_session: Annotated[str | None, Cookie()] = None) -> None:
        if taskboard_session:
            auth.logout(taskboard_session)
        response.delete_cookie(auth.SESSION_COOKIE)

    @app.get("/api/token")
    def token(user: User) -> dict[str, Any]:
        """A fresh roomcast token: the SDK's token function calls this on every connect."""
        return {"token": auth.roomcast_token(user), "token_ttl": settings().TOKEN_TTL}

    @app.get("/api/me")
    def me(user: User) -> dict[str, Any]:
        with db.reading() as conn:
            projects = db.projects_of(conn, int(user["id"]))
        return {"user": user, "projects": [project_view(p, int(user["id"])) for p in projects]}

    # -- projects and members (synchronous: the grant is in force when we answer) -------
    @app.post("/api/projects", status_code=201)
    def create_project(body: NewProject, user: User) -> dict[str, Any]:
        with db.writing() as conn:
            project_id = db.add_project(conn, body.name, int(user["id"]))
            project = db.project(conn, project_id)
        access.open_project(project_id, int(user["id"]))
        return project_view(project, int(user["id"]))

    @app.get("/api/projects/{project_id}")
    def project_state(project_id: int, user: User) -> dict[str, Any]:
        """Everything the page shows, read after it joined the rooms (see app.js)."""
        project = member_of(project_id, user)
        with db.reading() as conn:
            return {**project_view(project, int(user["id"])),
                    "members": db.members(conn, project_id),
                    "tasks": db.tasks(conn, project_id),
                    "comments": db.comments(conn, project_id),
                    "messages": db.messages(conn, project_id)}

    @app.post("/api/projects/{project_id}/members")
    def add_member(project_id: int, body: NewMember, user: User) -> dict[str, Any]:
        project = owned(project_id, user)
        with db.writing() as conn:
            member = db.user_by_name(conn, body.username)
            if member is None:
                raise HTTPException(404, f"no user {body.username!r}: they log in once first")
            if db.is_member(conn, project_id, int(member["id"])):
                raise HTTPException(409, f"{body.username!r} is a member already")
            db.add_member(conn, project_id, int(member["id"]))
        access.grant_member(project_id, int(member["id"]))  # in force from here on
        api.notify(int(member["id"]), title=f"{user['username']} added you to {project['name']}",
                   project_id=project_id, sender=str(user["username"]))
        members_changed(project_id)
        return {"id": member["id"], "username": member["username"]}

    @app.delete("/api/projects/{project_id}/members/{user_id}", status_code=204)
    def remove_member(project_id: int, user_id: int, user: User) -> None:
        project = owned(project_id, user)
        if user_id == project["owner_id"]:
            raise HTTPException(409, "the owner stays a member of their project")
        with db.reading() as conn:
            if not db.is_member(conn, project_id, user_id):
                raise HTTPException(404, f"user {user_id} is no member of this project")
        access.revoke_member(project_id, user_id)  # first: never a grant without a member
        with db.writing() as conn:
            db.remove_member(conn, project_id, user_id)
        api.notify(user_id, title=f"{user['username']} removed you from {project['name']}",
                   project_id=project_id, sender=str(user["username"]))
        members_changed(project_id)

    # -- domain changes (asynchronous: a Dramatiq actor does them and publishes) --------
    @app.post("/api/projects/{project_id}/tasks", status_code=202)
    def create_task(project_id: int, body: NewTask, user: User) -> dict[str, str]:
        member_of(project_id, user)
        return queued(actors.create_task.send(project_id, body.title, int(user["id"])))

    @app.patch("/api/tasks/{task_id}", status_code=202)
    def change_status(task_id: int, body: StatusChange, user: User) -> dict[str, str]:
        task_of(task_id, user)
        return queued(actors.change_task_status.send(task_id, body.status, int(user["id"])))

    @app.post("/api/tasks/{task_id}/comments", status_code=202)
    def add_comment(task_id: int, body: NewComment, user: User) -> dict[str, str]:
        task_of(task_id, user)
        return queued(actors.add_comment.send(task_id, body.body, int(user["id"])))

    @app.post("/api/projects/{project_id}/messages", status_code=202)
    def post_message(project_id: int, body: NewMessage, user: User) -> dict[str, str]:
        member_of(project_id, user)
        return queued(actors.post_message.send(project_id, body.content, int(user["id"])))

    return app
