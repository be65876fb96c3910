"""Survey adapters: raw alert packets (bytes) in, the internal tables out (docs/architecture.md).

``decode_batch`` decodes a micro-batch of any mix of known surveys; ``SurveyAdapter`` is what a survey
implements (``surveys.ztf`` is the first); ``SurveyRegistry`` finds each packet's adapter.
"""

from alert_broker.surveys.adapter import SurveyAdapter, SurveyBatch, SurveyInfo
from alert_broker.surveys.decode import DecodedBatch, decode_batch, read_packet
from alert_broker.surveys.errors import PacketError
from alert_broker.surveys.messages import DeadLetter, RawMessage, dead_letters_frame
from alert_broker.surveys.registry import ADAPTERS, DEFAULT_REGISTRY, SurveyRegistry, registry_for

__all__ = [
    "ADAPTERS",
    "DEFAULT_REGISTRY",
    "DeadLetter",
    "DecodedBatch",
    "PacketError",
    "RawMessage",
    "SurveyAdapter",
    "SurveyBatch",
    "SurveyInfo",
    "SurveyRegistry",
    "dead_letters_frame",
    "decode_batch",
    "read_packet",
    "registry_for",
]
