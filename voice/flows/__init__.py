"""Call flows as data: a YAML file of named steps (document), answering a callback from it (ivr), AT's XML (voicexml)."""

from voice.flows.document import FlowError, check_document, load, media_urls

__all__ = ["FlowError", "check_document", "load", "media_urls"]
