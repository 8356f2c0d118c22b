"""rosbag2 reading/writing, image decoding, training cache and clip sampling (no ROS runtime).

Modules, in data-flow order:
  images   image_to_rgb, resize_rgb(_batch), rgb_to_image_fields, encode_compressed
  actions  ActionSpec, action_from_message, ActionStats (normalisation that travels with a checkpoint)
  bags     BagReader, BagWriter (sqlite3 / mcap through rosbags), BagError
  align    control-grid alignment of frames, commands and states
  ingest   ingest() and the lewm-ingest command: bags -> cache
  cache    the cache format (CacheWriter, TrainingCache)
  clips    ClipDataset: training clips with action blocks, split by episode
"""
