"""Image deployments' pure rules (`app/images.py`): which deployments are image deployments, the
settings' checks (each refusal names its field), the defaults filled in for the gateways, the
`default_image_*` settings, per-image costs and the cost report's image counts."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from app import cost_report
from app.images import (
    ImageDefaults,
    check_image,
    check_runner_matches,
    is_image_deployment,
    route_image,
)
from app.pricing import parse_pricing
from app.settings import AppSettings
from bud.app.v1 import deployment_pb2 as D
from bud.engine.v1 import engine_service_pb2 as E
from budrt.errors import ServiceError
from budrt.money import Price

DEFAULTS = ImageDefaults()


def _image(**settings: Any) -> D.Deployment:
    return D.Deployment(
        name="img", model=D.ModelSource(builtin="tiny-diffusion"), image=D.ImageSettings(**settings)
    )


def test_which_deployments_are_image_deployments() -> None:
    assert is_image_deployment(D.Deployment(model=D.ModelSource(builtin="tiny-diffusion")))
    assert is_image_deployment(
        D.Deployment(model=D.ModelSource(hugging_face_id="org/sd"), runner=E.RUNNER_DIFFUSION)
    )
    # A Hugging Face model left unspecified is not: the app cannot read its architecture.
    assert not is_image_deployment(D.Deployment(model=D.ModelSource(hugging_face_id="org/sd")))
    assert not is_image_deployment(D.Deployment(model=D.ModelSource(builtin="tiny-llama")))
    assert not is_image_deployment(D.Deployment(prompt=D.PromptTarget(prompt_id="pmpt_1")))
    assert route_image("builtin", "tiny-llama", "RUNNER_UNSPECIFIED", None, 5, DEFAULTS) is None
    assert route_image(None, None, "RUNNER_UNSPECIFIED", None, 5, DEFAULTS) is None


@pytest.mark.parametrize(
    ("settings", "param"),
    [
        ({"max_images": 11}, "deployment.image.max_images"),
        ({"max_images": -1}, "deployment.image.max_images"),
        ({"sizes": ["64x64", "100x64"]}, "deployment.image.sizes[1]"),
        ({"sizes": ["64x64", "56x64"]}, "deployment.image.sizes[1]"),
        ({"sizes": ["2056x64"]}, "deployment.image.sizes[0]"),
        ({"sizes": ["big"]}, "deployment.image.sizes[0]"),
        ({"sizes": ["64x64", "128x128", "64x64"]}, "deployment.image.sizes[2]"),
        ({"sizes": [f"{64 + 8 * i}x64" for i in range(33)]}, "deployment.image.sizes"),
        ({"sizes": ["64x64"], "default_size": "128x128"}, "deployment.image.default_size"),
        ({"default_size": "65x64"}, "deployment.image.default_size"),
        ({"default_steps": 30, "max_steps": 10}, "deployment.image.default_steps"),
        ({"default_steps": 201}, "deployment.image.default_steps"),
        ({"max_steps": 201}, "deployment.image.max_steps"),
        ({"max_steps": -2}, "deployment.image.max_steps"),
        # Against the platform's defaults (20 steps, at most 50): each side's own field is named.
        ({"default_steps": 60}, "deployment.image.default_steps"),
        ({"max_steps": 10}, "deployment.image.max_steps"),
    ],
)
def test_bad_image_settings_name_their_field(settings: dict[str, Any], param: str) -> None:
    with pytest.raises(ServiceError) as info:
        check_image(_image(**settings), DEFAULTS)
    assert info.value.param == param, info.value.message


def test_good_image_settings_and_the_defaults_filled_in() -> None:
    check_image(_image(max_images=10, sizes=["64x64", "2048x1024"], default_size="2048x1024"), DEFAULTS)
    check_image(_image(), DEFAULTS)  # all unset: the platform's defaults
    check_image(_image(default_steps=200, max_steps=200), DEFAULTS)
    # The default size must be one of the platform's sizes when the deployment lists none.
    platform = ImageDefaults(sizes=("512x512", "768x768"))
    check_image(_image(default_size="768x768"), platform)
    with pytest.raises(ServiceError) as info:
        check_image(_image(default_size="64x64"), platform)
    assert info.value.param == "deployment.image.default_size"

    stored = {"sizes": ["128x128", "64x64"], "max_steps": 30}
    route = route_image("builtin", "tiny-diffusion", "RUNNER_UNSPECIFIED", stored, 12, DEFAULTS)
    assert route is not None
    assert (list(route.sizes), route.default_size) == (["128x128", "64x64"], "128x128")
    assert (route.max_images, route.default_steps, route.max_steps, route.images_per_minute) == (
        4,
        20,
        30,
        12,
    )
    # Nothing set anywhere: the model's default size only (empty sizes, no default size).
    bare = route_image("hugging_face_id", "org/sd", "RUNNER_DIFFUSION", None, 0, DEFAULTS)
    assert bare is not None and (list(bare.sizes), bare.default_size) == ([], "")


def test_image_settings_only_on_image_deployments() -> None:
    for deployment in (
        D.Deployment(model=D.ModelSource(builtin="tiny-llama"), image=D.ImageSettings(max_images=2)),
        D.Deployment(prompt=D.PromptTarget(prompt_id="pmpt_1"), image=D.ImageSettings()),
    ):
        with pytest.raises(ServiceError) as info:
            check_image(deployment, DEFAULTS)
        assert info.value.param == "deployment.image"


def test_a_builtin_runs_as_what_it_is() -> None:
    for builtin, runner in (("tiny-diffusion", E.RUNNER_GENERATE), ("tiny-llama", E.RUNNER_DIFFUSION)):
        with pytest.raises(ServiceError) as info:
            check_runner_matches(D.Deployment(model=D.ModelSource(builtin=builtin), runner=runner))
        assert info.value.param == "deployment.runner"
    check_runner_matches(
        D.Deployment(model=D.ModelSource(builtin="tiny-diffusion"), runner=E.RUNNER_DIFFUSION)
    )
    check_runner_matches(D.Deployment(model=D.ModelSource(builtin="tiny-llama"), runner=E.RUNNER_POOLING))


def test_image_settings_of_the_platform(tmp_path: Any) -> None:
    settings = AppSettings(data_dir=tmp_path, default_image_sizes=["512x512"], default_image_usd="0.02")
    assert ImageDefaults.of(settings) == ImageDefaults(4, 20, 50, ("512x512",))
    assert settings.default_image_model_name == "tiny-diffusion"
    for bad in (
        {"default_image_sizes": ["500x500"]},
        {"default_image_steps": 60},  # above the default max_steps (50)
        {"default_image_max_images": 11},
        {"default_image_usd": "-1"},
    ):
        with pytest.raises(ValidationError):
            AppSettings(data_dir=tmp_path, **bad)


def test_per_image_price() -> None:
    price = parse_pricing(D.Pricing(per_request_usd="0.001", per_image_usd="0.04"), "deployment.pricing")
    assert price == Price(request_micros=1000, image_micros=40_000)
    # Two images of a successful call: the request price and two images, in nano-dollars.
    assert price.cost_nanos(0, 0, images=2) == 1_000_000 + 80_000_000
    assert price.cost_nanos(0, 0, per_request=False, images=2) == 0  # a failed call
    for bad in ("-0.01", "0.0000001", "x"):
        with pytest.raises(ServiceError) as info:
            parse_pricing(D.Pricing(per_image_usd=bad), "deployment.pricing")
        assert info.value.param == "deployment.pricing.per_image_usd"


def test_cost_report_counts_images() -> None:
    """Buckets that carry `images` (image calls) are counted per day, deployment and project,
    with a cost per image; token-only buckets (no `images`) count none."""
    buckets = [
        {
            "date": "2026-11-30",
            "deployment_id": "dep_img",
            "requests": "2",
            "images": "6",
            "cost_usd": "0.24",
        },
        {
            "date": "2026-11-30",
            "deployment_id": "dep_chat",
            "requests": "1",
            "prompt_tokens": "10",
            "completion_tokens": "20",
            "cost_usd": "0.01",
        },
    ]
    report = cost_report.build_report(
        1,
        date(2026, 11, 30),
        [{"id": "prj", "name": "p"}],
        {"dep_img": "tiny-diffusion", "dep_chat": "tiny-llama"},
        {"prj": buckets},
        {},
    )
    assert report["total"]["images"] == 6
    by_deployment = {d["deployment"]: d for d in report["by_deployment"]}
    assert by_deployment["tiny-diffusion"]["images"] == 6
    assert by_deployment["tiny-diffusion"]["cost_per_image_usd"] == "0.040000"
    assert by_deployment["tiny-llama"]["images"] == 0
    assert by_deployment["tiny-llama"]["cost_per_image_usd"] is None
    assert report["by_day"][0]["images"] == 6
    text = cost_report.render(report)
    assert "images" in text and "per image" in text
