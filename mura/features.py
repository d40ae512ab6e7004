"""Names of the features in the pipeline's tf.Examples, shared by ingestion, schema, Transform and Trainer."""

IMAGE = "image"  # the original encoded PNG/JPEG bytes
LABEL = "label"  # 1 = abnormal
BODY_PART = "body_part"
PATIENT_ID = "patient_id"
STUDY_ID = "study_id"
IMAGE_INDEX = "image_index"
HEIGHT = "height"
WIDTH = "width"
CHANNELS = "channels"
SOURCE_PATH = "source_path"  # relative to the data root, as in MURA's CSVs

# Transformed features (Transform's output, the Trainer's input).
PIXELS = "pixels"  # uint8 [size, size, 1], serialized: compact and exactly what the model sees
LABEL_COUNTS_VOCABULARY = "label_counts"  # "<count> <body part>:<label>" per line, counted on train
