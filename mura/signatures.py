"""The exported model's interface: signature names, their inputs and outputs, as clients and TFMA see them."""

SERVING_DEFAULT = "serving_default"  # `images`: encoded PNG/JPEG bytes -> probability, abnormal, threshold
SERVING_EXAMPLES = "serving_examples"  # `examples`: serialized tf.Example -> the same
IMAGES_INPUT = "images"
EXAMPLES_INPUT = "examples"
PROBABILITY = "probability"
ABNORMAL = "abnormal"  # the probability above the model's threshold, 0 or 1
THRESHOLD = "threshold"  # the threshold the model applies, so clients need not know it
# `images` of one study and its `body_part` (a scalar) -> the study's probability (the mean of its images'),
# abnormal and threshold (that part's operating point; "" or an unknown part: the global one), image_probabilities
SERVING_STUDY = "serving_study"
BODY_PART_INPUT = "body_part"
IMAGE_PROBABILITIES = "image_probabilities"
# TF Serving replays the requests in this file of a version folder when it loads it (`--enable_model_warmup`).
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
