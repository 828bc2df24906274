"""The compute payload: jobs that run models on tiles, persisted, checkpointed, power-governed.

    payload = Payload(config.payload, state_dir=config.node.state_dir)
    node = Node(config, components=[(17, payload)])
    job_id = payload.submit_job(sha256, "scene.npy", priority=5, deadline_tai_s=t, value=1.0,
                                energy_estimate_j=50.0)

See docs/payload.md.
"""

from flight.payload.component import Payload
from flight.payload.jobs import JobRefused, JobState, JobStoreError, JobView, PayloadError
from flight.payload.models import ModelInfo, ModelRefused
from flight.payload.plan import PayloadPlan

PAYLOAD_COMPONENT_ID = 17
"""The payload's component id when a node hosts it."""

__all__ = [
    "PAYLOAD_COMPONENT_ID",
    "JobRefused",
    "JobState",
    "JobStoreError",
    "JobView",
    "ModelInfo",
    "ModelRefused",
    "Payload",
    "PayloadError",
    "PayloadPlan",
]
