"""The exported model's interface: signature names, their inputs and outputs, as clients and TFMA see them."""

SERVING_DEFAULT = "serving_default"  # `images`: encoded PNG/JPEG bytes -> probability, abnormal
SERVING_EXAMPLES = "serving_examples"  # `examples`: serialized tf.Example -> probability, abnormal
IMAGES_INPUT = "images"
EXAMPLES_INPUT = "examples"
PROBABILITY = "probability"
ABNORMAL = "abnormal"
