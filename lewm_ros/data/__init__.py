"""rosbag2 reading/writing, image decoding, training cache and clip sampling (no ROS runtime)."""
