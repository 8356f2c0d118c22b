"""numpy -> rclpy message helpers shared by the nodes (the reverse direction lives in lewm_ros.data).

rclpy sequence fields reject numpy arrays and check Python lists element by element; array.array
is taken as is, which is what makes publishing 224 px images cheap.
"""

from array import array

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image
from std_msgs.msg import Float64MultiArray, Header

from lewm_ros.data.images import rgb_to_image_fields


def header(stamp: Time, frame_id: str = '') -> Header:
    return Header(stamp=stamp, frame_id=frame_id)


def rgb_to_image_msg(rgb: np.ndarray, stamp: Time, frame_id: str = '') -> Image:
    """An rgb8 sensor_msgs/Image of an (H, W, 3) uint8 array."""
    fields = rgb_to_image_fields(np.ascontiguousarray(rgb, dtype=np.uint8))
    fields['data'] = array('B', fields['data'].tobytes())
    return Image(header=header(stamp, frame_id), **fields)


def float_array_msg(values) -> Float64MultiArray:
    return Float64MultiArray(data=array('d', np.asarray(values, dtype=np.float64).tobytes()))
