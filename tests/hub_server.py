"""A small, stdlib-only, Hub-compatible HTTP server for tests, plus helpers that point
``huggingface_hub`` and ``transformers`` at it.

Nothing here talks to the network: the server binds to 127.0.0.1 on a free port and only
serves while its context is open.

Usage (pytest)::

    from hub_server import hub_offline   # conftest.py registers this module as a plugin: `local_hub` is a fixture

    def test_roundtrip(local_hub, tmp_path):
        api = HfApi()                                 # picks up the patched endpoint + token
        api.create_repo("user/demo")
        ...
        with hub_offline():
            hf_hub_download("user/demo", "config.json")  # served from the cache

Outside pytest: ``with start_local_hub(tmp_dir) as hub: ...``.

What the server implements (models; ``datasets/`` and ``spaces/`` prefixes are also accepted):

* ``POST /api/repos/create`` (409 + ``url`` in the JSON body when it exists, which is what
  ``create_repo(exist_ok=True)`` needs), ``DELETE /api/repos/delete``, ``GET /api/whoami-v2``,
  ``POST /api/validate-yaml`` (always valid), ``GET /api/agent-harnesses`` (empty registry).
* ``GET /api/{type}s/{id}`` and ``.../revision/{rev}`` (``sha``, ``siblings`` with size/blobId),
  ``GET .../tree/{rev}[/{path}]`` (``recursive``), ``POST .../paths-info/{rev}``,
  ``GET .../commits/{rev}``, ``GET .../refs``, ``POST .../branch/{name}``.
* ``POST .../preupload/{rev}``: every file is ``uploadMode: "regular"``, ``shouldIgnore: false``,
  and ``oid`` = git blob sha1 of the file already on the branch (so the client skips unchanged
  files exactly like on the real Hub). Hence the LFS / Xet *upload* paths are never exercised.
* ``POST .../commit/{rev}`` (NDJSON: ``header``, ``file`` with base64 content, ``deletedFile``,
  ``deletedFolder``; ``lfsFile`` is rejected with 400 since nothing is ever uploaded as LFS).
  ``parentCommit`` is checked (412 on mismatch). ``create_pr`` is not supported (400).
* ``HEAD``/``GET /[{type}s/]{id}/resolve/{rev}/{path}``: 200 with ``X-Repo-Commit``, quoted
  ``ETag`` (git blob sha1, as the Hub does for non-LFS files), ``Content-Length``, simple
  ``Range`` support. Errors are 404 with ``X-Error-Code`` = ``RepoNotFound`` /
  ``RevisionNotFound`` / ``EntryNotFound`` (the latter also carries ``X-Repo-Commit``, which the
  client uses to cache the non-existence under ``.no_exist/<sha>/``). No redirects, no
  ``X-Linked-*`` or ``X-Xet-*`` headers, so downloads take the plain HTTP path.

Storage: ``root/<namespace>/<name>/<commit sha>/<files...>`` (full snapshot per commit, unchanged
files hard-linked from the parent) and ``root/<namespace>/<name>/hub_meta.json`` (branches and
commit history). Non-model repos live under ``root/@datasets/...`` / ``root/@spaces/...``.
A new repo gets an initial commit with a ``.gitattributes`` file, like on the Hub, so ``main``
always resolves to a 40-hex sha.

Why ``hub_environment`` patches module attributes (huggingface_hub 2.4 / transformers 5.x)
-------------------------------------------------------------------------------------------
``huggingface_hub.constants`` reads ``HF_ENDPOINT``, ``HF_HOME``, ``HF_HUB_CACHE``,
``HF_HUB_OFFLINE``... once, at import time. Other test modules import ``transformers`` (and so
``huggingface_hub``) at collection time, so setting environment variables in a fixture is too
late. What is read at *call* time, and is therefore fixed by patching the attribute:

* ``constants.ENDPOINT``: ``HfApi(endpoint=None)`` at construction, ``hf_hub_url`` (to rebase),
  ``_commit_api``, ``lfs``, ``RepoUrl``, ``ModelCard.validate``...
* ``constants.HUGGINGFACE_CO_URL_TEMPLATE``: ``hf_hub_url`` formats the resolve URL with it
  (it is ``ENDPOINT + "/{repo_id}/resolve/..."`` computed at import), so it must be patched
  *together* with ``ENDPOINT``; ``hf_hub_download``/``file_exists``/``ModelCard.load`` use it.
* ``constants.HF_HUB_CACHE`` / ``HF_HOME`` / ``HF_ASSETS_CACHE`` / ``HF_XET_CACHE`` /
  ``HF_TOKEN_PATH`` / ``HF_STORED_TOKENS_PATH`` / ``AGENT_HARNESSES_PATH``: default cache dir of
  ``hf_hub_download``/``snapshot_download`` and of transformers' ``cached_files``; token file.
* ``constants.HF_HUB_OFFLINE``: both ``huggingface_hub.is_offline_mode()`` (imported by name
  into transformers, but it reads the constant at call time) and the httpx request hook that
  raises ``OfflineModeIsEnabled``. Forced to ``False`` here, flipped by ``hub_offline()``.
* ``constants.HF_HUB_DISABLE_TELEMETRY`` -> ``True``: otherwise building the User-Agent calls
  ``detect_agent()``, which on first use GETs ``{ENDPOINT}/api/agent-harnesses`` (and would go
  to huggingface.co if ENDPOINT were not yet patched).
* ``constants.HF_URL_HOSTS`` and ``utils._http._HUB_ORIGINS`` (frozensets computed from the
  import-time ENDPOINT): extended with 127.0.0.1:<port> to mirror an import-time HF_ENDPOINT
  (used for web-URL parsing and for which redirects keep the auth header; this server never
  redirects, so this is belt and braces).
* Objects that captured the endpoint at import time:
  ``huggingface_hub.hf_api.api.endpoint`` (the module-level ``HfApi()`` whose bound methods are
  re-exported as ``huggingface_hub.create_repo``, ``upload_folder``, ``file_exists``...), and
  ``transformers.utils.hub._hf_api`` (a lazily created shared ``HfApi`` used by ``push_to_hub``;
  reset to ``None`` so it is rebuilt with the patched endpoint, restored afterwards).
  ``from ..constants import X`` copies: ``utils._cache_manager.HF_HUB_CACHE`` (``scan_cache_dir``)
  and ``utils._cache_assets.HF_ASSETS_CACHE``.
* ``datasets.config`` (only if ``datasets`` is already imported): ``HF_ENDPOINT``,
  ``HUB_DATASETS_URL``, ``HF_HUB_OFFLINE``, ``HF_DATASETS_OFFLINE``.

The token is not a constant: ``get_token()`` reads ``HF_TOKEN`` from ``os.environ`` at call time,
so a dummy ``HF_TOKEN`` env var is enough. The environment variables are *also* set (HF_ENDPOINT,
HF_HOME, HF_HUB_CACHE, HF_TOKEN, ...) so that anything imported later, or a subprocess, sees the
same configuration. Everything is restored on exit, in reverse order.

Not covered: an ``HfApi`` (or ``HfFileSystem``) instance created *before* the context keeps its
old ``endpoint``; create API objects inside the context.
"""

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

DUMMY_TOKEN = "hf_localhubdummytoken0000000000000000"
DEFAULT_USERNAME = "user"
_REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_INITIAL_GITATTRIBUTES = (
    b"*.bin filter=lfs diff=lfs merge=lfs -text\n"
    b"*.pt filter=lfs diff=lfs merge=lfs -text\n"
    b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
)


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob: what the Hub returns as ETag/oid for non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


def _safe_relpath(path: str) -> str:
    p = PurePosixPath(path.strip("/"))
    if not path or p.is_absolute() or any(part in ("", ".", "..") for part in p.parts):
        raise HubError(400, f"Invalid path in repo: {path!r}")
    return p.as_posix()


class LocalHub:
    """A tiny Hugging Face Hub. ``with LocalHub(root) as hub: hub.url``.

    ``hub.requests`` records ``(method, path, status)`` for every request, and ``hub.unhandled``
    the requests that matched no route (useful to assert the client did nothing unexpected).
    """

    def __init__(self, root: Path, *, username: str = DEFAULT_USERNAME):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.username = username
        self.url: str = ""
        self.requests: list[tuple[str, str, int]] = []
        self.unhandled: list[tuple[str, str]] = []
        # Filled in by `start_local_hub` (client-side configuration that goes with this server).
        self.home: Path | None = None
        self.cache_dir: Path | None = None
        self.token: str | None = None
        self._lock = threading.RLock()
        self._repos: dict[tuple[str, str], dict] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._load_existing()

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "LocalHub":
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="local-hub", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    # ------------------------------------------------------------------ storage
    def _repo_dir(self, repo_type: str, repo_id: str) -> Path:
        prefix = () if repo_type == "model" else (f"@{repo_type}s",)
        return self.root.joinpath(*prefix, *repo_id.split("/"))

    def _load_existing(self) -> None:
        for meta_path in list(self.root.glob("*/*/hub_meta.json")) + list(self.root.glob("@*/*/*/hub_meta.json")):
            meta = json.loads(meta_path.read_text())
            self._repos[(meta["type"], meta["id"])] = meta

    def _save(self, meta: dict) -> None:
        path = self._repo_dir(meta["type"], meta["id"]) / "hub_meta.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, path)

    def _get_repo(self, repo_type: str, repo_id: str) -> dict:
        meta = self._repos.get((repo_type, repo_id))
        if meta is None:
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return meta

    def _resolve(self, meta: dict, rev: str) -> str:
        if rev in meta["branches"]:
            return meta["branches"][rev]
        if rev in meta["commits"]:
            return rev
        if re.fullmatch(r"[0-9a-f]{7,39}", rev):
            matches = [sha for sha in meta["commits"] if sha.startswith(rev)]
            if len(matches) == 1:
                return matches[0]
        raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    def _snapshot(self, meta: dict, sha: str) -> Path:
        return self._repo_dir(meta["type"], meta["id"]) / sha

    def _files(self, meta: dict, sha: str) -> list[str]:
        base = self._snapshot(meta, sha)
        return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())

    def _file_entry(self, meta: dict, sha: str, relpath: str) -> dict:
        data = (self._snapshot(meta, sha) / relpath).read_bytes()
        return {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": relpath}

    @staticmethod
    def _dir_entry(sha: str, relpath: str) -> dict:
        oid = hashlib.sha1(f"tree {sha} {relpath}".encode()).hexdigest()
        return {"type": "directory", "oid": oid, "size": 0, "path": relpath}

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.url}/{prefix}{repo_id}"

    def _new_commit(self, meta: dict, parent: str | None, title: str, message: str, build) -> str:
        """Create a snapshot from `parent` (hard links), let `build(dir)` modify it, record it."""
        repo_dir = self._repo_dir(meta["type"], meta["id"])
        tmp = repo_dir / f".tmp-{uuid.uuid4().hex}"
        if parent is None:
            tmp.mkdir(parents=True)
        else:
            shutil.copytree(self._snapshot(meta, parent), tmp, copy_function=_link_or_copy)
        try:
            build(tmp)
            listing = sorted(
                (p.relative_to(tmp).as_posix(), git_blob_sha1(p.read_bytes())) for p in tmp.rglob("*") if p.is_file()
            )
            seed = json.dumps([parent, title, message, listing, time.time_ns(), uuid.uuid4().hex])
            sha = hashlib.sha1(seed.encode()).hexdigest()
            os.replace(tmp, repo_dir / sha)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        meta["commits"][sha] = {
            "id": sha,
            "title": title,
            "message": message,
            "parents": [parent] if parent else [],
            "date": _now_iso(),
            "authors": [{"user": self.username}],
        }
        return sha

    # ------------------------------------------------------------------ API operations
    def create_repo(self, body: dict) -> tuple[int, dict]:
        repo_type = body.get("type") or "model"
        namespace = body.get("organization") or self.username
        repo_id = f"{namespace}/{body['name']}"
        url = self._repo_url(repo_type, repo_id)
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                return 409, {"error": f"You already created this {repo_type} repo", "url": url}
            now = _now_iso()
            meta = {
                "type": repo_type,
                "id": repo_id,
                "private": body.get("visibility") == "private" or bool(body.get("private")),
                "createdAt": now,
                "branches": {},
                "commits": {},
            }
            self._repo_dir(repo_type, repo_id).mkdir(parents=True, exist_ok=True)
            sha = self._new_commit(
                meta, None, "initial commit", "", lambda d: (d / ".gitattributes").write_bytes(_INITIAL_GITATTRIBUTES)
            )
            meta["branches"]["main"] = sha
            self._repos[(repo_type, repo_id)] = meta
            self._save(meta)
        return 200, {"url": url, "name": repo_id, "id": repo_id}

    def delete_repo(self, body: dict) -> tuple[int, dict]:
        repo_type = body.get("type") or "model"
        repo_id = f"{body.get('organization') or self.username}/{body['name']}"
        with self._lock:
            self._get_repo(repo_type, repo_id)
            del self._repos[(repo_type, repo_id)]
            shutil.rmtree(self._repo_dir(repo_type, repo_id), ignore_errors=True)
        return 200, {}

    def repo_info(self, repo_type: str, repo_id: str, rev: str) -> dict:
        with self._lock:
            meta = self._get_repo(repo_type, repo_id)
            sha = self._resolve(meta, rev)
            siblings = []
            for relpath in self._files(meta, sha):
                entry = self._file_entry(meta, sha, relpath)
                siblings.append({"rfilename": relpath, "size": entry["size"], "blobId": entry["oid"]})
            return {
                "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
                "id": repo_id,
                "author": repo_id.split("/")[0],
                "sha": sha,
                "lastModified": meta["commits"][sha]["date"],
                "createdAt": meta["createdAt"],
                "private": meta["private"],
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
                "usedStorage": sum(s["size"] for s in siblings),
            }

    def tree(self, repo_type: str, repo_id: str, rev: str, path: str, recursive: bool) -> list[dict]:
        with self._lock:
            meta = self._get_repo(repo_type, repo_id)
            sha = self._resolve(meta, rev)
            base = self._snapshot(meta, sha)
            path = _safe_relpath(path) if path.strip("/") else ""
            target = base / path if path else base
            if not target.is_dir():
                raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": sha})
            children = sorted(target.rglob("*") if recursive else target.iterdir())
            out = []
            for child in children:
                rel = child.relative_to(base).as_posix()
                out.append(self._dir_entry(sha, rel) if child.is_dir() else self._file_entry(meta, sha, rel))
            return out

    def paths_info(self, repo_type: str, repo_id: str, rev: str, paths: list[str]) -> list[dict]:
        with self._lock:
            meta = self._get_repo(repo_type, repo_id)
            sha = self._resolve(meta, rev)
            base = self._snapshot(meta, sha)
            out = []
            for path in paths:
                rel = _safe_relpath(path)
                if (base / rel).is_file():
                    out.append(self._file_entry(meta, sha, rel))
                elif (base / rel).is_dir():
                    out.append(self._dir_entry(sha, rel))
            return out

    def commits(self, repo_type: str, repo_id: str, rev: str) -> list[dict]:
        with self._lock:
            meta = self._get_repo(repo_type, repo_id)
            sha, out = self._resolve(meta, rev), []
            while sha:
                commit = meta["commits"][sha]
                out.append({k: commit[k] for k in ("id", "title", "message", "date", "authors")})
                sha = commit["parents"][0] if commit["parents"] else None
            return out

    def refs(self, repo_type: str, repo_id: str) -> dict:
        with self._lock:
            meta = self._get_repo(repo_type, repo_id)
            branches = [
                {"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha}
                for name, sha in meta["branches"].items()
            ]
            return {"branches": branches, "converts": [], "tags": []}

    def create_branch(self, repo_type: str, repo_id: str, branch: str, body: dict) -> tuple[int, dict]:
        with self._lock:
            meta = self._get_repo(repo_type, repo_id)
            if branch in meta["branches"]:
                return 409, {"error": f"Reference refs/heads/{branch} already exists"}
            meta["branches"][branch] = self._resolve(meta, body.get("startingPoint") or "main")
            self._save(meta)
        return 200, {}

    def preupload(self, repo_type: str, repo_id: str, rev: str, body: dict) -> dict:
        with self._lock:
            meta = self._get_repo(repo_type, repo_id)
            sha = self._resolve(meta, rev)
            base = self._snapshot(meta, sha)
            files = []
            for item in body.get("files", []):
                rel = _safe_relpath(item["path"])
                target = base / rel
                oid = git_blob_sha1(target.read_bytes()) if target.is_file() else None
                files.append({"path": item["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": oid})
            return {"files": files, "commitOid": sha}

    def commit(self, repo_type: str, repo_id: str, rev: str, lines: list[dict], create_pr: bool) -> dict:
        if create_pr:
            raise HubError(400, "LocalHub does not support create_pr")
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "First NDJSON line must be the commit header")
        header = lines[0]["value"]
        with self._lock:
            meta = self._get_repo(repo_type, repo_id)
            if rev not in meta["branches"]:
                if _HEX40.match(rev):
                    raise HubError(400, f"Cannot commit to a commit sha ({rev}), use a branch name")
                raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            head = meta["branches"][rev]
            parent_commit = header.get("parentCommit")
            if parent_commit and self._resolve(meta, parent_commit) != head:
                raise HubError(412, f"A commit has happened since {parent_commit}. Please refresh and try again.")

            def build(snapshot: Path) -> None:
                for line in lines[1:]:
                    key, value = line.get("key"), line.get("value", {})
                    rel = _safe_relpath(value.get("path", ""))
                    target = snapshot / rel
                    if key == "file":
                        if value.get("encoding", "base64") != "base64":
                            raise HubError(400, f"Unsupported encoding {value.get('encoding')!r}")
                        if target.is_dir():
                            raise HubError(400, f"{rel} is a directory")
                        target.parent.mkdir(parents=True, exist_ok=True)
                        if target.exists():
                            target.unlink()  # may be a hard link shared with the parent snapshot
                        target.write_bytes(base64.b64decode(value["content"]))
                    elif key == "deletedFile":
                        if not target.is_file():
                            raise HubError(404, f"A file with this name doesn't exist: {rel}", "EntryNotFound")
                        target.unlink()
                    elif key == "deletedFolder":
                        if not target.is_dir():
                            raise HubError(404, f"A folder with this name doesn't exist: {rel}", "EntryNotFound")
                        shutil.rmtree(target)
                    elif key == "lfsFile":
                        raise HubError(400, "LocalHub never requests LFS uploads; got an lfsFile operation")
                    else:
                        raise HubError(400, f"Unknown commit operation {key!r}")
                _prune_empty_dirs(snapshot)

            sha = self._new_commit(meta, head, header.get("summary") or "", header.get("description") or "", build)
            meta["branches"][rev] = sha
            self._save(meta)
        return {
            "success": True,
            "commitOid": sha,
            "commitUrl": f"{self._repo_url(repo_type, repo_id)}/commit/{sha}",
            "hookOutput": "",
            "pullRequestUrl": None,
        }

    def resolve_file(self, repo_type: str, repo_id: str, rev: str, path: str) -> tuple[str, Path]:
        with self._lock:
            meta = self._get_repo(repo_type, repo_id)
            sha = self._resolve(meta, rev)
            target = self._snapshot(meta, sha) / _safe_relpath(path)
            if not target.is_file():
                raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": sha})
            return sha, target

    # ------------------------------------------------------------------ convenience for tests
    def head(self, repo_id: str, branch: str = "main", repo_type: str = "model") -> str:
        """Current commit sha of `branch`."""
        with self._lock:
            return self._get_repo(repo_type, repo_id)["branches"][branch]


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _prune_empty_dirs(root: Path) -> None:
    for dirpath, _dirnames, _filenames in sorted(os.walk(root), key=lambda t: -len(t[0])):
        if Path(dirpath) != root and not os.listdir(dirpath):
            os.rmdir(dirpath)


class _Handler(BaseHTTPRequestHandler):
    hub: LocalHub
    protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers after shutdown
    timeout = 30  # a stalled client cannot pin a handler thread forever
    server_version = "LocalHub/0.1"

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr
        pass

    # -------------------------------------------------------------- plumbing
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self) -> dict:
        raw = self._read_body()
        return json.loads(raw) if raw else {}

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():  # header values must be latin-1, single line
            self.send_header(key, " ".join(str(value).encode("ascii", "replace").decode().split()))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        self.hub.requests.append((self.command, self.path, status))

    def _send_json(self, status: int, obj: Any, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _dispatch(self) -> None:
        try:
            self._route()
        except HubError as e:
            headers = {"X-Error-Message": e.message, **e.headers}
            if e.code:
                headers["X-Error-Code"] = e.code
            self._send_json(e.status, {"error": e.message}, headers)
        except Exception as e:  # pragma: no cover - surfaced to the client as a 500
            self._send_json(500, {"error": f"{type(e).__name__}: {e}"}, {"X-Error-Message": str(e)[:200]})

    do_GET = do_HEAD = do_POST = do_DELETE = do_PUT = _dispatch

    # -------------------------------------------------------------- routing
    def _route(self) -> None:
        hub, method = self.hub, self.command
        split = urlsplit(self.path)
        query = parse_qs(split.query)
        segs = split.path.split("/")[1:]

        if segs[:1] == ["api"]:
            rest = segs[1:]
            if method == "POST" and rest == ["repos", "create"]:
                return self._send_json(*hub.create_repo(self._json_body()))
            if method == "DELETE" and rest == ["repos", "delete"]:
                return self._send_json(*hub.delete_repo(self._json_body()))
            if method == "POST" and rest == ["validate-yaml"]:
                self._read_body()
                return self._send_json(200, {"errors": [], "warnings": []})
            if method == "GET" and rest == ["whoami-v2"]:
                return self._send_json(
                    200,
                    {
                        "type": "user",
                        "name": hub.username,
                        "fullname": hub.username,
                        "orgs": [],
                        "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}},
                    },
                )
            if method == "GET" and rest == ["agent-harnesses"]:
                return self._send_json(200, {"standardEnvVars": [], "harnesses": {}})
            if len(rest) >= 3 and rest[0] in _REPO_TYPES:
                return self._route_repo_api(
                    method, _REPO_TYPES[rest[0]], f"{unquote(rest[1])}/{unquote(rest[2])}", rest[3:], query
                )
        elif method in ("GET", "HEAD"):
            repo_type = "model"
            if segs and segs[0] in _REPO_TYPES and segs[0] != "models":
                repo_type, segs = _REPO_TYPES[segs[0]], segs[1:]
            if len(segs) >= 5 and segs[2] == "resolve":
                repo_id = f"{unquote(segs[0])}/{unquote(segs[1])}"
                return self._serve_file(repo_type, repo_id, unquote(segs[3]), unquote("/".join(segs[4:])))

        hub.unhandled.append((method, self.path))
        self._send_json(404, {"error": f"LocalHub: no route for {method} {split.path}"})

    def _route_repo_api(self, method: str, repo_type: str, repo_id: str, rest: list[str], query: dict) -> None:
        hub = self.hub
        action = rest[0] if rest else None
        rev = unquote(rest[1]) if len(rest) >= 2 else None
        if method == "GET" and action is None:
            return self._send_json(200, hub.repo_info(repo_type, repo_id, "main"))
        if method == "GET" and action == "revision" and rev:
            return self._send_json(200, hub.repo_info(repo_type, repo_id, rev))
        if method == "GET" and action == "tree" and rev:
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            path = unquote("/".join(rest[2:]))
            return self._send_json(200, hub.tree(repo_type, repo_id, rev, path, recursive))
        if method == "POST" and action == "paths-info" and rev:
            raw = self._read_body()
            if self.headers.get("Content-Type", "").startswith("application/json"):
                paths = json.loads(raw).get("paths", [])
            else:
                paths = parse_qs(raw.decode()).get("paths", [])
            return self._send_json(200, hub.paths_info(repo_type, repo_id, rev, paths))
        if method == "GET" and action == "commits" and rev:
            return self._send_json(200, hub.commits(repo_type, repo_id, rev))
        if method == "GET" and action == "refs":
            return self._send_json(200, hub.refs(repo_type, repo_id))
        if method == "POST" and action == "branch" and rev:
            branch = unquote("/".join(rest[1:]))
            return self._send_json(*hub.create_branch(repo_type, repo_id, branch, self._json_body()))
        if method == "POST" and action == "preupload" and rev:
            return self._send_json(200, hub.preupload(repo_type, repo_id, rev, self._json_body()))
        if method == "POST" and action == "commit" and rev:
            lines = [json.loads(line) for line in self._read_body().splitlines() if line.strip()]
            create_pr = query.get("create_pr", ["0"])[0] in ("1", "true", "True")
            return self._send_json(200, hub.commit(repo_type, repo_id, rev, lines, create_pr))
        hub.unhandled.append((method, self.path))
        self._send_json(404, {"error": f"LocalHub: no route for {method} {self.path}"})

    def _serve_file(self, repo_type: str, repo_id: str, rev: str, path: str) -> None:
        sha, target = self.hub.resolve_file(repo_type, repo_id, rev, path)
        data = target.read_bytes()
        headers = {"X-Repo-Commit": sha, "ETag": f'"{git_blob_sha1(data)}"', "Accept-Ranges": "bytes"}
        status = 200
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if match and (match.group(1) or match.group(2)):
            size = len(data)
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:  # suffix range: last N bytes
                start, end = max(size - int(match.group(2)), 0), size - 1
            if start >= size or start > end:
                raise HubError(416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
            data, status = data[start : end + 1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        self._send(status, data, headers, content_type="application/octet-stream")


# ---------------------------------------------------------------------- client-side patching
class _Patcher:
    """Records attribute and environment changes and undoes them in reverse order."""

    _MISSING = object()

    def __init__(self) -> None:
        self._undo: list[tuple[str, Any, str, Any]] = []

    def setattr(self, obj: Any, name: str, value: Any) -> None:
        self._undo.append(("attr", obj, name, getattr(obj, name, self._MISSING)))
        setattr(obj, name, value)

    def setenv(self, name: str, value: str | None) -> None:
        self._undo.append(("env", None, name, os.environ.get(name, self._MISSING)))
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

    def undo(self) -> None:
        while self._undo:
            kind, obj, name, old = self._undo.pop()
            if kind == "env":
                if old is self._MISSING:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = old
            elif old is self._MISSING:
                delattr(obj, name)
            else:
                setattr(obj, name, old)


@dataclass
class HubEnv:
    endpoint: str
    home: Path
    cache_dir: Path
    token: str


@contextlib.contextmanager
def hub_environment(endpoint: str, home: Path, *, token: str = DUMMY_TOKEN) -> Iterator[HubEnv]:
    """Point huggingface_hub (+ transformers, + datasets if imported) at `endpoint`, with a
    private HF_HOME, a dummy token and online mode; restore everything on exit.

    Works whether or not huggingface_hub/transformers were imported before (see module docstring).
    """
    from huggingface_hub import constants
    from huggingface_hub import hf_api as hf_api_module
    from huggingface_hub.utils import _http

    endpoint = endpoint.rstrip("/")
    home = Path(home)
    cache_dir = home / "hub"
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "HF_HOME": home,
        "HF_HUB_CACHE": cache_dir,
        "HUGGINGFACE_HUB_CACHE": cache_dir,
        "HF_ASSETS_CACHE": home / "assets",
        "HF_XET_CACHE": home / "xet",
        "HF_TOKEN_PATH": home / "token",
    }
    p = _Patcher()
    try:
        # 1. Environment: for code that reads it at call time (get_token) or imports later.
        for name, value in paths.items():
            p.setenv(name, str(value))
        p.setenv("HF_ENDPOINT", endpoint)
        p.setenv("HF_TOKEN", token)
        p.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        for name in (
            "HUGGING_FACE_HUB_TOKEN",
            "HF_OIDC_RESOURCE",
            "HUGGINGFACE_CO_STAGING",
            "HF_HUB_OFFLINE",
            "TRANSFORMERS_OFFLINE",
            "HF_DATASETS_OFFLINE",
        ):
            p.setenv(name, None)

        # 2. huggingface_hub.constants: read at call time by the library.
        for name, value in paths.items():
            p.setattr(constants, name, str(value))
        p.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
        p.setattr(constants, "AGENT_HARNESSES_PATH", str(home / ".agent_harnesses.json"))
        p.setattr(constants, "ENDPOINT", endpoint)
        p.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        p.setattr(constants, "HF_HUB_OFFLINE", False)
        p.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
        host = urlsplit(endpoint).hostname
        if isinstance(getattr(constants, "HF_URL_HOSTS", None), frozenset) and host:
            p.setattr(constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {host})
        if isinstance(getattr(_http, "_HUB_ORIGINS", None), frozenset) and hasattr(_http, "_url_origin"):
            p.setattr(_http, "_HUB_ORIGINS", _http._HUB_ORIGINS | {_http._url_origin(endpoint)})

        # 3. Values captured at import time.
        p.setattr(hf_api_module.api, "endpoint", endpoint)
        cache_manager = sys.modules.get("huggingface_hub.utils._cache_manager")
        if cache_manager is not None and hasattr(cache_manager, "HF_HUB_CACHE"):
            p.setattr(cache_manager, "HF_HUB_CACHE", str(cache_dir))
        cache_assets = sys.modules.get("huggingface_hub.utils._cache_assets")
        if cache_assets is not None and hasattr(cache_assets, "HF_ASSETS_CACHE"):
            p.setattr(cache_assets, "HF_ASSETS_CACHE", str(paths["HF_ASSETS_CACHE"]))
        tf_hub = sys.modules.get("transformers.utils.hub")
        if tf_hub is not None and hasattr(tf_hub, "_hf_api"):
            p.setattr(tf_hub, "_hf_api", None)  # rebuilt lazily with the patched endpoint
        ds_config = sys.modules.get("datasets.config")
        if ds_config is not None:
            p.setattr(ds_config, "HF_ENDPOINT", endpoint)
            p.setattr(ds_config, "HUB_DATASETS_URL", endpoint + "/datasets/{repo_id}/resolve/{revision}/{path}")
            p.setattr(ds_config, "HF_HUB_OFFLINE", False)
            p.setattr(ds_config, "HF_DATASETS_OFFLINE", False)
        yield HubEnv(endpoint=endpoint, home=home, cache_dir=cache_dir, token=token)
    finally:
        p.undo()


@contextlib.contextmanager
def hub_offline(offline: bool = True) -> Iterator[None]:
    """Flip huggingface_hub's (and so transformers') offline mode for the duration of the block.

    ``HF_HUB_OFFLINE`` is read once at import into ``constants.HF_HUB_OFFLINE``; both
    ``huggingface_hub.is_offline_mode()`` (used by transformers' ``cached_files`` and
    ``from_pretrained``) and the HTTP request hook (raises ``OfflineModeIsEnabled``) read that
    constant at call time, so patching it is sufficient. The env var is set too for subprocesses.
    """
    from huggingface_hub import constants

    p = _Patcher()
    try:
        p.setattr(constants, "HF_HUB_OFFLINE", offline)
        p.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
        ds_config = sys.modules.get("datasets.config")
        if ds_config is not None:
            p.setattr(ds_config, "HF_HUB_OFFLINE", offline)
            p.setattr(ds_config, "HF_DATASETS_OFFLINE", offline)
        yield
    finally:
        p.undo()


@contextlib.contextmanager
def start_local_hub(
    base_dir: Path, *, token: str = DUMMY_TOKEN, username: str = DEFAULT_USERNAME
) -> Iterator[LocalHub]:
    """Serve a LocalHub from ``base_dir/hub_storage`` and point the clients at it, with
    ``HF_HOME=base_dir/hf_home``. Yields the hub (``hub.url``, ``hub.cache_dir``, ``hub.home``,
    ``hub.token`` are set)."""
    base_dir = Path(base_dir)
    with LocalHub(base_dir / "hub_storage", username=username) as hub:
        with hub_environment(hub.url, base_dir / "hf_home", token=token) as env:
            hub.home, hub.cache_dir, hub.token = env.home, env.cache_dir, env.token
            yield hub


try:  # the pytest fixture, registered by `pytest_plugins = ["hub_server"]` in conftest.py
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

if pytest is not None:

    @pytest.fixture
    def local_hub(tmp_path: Path) -> Iterator[LocalHub]:
        """A running LocalHub with huggingface_hub/transformers pointed at it (function scope)."""
        with start_local_hub(tmp_path / "local_hub") as hub:
            yield hub
