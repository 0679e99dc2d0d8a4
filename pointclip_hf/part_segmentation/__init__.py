"""Zero-shot part segmentation tooling around [`PointCLIPForZeroShotPartSegmentation`] (whose head lives with the model
files): the ShapeNetPart categories and part names (`presets`), per-part prompt libraries (`prompts`), pictures and
coloured PLY files (`visualization`), shape IoU (`iou`), evaluation on a labelled split (`evaluation`), the ShapeNetPart
h5 reader (`data`) and the view-weight and prompt searches (`search`)."""
