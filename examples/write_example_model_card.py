"""Write the repository's example model card (`model_cards/pointclip_adapter.md`): the card of a hypothetical 16-shot
ModelNet40 adapter on ViT-B/16. No weights are built or downloaded, and no evaluation figures are invented.

Usage::

    python examples/write_example_model_card.py [model_cards/pointclip_adapter.md]
"""

import sys

from huggingface_hub import ModelCard
from transformers import CLIPConfig

from pointclip_hf import PointCLIPConfig, TrainingConfig, build_model_card
from pointclip_hf.data.schema import MODELNET40_CLASSES

EXAMPLE_REPO_ID = "your-username/pointclip-vit-b16-modelnet40-16shot"
VIT_B16_TEXT = {"hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 8}
VIT_B16_VISION = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "patch_size": 16,
    "image_size": 224,
}


def example_model_card() -> ModelCard:
    """The card of a 16-shot ModelNet40 inter-view adapter on `openai/clip-vit-base-patch16`, PointCLIP's recipe."""
    config = PointCLIPConfig(
        clip_config=CLIPConfig(text_config=VIT_B16_TEXT, vision_config=VIT_B16_VISION, projection_dim=512),
        clip_model_name_or_path="openai/clip-vit-base-patch16",
        projection_style="pointclip_v1_fewshot",
        use_adapter=True,
        label_names=list(MODELNET40_CLASSES),
    )
    return build_model_card(
        config, training=TrainingConfig().to_dict(), dataset_name="modelnet40", shots=16, repo_id=EXAMPLE_REPO_ID
    )


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "model_cards/pointclip_adapter.md"
    example_model_card().save(target)
    print(f"Wrote {target}")
