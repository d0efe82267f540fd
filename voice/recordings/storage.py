"""Where the copies are kept: a folder on local disk (the default), or an S3-compatible bucket.

The folder is VOICE_RECORDINGS_DIR, else `recordings/` in the instance folder. With
VOICE_RECORDINGS_S3_BUCKET set, copies go to that bucket instead (VOICE_RECORDINGS_S3_ENDPOINT_URL for
a service other than AWS, VOICE_RECORDINGS_S3_REGION, and the key pair, or boto3's own chain of
credentials when they are empty). The store is built once per app, when first used, and kept in
app.extensions; every failure of the disk or of S3 becomes a StorageError.
"""

import os
import threading

from flask import Response, current_app, request, send_file

_building = threading.Lock()


class StorageError(Exception):
    """The store failed (the disk, S3's answer, S3 unreachable)."""


class NotStored(StorageError):
    """No copy is kept under that name."""


def key_for(session_id, n, extension):
    """The name a recording is kept under: its call's sessionId and its number (a sessionId holds no `/`)."""
    return f"{session_id}-{n}{extension}"


class LocalStore:
    """Copies in a folder on this host's disk."""

    def __init__(self, folder):
        self.folder = folder

    def _path(self, key):
        return os.path.join(self.folder, key)

    def put(self, key, path, content_type):
        """Keep the file at `path` (a temporary file of ours, moved in) under `key`."""
        try:
            os.makedirs(self.folder, exist_ok=True)
            os.replace(path, self._path(key))
        except OSError as exc:
            raise StorageError(f"cannot store the recording: {exc.strerror}") from None

    def delete(self, key):
        """Remove the copy kept under `key`; nothing if there is none."""
        try:
            os.remove(self._path(key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(f"cannot remove the recording: {exc.strerror}") from None

    def exists(self, key):
        """True when a copy is kept under `key`."""
        return os.path.isfile(self._path(key))

    def scratch(self):
        """A folder for a download in progress, on the same disk as the copies (so moving one in is a rename)."""
        folder = os.path.join(self.folder, ".partial")
        os.makedirs(folder, exist_ok=True)
        return folder

    def response(self, key, size, content_type, etag):
        """The copy as an HTTP response that honours Range (206, 416) and conditional requests."""
        path = self._path(key)
        if not os.path.isfile(path):
            raise NotStored(key)
        return send_file(path, mimetype=content_type, conditional=True, etag=etag, max_age=0)


class S3Store:
    """Copies in an S3-compatible bucket, through one boto3 client; botocore's errors become StorageError."""

    def __init__(self, client, bucket, scratch_folder):
        self.client, self.bucket, self.scratch_folder = client, bucket, scratch_folder

    def _call(self, operation, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise NotStored(kwargs.get("Key")) from None
            raise StorageError(f"S3 answered {code or 'an error'} to {operation}") from None
        except BotoCoreError as exc:
            raise StorageError(f"S3 could not be reached for {operation}: {type(exc).__name__}") from None

    def put(self, key, path, content_type):
        """Upload the file at `path` under `key`, then remove the local file."""
        try:
            with open(path, "rb") as file:
                self._call("put_object", Key=key, Body=file, ContentType=content_type)
        except OSError as exc:
            raise StorageError(f"cannot read the downloaded recording: {exc.strerror}") from None
        finally:
            _remove(path)

    def delete(self, key):
        """Remove the object `key` (S3 answers the same whether or not it existed)."""
        self._call("delete_object", Key=key)

    def exists(self, key):
        """True when an object is kept under `key`."""
        try:
            self._call("head_object", Key=key)
            return True
        except NotStored:
            return False

    def scratch(self):
        """A folder for a download in progress before it is uploaded."""
        os.makedirs(self.scratch_folder, exist_ok=True)
        return self.scratch_folder

    def response(self, key, size, content_type, etag):
        """The object streamed through as an HTTP response. werkzeug answers the request's conditions as it does for
        a local copy (If-None-Match 304, If-Match 412, If-Range, Range 206 or 416), with no body yet; then S3 is asked
        for the bytes that answer needs, the range only for a 206, nothing for a 304 or 412."""
        response = Response(mimetype=content_type)
        if etag:
            response.set_etag(etag)
        response.make_conditional(request, accept_ranges=True, complete_length=size)
        if response.status_code not in (200, 206):
            return response
        span = response.content_range if response.status_code == 206 else None
        options = {"Range": f"bytes={span.start}-{span.stop - 1}"} if span else {}
        answer = self._call("get_object", Key=key, **options)
        response.response, response.direct_passthrough = _chunks(answer["Body"]), True
        response.content_length = answer.get("ContentLength") or (span.stop - span.start if span else size)
        return response


def _chunks(body):
    """S3's streamed body in chunks, closed at the end (or when the client goes away)."""
    try:
        yield from body.iter_chunks(64 * 1024)
    finally:
        body.close()


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def store(app=None):
    """The app's store of recordings, built on first use."""
    app = app or current_app._get_current_object()
    found = app.extensions.get("voice_recordings_store")
    if found is None:
        with _building:
            found = app.extensions.get("voice_recordings_store") or _build(app)
            app.extensions["voice_recordings_store"] = found
    return found


def _build(app):
    config = app.config
    folder = config.get("VOICE_RECORDINGS_DIR") or os.path.join(app.instance_path, "recordings")
    if not config.get("VOICE_RECORDINGS_S3_BUCKET"):
        return LocalStore(folder)
    import boto3
    from botocore.config import Config

    options = {"endpoint_url": config.get("VOICE_RECORDINGS_S3_ENDPOINT_URL") or None,
               "region_name": config.get("VOICE_RECORDINGS_S3_REGION") or None,
               "config": Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3})}
    if config.get("VOICE_RECORDINGS_S3_ACCESS_KEY_ID"):
        options.update(aws_access_key_id=config["VOICE_RECORDINGS_S3_ACCESS_KEY_ID"],
                       aws_secret_access_key=config.get("VOICE_RECORDINGS_S3_SECRET_ACCESS_KEY") or None)
    client = boto3.session.Session().client("s3", **options)
    return S3Store(client, config["VOICE_RECORDINGS_S3_BUCKET"], os.path.join(folder, ".partial"))
