"""moto's server, answering one request at a time.

`moto_server` serves requests on many threads, and its DynamoDB transactions roll back by
restoring a snapshot of every table, which loses or resurrects writes made by other threads in
the meantime. Real DynamoDB applies a transaction atomically; serving requests one by one gives
the tests that same guarantee, so they measure our code and not the emulator's races.
"""

import os
import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def skip_signature_check() -> None:
    """With IAM enforced (INITIAL_NO_AUTH_ACTION_COUNT), moto still identifies the caller by its
    access key and authorises every action, but no longer recomputes the SigV4 signature: it does
    so over a re-encoded form body and refuses valid Query-protocol requests (SNS Publish from the
    Rust SDK failed with SignatureDoesNotMatch), and it is permissions, not signing, that the
    Lambda tests check."""
    from moto.iam.access_control import IAMRequestBase

    IAMRequestBase.check_signature = lambda self: None


def presigned_as_signed(app):
    """A pre-signed URL carries its signature in the query string; moto's IAM check reads only the
    Authorization header (and fails on its absence). This gives such a request the header its
    query names, so moto authorises it as AWS does: as the user who signed the URL."""
    from urllib.parse import parse_qs

    def wrapped(environ, start_response):
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if "HTTP_AUTHORIZATION" not in environ and "X-Amz-Credential" in query:
            environ["HTTP_AUTHORIZATION"] = (
                "AWS4-HMAC-SHA256 Credential={}, SignedHeaders={}, Signature={}".format(
                    query["X-Amz-Credential"][0],
                    query.get("X-Amz-SignedHeaders", ["host"])[0],
                    query.get("X-Amz-Signature", [""])[0],
                )
            )
            environ.setdefault("HTTP_X_AMZ_DATE", query.get("X-Amz-Date", [""])[0])
        return app(environ, start_response)

    return wrapped


def delete_objects_authorised_per_key() -> None:
    """AWS authorises a multi-object delete per object: `s3:DeleteObject` on each key
    (https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html), so a role allowed
    to delete only under `pages/*` deletes its pages in one request. moto checks `s3:DeleteObject`
    once, on the bucket's ARN, and when that is refused fails every key with AccessDenied. This
    authorises each key as AWS does; a key its caller may not delete still fails."""
    import xmltodict
    from moto.core.responses import ActionResult
    from moto.s3.exceptions import MalformedXML, S3AccessDeniedError
    from moto.s3.responses import S3Response

    original = S3Response._bucket_response_delete_keys

    def delete_keys(self, bucket_name, authenticated=True):
        if authenticated:
            return original(self, bucket_name, authenticated)
        body = xmltodict.parse(self.body, strip_whitespace=False)
        objects = body["Delete"].get("Object", [])
        if not isinstance(objects, list):
            objects = [objects]
        if not objects:
            raise MalformedXML()
        allowed, errors = [], []
        for obj in objects:
            try:
                self._authenticate_and_authorize_s3_action(
                    bucket_name=bucket_name, key_name=obj["Key"]
                )
                allowed.append(obj)
            except S3AccessDeniedError:
                errors.append({"Key": obj["Key"], "Code": "AccessDenied", "Message": "Access Denied"})
        deleted, _ = self.backend.delete_objects(bucket_name, allowed, False) if allowed else ([], [])
        self.data["Action"] = "DeleteObjects"
        return self.serialized(
            ActionResult(
                {
                    "Deleted": [{"Key": key, "VersionId": version or None} for key, version, _ in deleted],
                    "Errors": errors,
                }
            )
        )

    S3Response._bucket_response_delete_keys = delete_keys


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    app = DomainDispatcherApplication(create_backend_app)
    if "INITIAL_NO_AUTH_ACTION_COUNT" in os.environ:
        skip_signature_check()
        delete_objects_authorised_per_key()
        app = presigned_as_signed(app)
    run_simple(host, port, app, threaded=False, use_reloader=False)


if __name__ == "__main__":
    main()
