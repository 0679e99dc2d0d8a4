"""The `"point-cloud-zero-shot-classification"` pipeline: `pipe(cloud, candidate_labels=[...])`."""

from transformers import Pipeline

from .modeling_pointclip import scores_to_predictions
from .prompts import check_labels


class PointCloudZeroShotClassificationPipeline(Pipeline):
    """
    Classify point clouds against any labels with a [`PointCLIPModel`].

    `pipe(cloud, candidate_labels=["chair", "table"], top_k=None)` returns a list of `{"label", "score"}` sorted by
    score; `pipe([cloud_a, cloud_b], ...)` one such list per cloud. A cloud is an `[N, 3+]` array or tensor, or a file
    path. Models with a trained adapter default to their own `config.label_names`.
    """

    _load_processor = False
    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False

    def _sanitize_parameters(self, candidate_labels=None, top_k=None, **kwargs):
        preprocess_params = {} if candidate_labels is None else {"candidate_labels": candidate_labels}
        postprocess_params = {} if top_k is None else {"top_k": top_k}
        return preprocess_params, {}, postprocess_params

    @property
    def point_clip_processor(self):
        return self.processor if self.processor is not None else self.model.processor

    def preprocess(self, point_cloud, candidate_labels=None):
        labels = check_labels(candidate_labels if candidate_labels is not None else self.model.config.label_names or [])
        pixel_values = self.point_clip_processor.feature_extractor(point_cloud)["pixel_values"]
        return {"pixel_values": pixel_values, "candidate_labels": labels}

    def _forward(self, model_inputs):
        labels = model_inputs["candidate_labels"]
        text_embeds = self.model.get_label_embeddings(labels, self.point_clip_processor)
        logits = self.model(pixel_values=model_inputs["pixel_values"], text_embeds=text_embeds).logits
        return {"logits": logits, "candidate_labels": labels}

    def postprocess(self, model_outputs, top_k=None):
        return scores_to_predictions(model_outputs["logits"], model_outputs["candidate_labels"], top_k)[0]
