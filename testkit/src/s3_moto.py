"""Starts moto's S3 server with request authentication on, for the tests.

Run by testkit/src/s3.rs with the Python of the venv `cargo xtask setup`
makes (moto[server] 5.2.5). It binds 127.0.0.1 on a free port, creates an
IAM user with an access key allowed s3:* and a bucket, prints one JSON line
(endpoint, bucket, region, keys) on stdout, then serves until killed.

Why more than `moto_server`: with authentication on, moto 5.2.5 checks
requests signed in the Authorization header (an unknown key or a wrong
signature is refused) but fails with a 500 on any request without that
header, so presigned URLs (signed in the query string) cannot work at all.
This file teaches moto's IAM check the query-string form of AWS Signature
Version 4, as S3 verifies it: the signature over the method, path, query
and signed headers with the key's secret, the credential's date and scope,
and the expiry (X-Amz-Date + X-Amz-Expires). A request signed neither way
is refused as anonymous. Each presigned request it checks is logged on
stderr ("presigned METHOD PATH: ok" or the reason it was refused).
"""

import datetime
import hashlib
import hmac
import json
import os
import sys
import threading
import urllib.parse

# Three unauthenticated requests make the user, its key and its policy;
# every request after them must be signed. Read when moto is imported.
os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from moto.iam import access_control  # noqa: E402
from moto.moto_server.threaded_moto_server import ThreadedMotoServer  # noqa: E402
from moto.s3.exceptions import (  # noqa: E402
    S3AccessDeniedError,
    S3SignatureDoesNotMatchError,
)

REGION = "us-east-1"
MAX_EXPIRES = 7 * 24 * 3600


LOG_LOCK = threading.Lock()


def log(line):
    # One write per line: the server's threads log at once (print would
    # write the line and its newline apart).
    with LOG_LOCK:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def hmac_sha256(key, text):
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def aws_quote(text):
    return urllib.parse.quote(text, safe="-_.~")


def canonical_query(raw_query):
    pairs = []
    for part in raw_query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        name = urllib.parse.unquote(name)
        if name == "X-Amz-Signature":
            continue
        pairs.append((aws_quote(name), aws_quote(urllib.parse.unquote(value))))
    pairs.sort()
    return "&".join(f"{name}={value}" for name, value in pairs)


class Presigned:
    """The query-string signature of one request, checked against a secret."""

    def __init__(self, method, path, headers):
        split = urllib.parse.urlsplit(path)
        self.method = method
        self.path = split.path
        self.raw_query = split.query
        self.headers = headers
        query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        self.query = query
        if query.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
            raise ValueError("not signed with AWS4-HMAC-SHA256")
        scope = query.get("X-Amz-Credential", "").split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            raise ValueError("malformed X-Amz-Credential")
        self.access_key_id, self.date, self.region, self.service, _ = scope
        self.amz_date = query.get("X-Amz-Date", "")
        self.expires = query.get("X-Amz-Expires", "")
        self.signed_headers = query.get("X-Amz-SignedHeaders", "").split(";")
        self.signature = query.get("X-Amz-Signature", "")

    def problem(self, secret):
        """Why this request must be refused, or None."""
        try:
            signed_at = datetime.datetime.strptime(
                self.amz_date, "%Y%m%dT%H%M%SZ"
            ).replace(tzinfo=datetime.timezone.utc)
            expires = int(self.expires)
        except ValueError:
            return "malformed X-Amz-Date or X-Amz-Expires"
        if not 1 <= expires <= MAX_EXPIRES:
            return f"X-Amz-Expires {expires} out of range"
        if self.amz_date[:8] != self.date:
            return "the credential's date is not X-Amz-Date's"
        now = datetime.datetime.now(datetime.timezone.utc)
        if now > signed_at + datetime.timedelta(seconds=expires):
            return "expired"
        if "host" not in self.signed_headers:
            return "host is not signed"
        headers = ""
        for name in self.signed_headers:
            value = self.headers.get(name)
            if value is None:
                return f"signed header {name} missing"
            headers += f"{name}:{' '.join(value.split())}\n"
        canonical = "\n".join(
            [
                self.method,
                self.path,
                canonical_query(self.raw_query),
                headers,
                ";".join(self.signed_headers),
                "UNSIGNED-PAYLOAD",
            ]
        )
        scope = f"{self.date}/{self.region}/{self.service}/aws4_request"
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256",
                self.amz_date,
                scope,
                hashlib.sha256(canonical.encode()).hexdigest(),
            ]
        )
        key = ("AWS4" + secret).encode()
        for part in (self.date, self.region, self.service, "aws4_request"):
            key = hmac_sha256(key, part)
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, self.signature):
            return "signature does not match"
        return None


original_init = access_control.IAMRequestBase.__init__
original_check = access_control.IAMRequestBase.check_signature


def init(self, account_id, method, path, data, body, headers, action):
    if "Authorization" in headers:
        self._presigned = None
        original_init(self, account_id, method, path, data, body, headers, action)
        return
    if "X-Amz-Signature=" not in path:
        log(f"{method} {path}: refused: anonymous (signed neither way)")
        raise S3AccessDeniedError()
    try:
        presigned = Presigned(method, path, headers)
    except ValueError as e:
        log(f"presigned {method} {path}: refused: {e}")
        raise S3AccessDeniedError()
    self._presigned = presigned
    self.account_id = account_id
    self._method = method
    self._path = path
    self._data = data
    self._body = body
    self._headers = headers
    self._region = presigned.region
    self._service = presigned.service
    self._action = f"{presigned.service}:{action[0] if isinstance(action, list) else action}"
    try:
        self._access_key = access_control.create_access_key(
            account_id=account_id,
            partition="aws",
            access_key_id=presigned.access_key_id,
            headers=headers,
        )
    except access_control.CreateAccessKeyFailure as e:
        log(f"presigned {method} {path}: refused: unknown access key")
        self._raise_invalid_access_key(e.reason)


def check_signature(self):
    presigned = getattr(self, "_presigned", None)
    if presigned is None:
        original_check(self)
        return
    secret = self._access_key.create_credentials().secret_key
    problem = presigned.problem(secret)
    if problem is not None:
        log(f"presigned {presigned.method} {presigned.path}: refused: {problem}")
        if problem == "signature does not match":
            raise S3SignatureDoesNotMatchError()
        raise S3AccessDeniedError()
    log(f"presigned {presigned.method} {presigned.path}: ok")


access_control.IAMRequestBase.__init__ = init
access_control.IAMRequestBase.check_signature = check_signature


def main():
    bucket = sys.argv[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ["MOTO_PORT"] = str(port)
    unsigned = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
    iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION, **unsigned)
    iam.create_user(UserName="xene")
    key = iam.create_access_key(UserName="xene")["AccessKey"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
    iam.put_user_policy(
        UserName="xene", PolicyName="s3", PolicyDocument=json.dumps(policy)
    )
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
    )
    s3.create_bucket(Bucket=bucket)
    print(
        json.dumps(
            {
                "endpoint": endpoint,
                "bucket": bucket,
                "region": REGION,
                "access_key_id": key["AccessKeyId"],
                "secret_access_key": key["SecretAccessKey"],
            }
        ),
        flush=True,
    )
    log(f"moto S3 at {endpoint}, bucket {bucket}, authentication on")
    # Commands from the test on stdin; their end (the test is gone) ends
    # the server, so a crashed test leaves no moto behind.
    for line in sys.stdin:
        command = line.strip()
        if command == "list":
            print(json.dumps({"objects": list_objects(s3, bucket)}), flush=True)
        elif command.startswith("presign-put "):
            name = command.split(" ", 1)[1]
            url = s3.generate_presigned_url(
                "put_object", Params={"Bucket": bucket, "Key": name}, ExpiresIn=3600
            )
            print(json.dumps({"url": url}), flush=True)
        elif command == "self-check":
            self_check(endpoint, bucket, key)
            print(json.dumps({"self_check": "ok"}), flush=True)
        else:
            print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)


def list_objects(s3, bucket):
    """Every object of the bucket, as [key, size], through the signed API."""
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        objects += [[o["Key"], o["Size"]] for o in page.get("Contents", [])]
    return objects


def self_check(endpoint, bucket, key):
    """That authentication is on: what S3 accepts is accepted and what it
    refuses is refused, with URLs presigned by botocore's own signer."""
    import time

    import requests

    def client(secret):
        return boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=secret,
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
        )

    def expect(what, status, wanted):
        if status != wanted:
            raise AssertionError(f"{what}: status {status}, expected {wanted}")

    good = client(key["SecretAccessKey"])
    wrong = client("not-the-secret")
    good.put_object(Bucket=bucket, Key="check/a", Body=b"checked")
    try:
        wrong.get_object(Bucket=bucket, Key="check/a")
        raise AssertionError("a request signed with a wrong secret was accepted")
    except wrong.exceptions.ClientError:
        pass
    get = good.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "check/a"}, ExpiresIn=600
    )
    response = requests.get(get)
    expect("presigned GET", response.status_code, 200)
    if response.content != b"checked":
        raise AssertionError("presigned GET gave other bytes")
    expect("another key", requests.get(get.replace("check/a?", "check/b?")).status_code, 403)
    expect("tampered", requests.get(get[:-4] + "0000").status_code, 403)
    expect("longer expiry", requests.get(get.replace("Expires=600", "Expires=6000")).status_code, 403)
    expect("GET's URL for a PUT", requests.put(get, data=b"x").status_code, 403)
    forged = wrong.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "check/a"}, ExpiresIn=600
    )
    expect("wrong secret", requests.get(forged).status_code, 403)
    expect("anonymous GET", requests.get(f"{endpoint}/{bucket}/check/a").status_code, 403)
    expect("anonymous PUT", requests.put(f"{endpoint}/{bucket}/check/c", data=b"x").status_code, 403)
    put = good.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "check/b"}, ExpiresIn=600
    )
    expect("presigned PUT", requests.put(put, data=b"put").status_code, 200)
    short = good.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "check/a"}, ExpiresIn=1
    )
    time.sleep(2.1)
    expect("expired", requests.get(short).status_code, 403)
    for name in ("check/a", "check/b"):
        good.delete_object(Bucket=bucket, Key=name)


if __name__ == "__main__":
    main()
