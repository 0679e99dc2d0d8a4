"""`pointclip push FOLDER REPO`: upload a trained folder (adapter, configs, model card) to the Hub."""

import json
import os


def add_parser(commands) -> None:
    command = commands.add_parser("push", help="upload a trained folder (adapter, configs, model card) to the Hub")
    command.add_argument("folder", help="a folder written by `pointclip train` or `save_pretrained`")
    command.add_argument("repo", help="the Hub repo, user/name (created when needed)")
    command.add_argument("--private", action="store_true", help="create the repo private")
    command.add_argument("--revision", help="the branch to push to (created when needed; default: main)")
    command.add_argument("--token", help="a Hub token (default: the one `hf auth login` stored, or HF_TOKEN)")
    command.add_argument("--commit-message", help="the commit message (default: one naming the model)")
    command.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    command.set_defaults(run=run)


def run(args) -> int:
    from ..model.modeling_pointclip import PointCLIPModel

    model = PointCLIPModel.from_pretrained(args.folder)  # loads and checks the adapter against its base CLIP
    card = {}
    for name, key in (("training_result.json", "training"), ("report.json", "evaluation")):
        path = os.path.join(args.folder, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                card[key] = json.load(handle)
    commit = model.push_to_hub(args.repo, private=args.private, revision=args.revision, token=args.token,
                               commit_message=args.commit_message, create_pr=args.create_pr, **card)  # fmt: skip
    print(f"pushed {args.folder} to {getattr(commit, 'pr_url', None) or commit.repo_url}")
    return 0
