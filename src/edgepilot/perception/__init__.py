"""What a device's screen holds: observations, UI nodes, tree readers.

Knows nothing of the agent, the models or the devices.
"""

from edgepilot.perception.types import Bounds, Observation, UINode, describe

__all__ = ["Bounds", "Observation", "UINode", "describe"]
