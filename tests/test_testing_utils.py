"""Proves tests/hub_server.py speaks enough of the Hub API for the *real* huggingface_hub and
transformers clients: create/upload/commit/download/snapshot/offline, and a push_to_hub +
from_pretrained round trip of a tiny CLIPModel.

huggingface_hub is imported at collection time on purpose (as other test modules do through
transformers): the fixture must work without HF_ENDPOINT being set before the import.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hub_server import hub_offline, start_local_hub  # the local_hub fixture comes from conftest's pytest_plugins
from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors.numpy import load_file, save_file

REPO = "user/demo"


def _make_folder(path: Path, value: int = 1) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"hidden_size": 4, "value": value}))
    save_file({"weight": np.arange(6, dtype=np.float32).reshape(2, 3) * value}, str(path / "model.safetensors"))
    return path


def test_create_repo_and_repo_info(local_hub):
    api = HfApi()
    assert api.endpoint == local_hub.url
    url = api.create_repo(REPO)
    assert url.repo_id == REPO and url.startswith(local_hub.url)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(REPO)
    assert err.value.response.status_code == 409
    assert api.create_repo(REPO, exist_ok=True).repo_id == REPO

    info = api.repo_info(REPO)
    assert len(info.sha) == 40 and info.sha == local_hub.head(REPO)
    assert [s.rfilename for s in info.siblings] == [".gitattributes"]  # the Hub's initial commit
    assert api.repo_exists(REPO) and not api.repo_exists("user/missing")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("user/missing", "config.json")


def test_upload_folder_download_snapshot(local_hub, tmp_path):
    api = HfApi()
    api.create_repo(REPO)
    src = _make_folder(tmp_path / "src")
    commit = api.upload_folder(repo_id=REPO, folder_path=src, commit_message="add model")
    assert commit.oid == local_hub.head(REPO)

    # hf_hub_download into a fresh cache dir (and into the default, patched one)
    fresh = tmp_path / "fresh_cache"
    cfg = hf_hub_download(REPO, "config.json", cache_dir=fresh)
    assert Path(cfg).is_relative_to(fresh) and f"snapshots/{commit.oid}" in cfg
    assert json.loads(Path(cfg).read_text())["value"] == 1
    weights = hf_hub_download(REPO, "model.safetensors")
    assert Path(weights).is_relative_to(local_hub.cache_dir)
    np.testing.assert_array_equal(load_file(weights)["weight"], np.arange(6, dtype=np.float32).reshape(2, 3))

    snap = Path(snapshot_download(REPO, cache_dir=tmp_path / "snap_cache"))
    assert snap.name == commit.oid
    assert sorted(p.name for p in snap.iterdir()) == [".gitattributes", "config.json", "model.safetensors"]
    assert (snap / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()

    assert api.file_exists(REPO, "config.json") is True
    assert api.file_exists(REPO, "nope.json") is False
    info = api.repo_info(REPO, files_metadata=True)
    sizes = {s.rfilename: s.size for s in info.siblings}
    assert sizes["model.safetensors"] == (src / "model.safetensors").stat().st_size
    assert info.last_modified is not None
    assert sorted(f.path for f in api.list_repo_tree(REPO)) == [".gitattributes", "config.json", "model.safetensors"]

    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "nope.json", cache_dir=fresh)
    # the EntryNotFound 404 carries X-Repo-Commit, so the client cached the non-existence
    assert (fresh / "models--user--demo" / ".no_exist" / commit.oid / "nope.json").exists()
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="no-such-branch", cache_dir=fresh)
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(REPO, path_in_repo="no/such/dir"))
    assert local_hub.unhandled == []


def test_second_commit_upload_file_and_history(local_hub, tmp_path):
    api = HfApi()
    api.create_repo(REPO)
    first = api.upload_folder(repo_id=REPO, folder_path=_make_folder(tmp_path / "v1", value=1)).oid
    old_cfg = hf_hub_download(REPO, "config.json")

    second = api.upload_file(
        path_or_fileobj=json.dumps({"hidden_size": 4, "value": 2}).encode(),
        path_in_repo="config.json",
        repo_id=REPO,
        commit_message="bump value",
    ).oid
    assert second != first and second == local_hub.head(REPO)

    new_cfg = hf_hub_download(REPO, "config.json")  # "main" now resolves to the new commit
    assert json.loads(Path(new_cfg).read_text())["value"] == 2
    assert f"snapshots/{second}" in new_cfg
    assert json.loads(Path(old_cfg).read_text())["value"] == 1  # old snapshot untouched
    pinned = hf_hub_download(REPO, "config.json", revision=first, cache_dir=tmp_path / "pinned")
    assert json.loads(Path(pinned).read_text())["value"] == 1
    # unchanged file is shared between snapshots (same blob)
    w1 = hf_hub_download(REPO, "model.safetensors", revision=first)
    w2 = hf_hub_download(REPO, "model.safetensors")
    assert os.path.realpath(w1) == os.path.realpath(w2)

    # nested path + same-content re-upload: the preupload `oid` lets the client skip the no-op commit
    api.upload_file(path_or_fileobj=b"hello", path_in_repo="docs/notes.txt", repo_id=REPO)
    third = local_hub.head(REPO)
    again = api.upload_file(path_or_fileobj=b"hello", path_in_repo="docs/notes.txt", repo_id=REPO)
    assert again.oid == third == local_hub.head(REPO)
    assert [f.path for f in api.list_repo_tree(REPO, path_in_repo="docs")] == ["docs/notes.txt"]

    api.delete_file("docs/notes.txt", repo_id=REPO)
    assert not api.file_exists(REPO, "docs/notes.txt")
    assert api.file_exists(REPO, "docs/notes.txt", revision=third)
    titles = [c.title for c in api.list_repo_commits(REPO)]
    assert titles[:2] == ["Delete docs/notes.txt with huggingface_hub", "Upload docs/notes.txt with huggingface_hub"]
    assert titles[2:] == ["bump value", "Upload folder using huggingface_hub", "initial commit"]
    assert local_hub.unhandled == []


def test_offline_mode_serves_from_cache(local_hub, tmp_path):
    api = HfApi()
    api.create_repo(REPO)
    api.upload_folder(repo_id=REPO, folder_path=_make_folder(tmp_path / "src"))
    online = hf_hub_download(REPO, "config.json")
    snap = snapshot_download(REPO)

    n_requests = len(local_hub.requests)
    with hub_offline():
        assert constants.HF_HUB_OFFLINE is True
        assert hf_hub_download(REPO, "config.json") == online
        assert snapshot_download(REPO) == snap
        with pytest.raises(LocalEntryNotFoundError):
            hf_hub_download(REPO, "config.json", cache_dir=tmp_path / "empty_cache")
    assert len(local_hub.requests) == n_requests  # nothing reached the server
    assert constants.HF_HUB_OFFLINE is False


def test_dataset_repo(local_hub):
    api = HfApi()
    api.create_repo("user/points", repo_type="dataset")
    api.upload_file(
        path_or_fileobj=b"x,y\n1,2\n", path_in_repo="data/train.csv", repo_id="user/points", repo_type="dataset"
    )
    path = hf_hub_download("user/points", "data/train.csv", repo_type="dataset")
    assert Path(path).read_bytes() == b"x,y\n1,2\n" and "datasets--user--points" in path
    assert not api.repo_exists("user/points")  # a model of that name does not exist
    assert api.file_exists("user/points", "data/train.csv", repo_type="dataset")


def test_environment_is_restored(tmp_path):
    import huggingface_hub

    before = (
        constants.ENDPOINT,
        constants.HUGGINGFACE_CO_URL_TEMPLATE,
        constants.HF_HUB_CACHE,
        constants.HF_HUB_OFFLINE,
        huggingface_hub.hf_api.api.endpoint,
        os.environ.get("HF_TOKEN"),
    )
    with start_local_hub(tmp_path) as hub:
        assert constants.ENDPOINT == hub.url == huggingface_hub.hf_api.api.endpoint
        assert constants.HF_HUB_CACHE == str(hub.cache_dir)
        assert os.environ["HF_TOKEN"] == hub.token
        assert huggingface_hub.get_token() == hub.token
        url = hub.url
    after = (
        constants.ENDPOINT,
        constants.HUGGINGFACE_CO_URL_TEMPLATE,
        constants.HF_HUB_CACHE,
        constants.HF_HUB_OFFLINE,
        huggingface_hub.hf_api.api.endpoint,
        os.environ.get("HF_TOKEN"),
    )
    assert after == before
    import httpx2  # the server is really gone: bounded lifetime

    with pytest.raises(httpx2.ConnectError):
        httpx2.get(url + "/api/whoami-v2", timeout=2)


def test_transformers_push_to_hub_from_pretrained(local_hub, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

    from pointclip_hf.testing_utils import build_tiny_clip

    model = build_tiny_clip()
    model.push_to_hub("user/tiny-clip")

    files = sorted(f.path for f in HfApi().list_repo_tree("user/tiny-clip"))
    assert {"config.json", "model.safetensors", "README.md"} <= set(files)

    fresh = tmp_path / "fresh_cache"
    reloaded = transformers.CLIPModel.from_pretrained("user/tiny-clip", cache_dir=fresh).eval()
    expected = model.state_dict()
    got = reloaded.state_dict()
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)

    # reload with offline mode on: served from that cache, no request reaches the server
    n_requests = len(local_hub.requests)
    with hub_offline():
        offline = transformers.CLIPModel.from_pretrained("user/tiny-clip", cache_dir=fresh)
    assert len(local_hub.requests) == n_requests
    torch.testing.assert_close(offline.text_projection.weight, model.text_projection.weight, rtol=0, atol=0)
    assert local_hub.unhandled == []
