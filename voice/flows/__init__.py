"""Call flows as data: the model (document), its checks (checks), answering a callback (ivr), AT's XML (voicexml)."""

from voice.flows.checks import check_document, load
from voice.flows.document import FlowError, media_urls

__all__ = ["FlowError", "check_document", "load", "media_urls"]
