"""planner_node's pictures for a person: ``~/debug_image`` and ``~/imagined`` (lewm_ros.planning.views draws them).

Each is drawn once per plan and only while it has a subscriber (nothing is decoded or drawn for nobody), with
the header stamp of the camera frame the plan answered, so a viewer can line it up with the camera.
"""

import time

from sensor_msgs.msg import Image

from lewm_ros.nodes.conversions import rgb_to_image_msg
from lewm_ros.planning.views import debug_view, imagined_strip

NO_DECODER = ('this checkpoint has no frame decoder: ~/imagined stays empty (train one with lewm-train '
              'decoder.init_from=CHECKPOINT)')


class PlanViews:
    def __init__(self, node):
        self.node = node
        self.debug_pub = node.create_publisher(Image, '~/debug_image', 1)
        self.imagined_pub = node.create_publisher(Image, '~/imagined', 1)
        self.publishers = (self.debug_pub, self.imagined_pub)

    def publish(self, plan, request, loop, goal_image, decoder) -> None:
        """The views of ``plan``, made for ``request`` by ``loop``'s MPC, towards ``goal_image`` (S, S, 3)."""
        stamp = request.stamp
        if not isinstance(stamp, tuple):  # the warm-up plan
            return
        stamp_ns = stamp[0] * 10**9 + stamp[1]
        if self.debug_pub.get_subscription_count():
            status = loop.status(time.monotonic())
            distance = 'none' if plan.goal_distance is None else f'{plan.goal_distance:.3g}'
            lines = [f'cost {plan.cost:.3g}   goal distance {distance}   plan {plan.seconds * 1000:.0f} ms   '
                     f'frame age {status.frame_age_s * 1000:.0f} ms', f'{status.episode}: {status.state}']
            self.debug_pub.publish(rgb_to_image_msg(debug_view(request.frames[-1], goal_image, lines), stamp_ns))
        if self.imagined_pub.get_subscription_count():
            if decoder is None:
                self.node.warn(NO_DECODER, every=float('inf'))
                return
            frames = decoder.frames(loop.mpc.imagine(request, plan)).cpu().numpy()  # (H, S, S, 3)
            self.imagined_pub.publish(rgb_to_image_msg(imagined_strip(frames), stamp_ns))
