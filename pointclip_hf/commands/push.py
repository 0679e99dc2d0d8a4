"""`pointclip push FOLDER REPO`: upload a trained folder (adapter, configs, model card) to the Hub."""

import json
import os


def add_parser(commands) -> None:
    command = commands.add_parser("push", help="upload a trained folder (adapter, configs, model card) to the Hub")
    command.add_argument("folder")
    command.add_argument("repo")
    command.add_argument("--private", action="store_true")
    command.set_defaults(run=run)


def run(args) -> int:
    from ..modeling_pointclip import PointCLIPModel

    model = PointCLIPModel.from_pretrained(args.folder)  # loads and checks the adapter against its base CLIP
    card = {}
    for name, key in (("training_result.json", "training"), ("report.json", "evaluation")):
        path = os.path.join(args.folder, name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                card[key] = json.load(handle)
    commit = model.push_to_hub(args.repo, private=args.private, **card)
    print(f"pushed {args.folder} to {commit.repo_url}")
    return 0
