"""Where generated images are kept: each under the project that made it, with its metadata
(model, size, format, bytes, created, expires), so that every gateway sharing the store sees the
same images. Two stores: files under the data dir (`LocalImageStore`, the default; private files
in private directories) and an S3-compatible bucket (`S3ImageStore`, boto3; its blocking calls
run on threads, never on the event loop). An expired image is gone for readers at once (None),
and deleted by `sweep` (run periodically: `run_sweeper`)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from budrt.settings import private_dir

log = logging.getLogger(__name__)

# Ids that are safe as a file name or key part as they are; others are hashed.
_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def _part(identifier: str) -> str:
    """`identifier` as one path component: itself when plainly safe, else its hash."""
    return identifier if _SAFE.match(identifier) else "h" + hashlib.sha256(identifier.encode()).hexdigest()


def valid_image_id(image_id: str) -> bool:
    """Whether `image_id` could name a stored image (anything else is simply not found)."""
    return bool(_SAFE.match(image_id))


@dataclass(frozen=True)
class StoredImage:
    """One stored image's metadata."""

    id: str
    project_id: str
    model: str
    size: str
    output_format: str
    bytes: int
    created: int
    expires_at: int

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES.get(self.output_format, "application/octet-stream")

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at <= (time.time() if now is None else now)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> StoredImage:
        return cls(**json.loads(data))


class ImageStore(Protocol):
    """What the image RPCs need of a store."""

    async def put(self, image: StoredImage, data: bytes) -> None: ...

    async def get(self, project_id: str, image_id: str) -> StoredImage | None: ...

    async def read(self, project_id: str, image_id: str) -> bytes | None: ...

    async def list(self, project_id: str) -> list[StoredImage]: ...

    async def delete(self, project_id: str, image_id: str) -> bool: ...

    async def sweep(self, now: float | None = None) -> int: ...


class LocalImageStore:
    """Files under `root`: `<project>/<id>.img` (the bytes) and `<id>.json` (the metadata, written
    last: an image is listed only once its bytes are complete). Directories 0700, files 0600."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _paths(self, project_id: str, image_id: str) -> tuple[Path, Path]:
        directory = self.root / _part(project_id)
        return directory / f"{_part(image_id)}.img", directory / f"{_part(image_id)}.json"

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    def _put(self, image: StoredImage, data: bytes) -> None:
        private_dir(self.root / _part(image.project_id))
        blob, meta = self._paths(image.project_id, image.id)
        self._write(blob, data)
        self._write(meta, image.to_json())

    async def put(self, image: StoredImage, data: bytes) -> None:
        await asyncio.to_thread(self._put, image, data)

    def _get(self, project_id: str, image_id: str) -> StoredImage | None:
        try:
            image = StoredImage.from_json(self._paths(project_id, image_id)[1].read_bytes())
        except (OSError, ValueError, TypeError):
            return None
        if image.expired() or image.project_id != project_id or image.id != image_id:
            return None
        return image

    async def get(self, project_id: str, image_id: str) -> StoredImage | None:
        return self._get(project_id, image_id)  # one small file: cheaper than a thread hop

    async def read(self, project_id: str, image_id: str) -> bytes | None:
        if self._get(project_id, image_id) is None:
            return None
        try:
            return await asyncio.to_thread(self._paths(project_id, image_id)[0].read_bytes)
        except OSError:
            return None

    def _list(self, project_id: str) -> list[StoredImage]:
        found = []
        for meta in (self.root / _part(project_id)).glob("*.json"):
            image = self._get(project_id, meta.stem)
            if image is not None:
                found.append(image)
        return found

    async def list(self, project_id: str) -> list[StoredImage]:
        return await asyncio.to_thread(self._list, project_id)

    def _delete(self, project_id: str, image_id: str) -> bool:
        blob, meta = self._paths(project_id, image_id)
        existed = meta.exists()
        for path in (meta, blob):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return existed

    async def delete(self, project_id: str, image_id: str) -> bool:
        if await self.get(project_id, image_id) is None:
            return False
        return await asyncio.to_thread(self._delete, project_id, image_id)

    def _sweep(self, now: float) -> int:
        removed = 0
        for meta in self.root.glob("*/*.json"):
            try:
                image = StoredImage.from_json(meta.read_bytes())
            except (OSError, ValueError, TypeError):
                continue
            if image.expired(now):
                removed += self._delete(image.project_id, image.id)
        return removed

    async def sweep(self, now: float | None = None) -> int:
        return await asyncio.to_thread(self._sweep, time.time() if now is None else now)


class S3ImageStore:
    """Objects in an S3-compatible bucket: `<prefix><project>/<id>.img` and `<id>.json`. The
    client's credentials come from the environment (boto3's own chain: AWS_ACCESS_KEY_ID, ...,
    or an instance role); `endpoint_url` names a non-AWS server (MinIO, Ceph, ...)."""

    def __init__(
        self, bucket: str, prefix: str = "images/", endpoint_url: str = "", client: Any = None
    ) -> None:
        if client is None:
            import boto3

            client = boto3.client("s3", endpoint_url=endpoint_url or None)
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def _key(self, project_id: str, image_id: str, suffix: str) -> str:
        return f"{self.prefix}{_part(project_id)}/{_part(image_id)}.{suffix}"

    def _put(self, image: StoredImage, data: bytes) -> None:
        self.client.put_object(
            Bucket=self.bucket,
            Key=self._key(image.project_id, image.id, "img"),
            Body=data,
            ContentType=image.media_type,
        )
        self.client.put_object(
            Bucket=self.bucket,
            Key=self._key(image.project_id, image.id, "json"),
            Body=image.to_json(),
            ContentType="application/json",
        )

    async def put(self, image: StoredImage, data: bytes) -> None:
        await asyncio.to_thread(self._put, image, data)

    def _object(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def _get(self, project_id: str, image_id: str) -> StoredImage | None:
        data = self._object(self._key(project_id, image_id, "json"))
        if data is None:
            return None
        try:
            image = StoredImage.from_json(data)
        except (ValueError, TypeError):
            return None
        if image.expired() or image.project_id != project_id or image.id != image_id:
            return None
        return image

    async def get(self, project_id: str, image_id: str) -> StoredImage | None:
        return await asyncio.to_thread(self._get, project_id, image_id)

    async def read(self, project_id: str, image_id: str) -> bytes | None:
        if await self.get(project_id, image_id) is None:
            return None
        return await asyncio.to_thread(self._object, self._key(project_id, image_id, "img"))

    def _keys(self, prefix: str) -> list[str]:
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", ())]
        return keys

    def _list(self, project_id: str) -> list[StoredImage]:
        found = []
        for key in self._keys(f"{self.prefix}{_part(project_id)}/"):
            if key.endswith(".json"):
                image = self._get(project_id, key.rsplit("/", 1)[1][: -len(".json")])
                if image is not None:
                    found.append(image)
        return found

    async def list(self, project_id: str) -> list[StoredImage]:
        return await asyncio.to_thread(self._list, project_id)

    def _delete(self, project_id: str, image_id: str) -> None:
        for suffix in ("json", "img"):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(project_id, image_id, suffix))

    async def delete(self, project_id: str, image_id: str) -> bool:
        if await self.get(project_id, image_id) is None:
            return False
        await asyncio.to_thread(self._delete, project_id, image_id)
        return True

    def _sweep(self, now: float) -> int:
        removed = 0
        for key in self._keys(self.prefix):
            if not key.endswith(".json"):
                continue
            data = self._object(key)
            try:
                image = StoredImage.from_json(data) if data is not None else None
            except (ValueError, TypeError):
                continue
            if image is not None and image.expired(now):
                self._delete(image.project_id, image.id)
                removed += 1
        return removed

    async def sweep(self, now: float | None = None) -> int:
        return await asyncio.to_thread(self._sweep, time.time() if now is None else now)


async def run_sweeper(store: ImageStore, interval: float) -> None:
    """Deletes expired images every `interval` seconds until cancelled (a failed sweep is logged
    and tried again next time)."""
    while True:
        await asyncio.sleep(interval)
        try:
            removed = await store.sweep()
            if removed:
                log.info("expired images deleted", extra={"images": removed})
        except Exception as err:
            log.warning("the image sweep failed", extra={"error": repr(err)})
