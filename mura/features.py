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
