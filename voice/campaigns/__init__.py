"""Outbound campaigns: a contact list called within calling hours, paced, retried, with results per contact.

rules.py holds what a campaign's settings mean (windows, retries, zones, what each hangup cause
does), models.py the tables, contacts.py the import, service.py what the API and the CLI do,
dispatch.py what the worker does (claim, dial, settle), progress.py what a call played and what
the callee pressed.
"""
