"""Every magic number of the project, once."""

# Stored image size (docs/recipe.md, Augmentation): width 144, height 288. DEEN-style recipes
# use 384×144.
IMAGE_HEIGHT = 288
IMAGE_WIDTH = 144
# Bounds of a stored image side, in pixels (vireid-shard --width/--height, manifest checks).
# Below 16 the backbone (total stride 16) has no feature map left; above 2048 one decoded image
# takes over 12 MB and a build of a real dataset runs out of memory.
MIN_SIDE = 16
MAX_SIDE = 2048

# ImageNet statistics on [0, 1] pixels (docs/recipe.md, Augmentation).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Shard defaults.
JPEG_QUALITY = 95
SHARD_MAX_SAMPLES = 10_000
SHARD_MAX_MEGABYTES = 256.0
# Fixed tar member time: shards are byte-reproducible (STYLE habit 5).
TAR_MTIME = 0

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = "vireid.shards"
MANIFEST_VERSION = 1

# DALI's webdataset index format (as `wds2idx` writes it).
DALI_INDEX_VERSION = "v1.2"

# Number of single-shot trials of the SYSU-MM01 and LLCM protocols; RegDB has trials 1..10.
SINGLE_SHOT_TRIALS = 10
REGDB_TRIALS = tuple(range(1, 11))
