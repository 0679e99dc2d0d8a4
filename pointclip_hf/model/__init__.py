"""The model set: the classifier's files, which `save_pretrained` copies beside the weights (the auto-mapped files and
what they import), so that a Hub repo loads with `trust_remote_code=True` without this package; the part-segmentation
files, which import them; and `weights_fingerprint`, the content hashes resumable runs record. The copied files import
one another and nothing else from `pointclip_hf` (tests/test_hub_path.py checks)."""
