"""Recordings kept: AT's recording links copied by the worker, stored, played back (docs/recordings.md)."""
