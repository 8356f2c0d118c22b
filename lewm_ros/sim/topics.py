"""The topics a simulated world offers, with their types and QoS: ``sim_node`` publishes them and
``lewm-collect`` records them, so live and collected data look the same to ingest and to ``ros2 bag play``."""

from lewm_ros.data.bags import LATCHED, TopicQos

SIM_TOPICS = {
    'image': ('sensor_msgs/msg/Image', TopicQos()),
    'goal_image': ('sensor_msgs/msg/Image', LATCHED),  # latched: a planner started later still gets the goal
    'state': ('std_msgs/msg/Float64MultiArray', TopicQos()),
    'success': ('std_msgs/msg/Bool', TopicQos()),
    'joint_states': ('sensor_msgs/msg/JointState', TopicQos()),
}
COMMAND_QOS = TopicQos()  # the command subscription (and the planner's publisher)
