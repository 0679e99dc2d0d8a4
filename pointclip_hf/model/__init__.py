"""The model set: the files `save_pretrained` copies beside the weights, so that a Hub repo loads with
`trust_remote_code=True` without this package. They import one another and nothing else from `pointclip_hf`
(tests/test_hub_path.py checks)."""
