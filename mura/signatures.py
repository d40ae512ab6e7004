"""The exported model's interface: signature names, their inputs and outputs, as clients and TFMA see them."""

SERVING_DEFAULT = "serving_default"  # `images`: encoded PNG/JPEG bytes -> probability, abnormal, threshold (global)
SERVING_EXAMPLES = "serving_examples"  # `examples`: serialized tf.Example -> the same, at the example's body part's
SERVING_BODY_PART = "serving_body_part"  # `images` and each image's `body_parts` -> the same, at each part's
SERVING_STUDY = "serving_study"  # one study's `images` and its `body_part` -> the study's probability and verdict
IMAGES_INPUT = "images"
EXAMPLES_INPUT = "examples"
BODY_PARTS_INPUT = "body_parts"  # [None]: one body part per image ("" or an unknown part: the global threshold)
BODY_PART_INPUT = "body_part"  # []: the study's body part ("" or an unknown part: the global threshold)
PROBABILITY = "probability"  # calibrated; for a study, the mean of its images'
ABNORMAL = "abnormal"  # the probability above the threshold, 0 or 1
THRESHOLD = "threshold"  # the threshold the model applied (its body part's, or the global one)
UNCALIBRATED_PROBABILITY = "uncalibrated_probability"  # the network's own sigmoid, before calibration
IMAGE_PROBABILITIES = "image_probabilities"  # serving_study: each image's calibrated probability
# TF Serving replays the requests in this file of a version folder when it loads it (`--enable_model_warmup`).
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
# The calibration and the operating points the graph holds, and how they were chosen, as JSON for readers.
MODEL_FACTS_FILE = "assets.extra/model_facts.json"
