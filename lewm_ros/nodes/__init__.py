"""rclpy nodes: thin shells over the ROS-free core."""
