"""The OpenAI image RPCs of `OpenAiServicer` (a mixin: it uses the servicer's authentication,
routing, limits, concurrency, cold starts and charges, as the text operations do).

CreateImage / StreamImage: key → image deployment (`checks.py`) → limits (the call is one
request; with the deployment's `images_per_minute`, each image counts) → the engine's
GenerateImages / StreamImages (failover before the first byte; a client that leaves cancels the
engine call) → images as base64, or stored for the project (`store.py`) and answered as signed
links (`links.py`) → usage (images, size, steps) and cost (the per-image price). ListImages,
GetImage, DeleteImage: the key's project's stored images. GetImageContent: the bytes, with a
link's token (no key) or a key of the owning project."""

from __future__ import annotations

import base64
import math
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.api import httpbody_pb2

from bud.engine.v1 import engine_service_pb2
from bud.openai.v1 import image_pb2
from budrt.errors import Reason, ServiceError, echo, not_found, permission_denied
from gateway.engines import engine_error, engine_metadata
from gateway.images.links import LinkSigner, link_secret
from gateway.images.store import ImageStore, LocalImageStore, StoredImage, valid_image_id
from gateway.transcoder import ORIGIN_KEY  # the request's origin: links' base without a public URL

DEFAULT_RETENTION_S = 24 * 3600.0
DEFAULT_URL_TTL_S = 3600.0
LIST_LIMIT = 20
MAX_LIST_LIMIT = 100


@dataclass
class ImageConfig:
    """Where images are kept and how their links are made."""

    store: ImageStore
    signer: LinkSigner
    retention_s: float = DEFAULT_RETENTION_S
    url_ttl_s: float = DEFAULT_URL_TTL_S
    public_base_url: str = ""  # "" : the request's own origin
    fallback_base: str = "http://127.0.0.1:8000"  # a gRPC caller's links, with no public base


def default_config(shared_secret: str) -> ImageConfig:
    """A servicer built without an image configuration (tests): files in a new temporary dir."""
    root = Path(tempfile.mkdtemp(prefix="bud-images-"))
    return ImageConfig(LocalImageStore(root), LinkSigner(link_secret(shared_secret)))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class ImageOps:
    """The image RPCs; mixed into OpenAiServicer."""

    image_config: ImageConfig | None

    # Provided by OpenAiServicer.
    _authenticate: Any
    _begin: Any
    _finish: Any
    engines: Any

    @property
    def images(self) -> ImageConfig:
        if self.image_config is None:
            self.image_config = default_config(self.key_hash_secret)  # type: ignore[attr-defined]
        return self.image_config

    # ---- links ----------------------------------------------------------------------------
    def _base(self, context: Any) -> str:
        config = self.images
        if config.public_base_url:
            return config.public_base_url
        origin = next((v for k, v in context.invocation_metadata() or () if k == ORIGIN_KEY), "")
        return origin or config.fallback_base

    def _link(self, context: Any, image: StoredImage) -> str:
        expires = min(image.expires_at, int(time.time() + self.images.url_ttl_s))
        return self.images.signer.url(self._base(context), image.project_id, image.id, expires)

    async def _keep_image(
        self, context: Any, charge: Any, model: str, generated: engine_service_pb2.GeneratedImage
    ) -> str:
        """Stores one generated image for the caller's project; its signed link."""
        now = int(time.time())
        image = StoredImage(
            id=f"img_{uuid.uuid4().hex}",
            project_id=charge.key.project_id,
            model=model,
            size=f"{generated.width}x{generated.height}",
            output_format=generated.output_format or "png",
            bytes=len(generated.data),
            created=now,
            expires_at=math.ceil(time.time() + self.images.retention_s),
        )
        await self.images.store.put(image, generated.data)
        return self._link(context, image)

    # ---- generation -----------------------------------------------------------------------
    def _account_images(self, charge: Any, result: engine_service_pb2.GeneratedImages) -> None:
        charge.prompt_tokens = result.usage.input_tokens
        charge.completion_tokens = result.usage.output_tokens
        charge.usage_seen = True
        charge.images = len(result.images)
        charge.image_steps = result.steps or result.usage.steps
        if result.images:
            charge.image_size = f"{result.images[0].width}x{result.images[0].height}"

    async def CreateImage(
        self, request: image_pb2.ImageGenerationRequest, context: Any
    ) -> image_pb2.ImagesResponse:
        charge, deployment = await self._begin(context, "CreateImage", request, None)
        client_model = request.model
        result: engine_service_pb2.GeneratedImages | None = None
        conn = None
        try:
            candidates = self.engines.candidates(deployment.endpoints)
            for attempt, (endpoint, conn) in enumerate(candidates, start=1):
                request.model = endpoint.served_model_name
                try:
                    with self.engines.lease(conn, endpoint, deployment.id):
                        result = await conn.stub.GenerateImages(
                            request, metadata=engine_metadata(context, charge.usage_id)
                        )
                    break
                except grpc.aio.AioRpcError as err:
                    if err.code() == grpc.StatusCode.UNAVAILABLE and attempt < len(candidates):
                        self.engines.mark_unhealthy(endpoint)
                        continue
                    charge.code = err.code()
                    raise engine_error(err, client_model, endpoint.served_model_name) from None
        except BaseException:
            if charge.code == grpc.StatusCode.OK:
                charge.code = grpc.StatusCode.CANCELLED  # the client left: the engine call is cancelled
            raise
        finally:
            if result is not None:
                self._account_images(charge, result)
            await self._finish(charge, conn)
        as_url = not request.HasField("response_format") or request.response_format == "url"
        out = image_pb2.ImagesResponse(created=int(time.time()), background="opaque")
        for generated in result.images:
            item = out.data.add(revised_prompt=result.revised_prompt)
            if as_url:
                item.url = await self._keep_image(context, charge, client_model, generated)
            else:
                item.b64_json = _b64(generated.data)
        out.usage.CopyFrom(result.usage)
        out.usage.images = len(result.images)
        out.usage.steps = result.steps
        if result.images:
            first = result.images[0]
            out.output_format = first.output_format or "png"
            out.size = f"{first.width}x{first.height}"
        if request.HasField("quality"):
            out.quality = request.quality
        return out

    async def StreamImage(
        self, request: image_pb2.ImageGenerationRequest, context: Any
    ) -> AsyncIterator[image_pb2.ImageGenerationEvent]:
        # Admitted (key, model, checks, limits) before the first event, as chat streams are.
        charge, deployment = await self._begin(context, "StreamImage", request, None)
        charge.opened = True
        client_model = request.model
        as_url = not request.HasField("response_format") or request.response_format == "url"
        quality = request.quality if request.HasField("quality") else "auto"
        conn = None
        try:
            candidates = self.engines.candidates(deployment.endpoints)
            for attempt, (endpoint, conn) in enumerate(candidates, start=1):
                request.model = endpoint.served_model_name
                sent = False
                with self.engines.lease(conn, endpoint, deployment.id):
                    call = conn.stub.StreamImages(request, metadata=engine_metadata(context, charge.usage_id))
                    try:
                        async for progress in call:
                            for event in await self._events(
                                context, charge, client_model, request, progress, as_url, quality
                            ):
                                sent = True
                                yield event
                        return
                    except grpc.aio.AioRpcError as err:
                        if (
                            err.code() == grpc.StatusCode.UNAVAILABLE
                            and not sent
                            and attempt < len(candidates)
                        ):
                            self.engines.mark_unhealthy(endpoint)
                            continue
                        charge.code = err.code()
                        raise engine_error(err, client_model, endpoint.served_model_name) from None
                    finally:
                        call.cancel()  # a client that went away stops the denoising
        except BaseException as err:
            if charge.code == grpc.StatusCode.OK and not isinstance(err, ServiceError):
                charge.code = grpc.StatusCode.CANCELLED
            raise
        finally:
            await self._finish(charge, conn)

    async def _events(
        self,
        context: Any,
        charge: Any,
        model: str,
        request: image_pb2.ImageGenerationRequest,
        progress: engine_service_pb2.ImageProgress,
        as_url: bool,
        quality: str,
    ) -> list[image_pb2.ImageGenerationEvent]:
        """The SSE events of one engine event: progress (when asked for), a partial image, or
        the result's completed events (one per image; the last one carries the usage)."""
        now = int(time.time())
        common = {"created_at": now, "quality": quality, "background": "opaque"}
        if progress.HasField("result"):
            result = progress.result
            self._account_images(charge, result)
            events = []
            for i, generated in enumerate(result.images):
                event = image_pb2.ImageGenerationEvent(
                    type="image_generation.completed",
                    size=f"{generated.width}x{generated.height}",
                    output_format=generated.output_format or "png",
                    revised_prompt=result.revised_prompt,
                    image_index=generated.index,
                    **common,
                )
                if as_url:
                    event.url = await self._keep_image(context, charge, model, generated)
                else:
                    event.b64_json = _b64(generated.data)
                if i == len(result.images) - 1:
                    event.usage.CopyFrom(result.usage)
                    event.usage.images = len(result.images)
                    event.usage.steps = result.steps
                events.append(event)
            return events
        if progress.HasField("partial_image"):
            partial = progress.partial_image
            return [
                image_pb2.ImageGenerationEvent(
                    type="image_generation.partial_image",
                    b64_json=_b64(partial.data),
                    size=f"{partial.width}x{partial.height}",
                    output_format=partial.output_format or "png",
                    partial_image_index=progress.partial_image_index,
                    image_index=progress.image_index,
                    **common,
                )
            ]
        if request.progress:
            return [
                image_pb2.ImageGenerationEvent(
                    type="image_generation.progress",
                    image_index=progress.image_index,
                    step=progress.step,
                    total_steps=progress.total_steps,
                    **common,
                )
            ]
        return []

    # ---- stored images --------------------------------------------------------------------
    def _object(self, context: Any, image: StoredImage) -> image_pb2.ImageObject:
        return image_pb2.ImageObject(
            id=image.id,
            object="image",
            created=image.created,
            model=image.model,
            size=image.size,
            output_format=image.output_format,
            bytes=image.bytes,
            expires_at=image.expires_at,
            url=self._link(context, image),
        )

    async def _stored(self, project_id: str, image_id: str) -> StoredImage:
        image = await self.images.store.get(project_id, image_id) if valid_image_id(image_id) else None
        if image is None:
            raise _no_image(image_id)
        return image

    async def ListImages(self, request: image_pb2.ListImagesRequest, context: Any) -> image_pb2.ImageList:
        key = self._authenticate(context)
        limit = request.limit if request.HasField("limit") else LIST_LIMIT
        limit = max(1, min(limit, MAX_LIST_LIMIT))
        images = sorted(await self.images.store.list(key.project_id), key=lambda i: (-i.created, i.id))
        if request.HasField("after"):
            ids = [i.id for i in images]
            images = images[ids.index(request.after) + 1 :] if request.after in ids else []
        page = images[:limit]
        out = image_pb2.ImageList(object="list", has_more=len(images) > limit)
        out.data.extend(self._object(context, i) for i in page)
        if page:
            out.first_id, out.last_id = page[0].id, page[-1].id
        return out

    async def GetImage(self, request: image_pb2.GetImageRequest, context: Any) -> image_pb2.ImageObject:
        key = self._authenticate(context)
        return self._object(context, await self._stored(key.project_id, request.image_id))

    async def DeleteImage(
        self, request: image_pb2.DeleteImageRequest, context: Any
    ) -> image_pb2.DeleteImageResponse:
        key = self._authenticate(context)
        await self._stored(key.project_id, request.image_id)
        if not await self.images.store.delete(key.project_id, request.image_id):
            raise _no_image(request.image_id)
        return image_pb2.DeleteImageResponse(id=request.image_id, object="image.deleted", deleted=True)

    async def GetImageContent(
        self, request: image_pb2.GetImageContentRequest, context: Any
    ) -> httpbody_pb2.HttpBody:
        if request.token:
            verdict = self.images.signer.verify(request.token, request.image_id)
            if verdict.problem == "expired":
                raise permission_denied("This image link has expired.", param="token")
            if verdict.problem:
                raise permission_denied("This image link is not valid.", param="token")
            project_id, until = verdict.project_id, int(request.token.split(".", 1)[0])
        else:
            project_id, until = self._authenticate(context).project_id, 0
        image = await self._stored(project_id, request.image_id)
        data = await self.images.store.read(project_id, request.image_id)
        if data is None:
            raise _no_image(request.image_id)
        # Cacheable by the client alone, until the link (or the image) expires.
        until = min(until or image.expires_at, image.expires_at)
        max_age = max(0, until - int(time.time()))
        await context.send_initial_metadata((("cache-control", f"private, max-age={max_age}"),))
        return httpbody_pb2.HttpBody(content_type=image.media_type, data=data)


def _no_image(image_id: str) -> ServiceError:
    return not_found(f"No image found with id {echo(image_id)}.", reason=Reason.NOT_FOUND, param="image_id")
